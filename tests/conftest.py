"""Shared fixtures: every test gets its own data dir and a fresh fake Ollama; nothing
touches the user's files or a real model.

The fake Ollama (:mod:`tests.support.fake_ollama`) is one server per test module, so apps
started once per module keep its URL, and reset before each test that takes ``ollama``.
Configure it for a test, a class or a module (``pytestmark``) with the ``ollama`` marker,
whose keywords are those of :meth:`FakeOllama.reset`::

    @pytest.mark.ollama(script=[Reply(data=SPEC), Reply("Here it is.")])
    async def test_something(ollama: FakeOllama) -> None: ...

    @pytest.mark.ollama(models=[FakeModel("llama3.2:3b", ["completion", "tools"])])

or parametrise it (``@pytest.mark.parametrize("ollama", [{"script": [...]}], indirect=True)``).
A script may also be the path of a JSON/YAML script file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_ollama import FakeOllama
from tools.core.settings import Settings

# Fixture modules shared across test folders.
pytest_plugins: list[str] = ["tests.support.tiny_pipelines", "tests.support.prompt_fixtures",
                             "tests.support.tiny_control"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated from the environment and pointed at a temp data dir."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        ollama_host="http://127.0.0.1:9",  # discard port: nothing answers
        offline=True,
    )


@pytest.fixture(scope="module")
def ollama_server() -> Iterator[FakeOllama]:
    """The module's fake Ollama as it is: for fixtures that outlive one test (an app
    process needs its URL). Tests take ``ollama``, which resets it first."""
    with FakeOllama() as srv:
        yield srv


def _ollama_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    # iter_markers gives the closest first (test, class, module): apply it last.
    for marker in reversed(list(request.node.iter_markers("ollama"))):
        if marker.args:
            raise TypeError("@pytest.mark.ollama takes keywords only (see tests/conftest.py)")
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    return options


@pytest.fixture
def ollama(ollama_server: FakeOllama, request: pytest.FixtureRequest) -> FakeOllama:
    """The fake Ollama, as good as new for this test: running on the module's port, the
    default (or marked) models, nothing recorded and the marked script queued."""
    return ollama_server.reset(**_ollama_options(request))


@pytest.fixture
def fresh_openai_clients() -> Iterator[None]:
    """langchain-openai keeps one pooled async client per base URL for the process; its
    connections belong to the test's event loop, which closes after the test: forget it."""
    yield
    from langchain_openai.chat_models import _client_utils

    cached = getattr(_client_utils, "_cached_async_httpx_client", None)
    if cached is not None:
        cached.cache_clear()


@pytest.fixture(params=["ollama", "openai"])
def llm_api(request: pytest.FixtureRequest, fresh_openai_clients: None) -> str:
    """The chat backend under test, both in turn against the one fake server
    (:mod:`tests.support.backends`): Ollama's API, then the OpenAI-compatible ``/v1``."""
    return str(request.param)
