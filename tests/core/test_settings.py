"""Settings: env prefix, defaults that keep things private, derived paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from assistant.ui.cli import check_serving
from tools.core.errors import ConfigError
from tools.core.settings import Settings


def test_defaults_are_private_and_local(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("EGAKI_HOST", "EGAKI_OLLAMA_HOST", "EGAKI_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.host == "127.0.0.1" and s.is_loopback
    assert s.ollama_host == "http://127.0.0.1:11434"
    assert s.chat_model == "qwen3-vl:8b"
    assert "egaki" in str(s.data_dir).lower()
    assert s.effective_vision_model == s.chat_model


def test_env_prefix_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EGAKI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EGAKI_OLLAMA_HOST", "gpu-box:11434/")
    monkeypatch.setenv("EGAKI_VISION_MODEL", "llava:7b")
    monkeypatch.setenv("EGAKI_OFFLINE", "1")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.data_dir == tmp_path
    assert s.ollama_host == "http://gpu-box:11434"
    assert s.effective_vision_model == "llava:7b"
    assert s.offline is True
    assert s.images_dir == tmp_path / "images"


def test_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EGAKI_IMAGE_ENGINE", "dalle")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_network_bind_requires_password(settings: Settings) -> None:
    exposed = settings.model_copy(update={"host": "0.0.0.0"})
    assert not exposed.is_loopback
    with pytest.raises(ConfigError, match="EGAKI_AUTH_PASSWORD"):
        check_serving(exposed)
    check_serving(exposed.model_copy(update={"auth_password": "s3cret"}))
    check_serving(settings.model_copy(update={"host": "localhost"}))


def test_ensure_dirs_creates_data_tree(settings: Settings) -> None:
    settings.ensure_dirs()
    assert settings.images_dir.is_dir() and settings.cache_dir.is_dir()
