"""Both chat backends against the one fake server: Ollama's own API, or the OpenAI-compatible
API under ``/v1`` (what LM Studio, llama-server, vLLM and Ollama itself serve).

Take the ``llm_api`` fixture (``tests/conftest.py``, parametrised over both) and build the
chat's pieces with :func:`wire` so a test runs once per backend with one script::

    async def test_x(settings, ollama, llm_api):
        s, gateway, models = wire(settings, ollama, llm_api)
"""

from __future__ import annotations

from typing import Any

from tests.support.fake_ollama import FakeOllama
from tools.core.settings import Settings
from tools.llm.backend import LLMGateway, make_gateway
from tools.llm.chat_models import ModelFactory, chat_model_factory

LLM_APIS = ("ollama", "openai")


def backend_settings(settings: Settings, ollama: FakeOllama, llm_api: str,
                     **over: Any) -> Settings:
    """``settings`` pointed at the fake through ``llm_api``."""
    if llm_api == "openai":
        over = {"llm_api": "openai", "openai_base_url": f"{ollama.url}/v1", **over}
    return settings.model_copy(update={"ollama_host": ollama.url, **over})


def wire(settings: Settings, ollama: FakeOllama, llm_api: str,
         **over: Any) -> tuple[Settings, LLMGateway, ModelFactory]:
    """The settings, gateway and chat-model factory of one chat on ``llm_api``."""
    s = backend_settings(settings, ollama, llm_api, **over)
    return s, make_gateway(s), chat_model_factory(s)
