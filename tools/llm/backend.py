"""Backend selection: the gateway and the LangChain chat model for ``settings.llm_api``.

``ollama`` talks to Ollama's own API (``OllamaGateway``, ``ChatOllama``); ``openai`` to any
OpenAI-compatible server (``OpenAICompatGateway``, ``ChatOpenAI(base_url=...)``). Both
gateways share one surface (:class:`LLMGateway`), so the chat never asks which it has::

    gateway = make_gateway(settings)
    chat = make_chat_model(settings, settings.chat_model, gateway=gateway)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from tools.core.errors import OllamaUnavailable
from tools.core.settings import Settings
from tools.llm.ollama_gateway import CONNECTION_ERRORS, ModelStatus, OllamaGateway

# A reply that broke off mid-way, on either backend (the OpenAI path raises its
# "unreachable" error, a subclass of OllamaUnavailable).
STREAM_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, OllamaUnavailable)


class LLMGateway(Protocol):
    """What the chat asks the model server besides chatting."""

    host: str

    async def installed(self) -> list[str]: ...
    async def status(self, model: str) -> ModelStatus: ...
    async def pull(self, model: str,
                   on_progress: Callable[[Any], Awaitable[None]] | None = None) -> None: ...
    async def unload_all(self) -> list[str]: ...


def make_gateway(settings: Settings) -> LLMGateway:
    """The gateway for ``settings.llm_api``."""
    if settings.llm_api == "openai":
        from tools.llm.openai_gateway import OpenAICompatGateway

        return OpenAICompatGateway(settings)
    return OllamaGateway(settings)


def make_chat_model(settings: Settings, model: str, gateway: LLMGateway | None = None,
                    **options: Any) -> BaseChatModel:
    """The LangChain chat model called ``model`` on the configured server.

    ``options`` go to the model class as they are (e.g. ``temperature``).
    """
    if settings.llm_api == "openai":
        from tools.llm.openai_gateway import OpenAICompatGateway

        gw = gateway if isinstance(gateway, OpenAICompatGateway) else OpenAICompatGateway(settings)
        return gw.chat_model(model, **options)
    from tools.llm.ollama_chat import LocalChatOllama

    return LocalChatOllama(model=model, base_url=settings.ollama_host,
                           client_kwargs={"timeout": settings.ollama_timeout_s}, **options)
