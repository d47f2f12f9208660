"""The one place that builds LangChain chat models for Ollama.

Every chat, vision and judge model Egaki talks to through LangChain is a ``ChatOllama``
(:class:`~tools.llm.ollama_chat.LocalChatOllama`: a quiet 5xx retry, Egaki's errors, a
schema-sized ``num_predict``) made here, so the host and the timeout come from
:class:`~tools.core.settings.Settings` the same way everywhere::

    make = chat_model_factory(settings)
    chat = make(settings.chat_model)
    vision = make(settings.effective_vision_model)

``langchain_ollama`` is imported on first use: the chat starts without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel

from tools.core.settings import Settings

ModelFactory = Callable[[str], BaseChatModel]


def ollama_chat_model(settings: Settings, model: str, **options: Any) -> BaseChatModel:
    """``LocalChatOllama`` for ``model`` on ``settings.ollama_host`` with the configured timeout.

    ``options`` go to ``ChatOllama`` as they are (e.g. ``keep_alive``, ``temperature``).
    """
    from tools.llm.ollama_chat import LocalChatOllama

    return LocalChatOllama(
        model=model,
        base_url=settings.ollama_host,
        client_kwargs={"timeout": settings.ollama_timeout_s},
        **options,
    )


def chat_model_factory(settings: Settings) -> ModelFactory:
    """``make(name)`` → the chat model called ``name``, wired to ``settings``."""

    def make(model: str) -> BaseChatModel:
        if settings.llm_api == "openai":  # any OpenAI-compatible server (tools/llm/backend.py)
            from tools.llm.backend import make_chat_model

            return make_chat_model(settings, model)
        return ollama_chat_model(settings, model)

    return make
