"""Shared fixtures: every test gets its own data dir; nothing touches the user's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.core.settings import Settings

# Fixture modules shared across test files.
pytest_plugins: list[str] = ["tests.tiny_pipelines", "tests.prompt_fixtures"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the environment and pointed at a temp data dir."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        ollama_host="http://127.0.0.1:9",  # discard port: nothing answers
        offline=True,
    )
