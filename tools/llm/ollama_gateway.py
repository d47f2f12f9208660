"""Everything Egaki asks the Ollama server directly (not via LangChain).

Reachability, model capabilities (``show().capabilities``), pulling with progress and
unloading. Connection failures become :class:`OllamaUnavailable` with an actionable
message; a missing model becomes :class:`ModelMissing`. Every call is made fresh, so
the chat recovers by itself once Ollama is back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import ollama

from tools.core.errors import ModelMissing, OllamaUnavailable
from tools.core.settings import Settings

log = logging.getLogger(__name__)

# httpx errors the ollama client lets through (streams, timeouts) besides ConnectionError.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    httpx.ConnectError,
    httpx.TransportError,
)

ProgressCallback = Callable[["PullProgress"], Awaitable[None]]


@dataclass
class ModelStatus:
    """What Ollama says about one model."""

    name: str
    capabilities: list[str] = field(default_factory=list)

    @property
    def tools(self) -> bool:
        return "tools" in self.capabilities

    @property
    def vision(self) -> bool:
        return "vision" in self.capabilities


@dataclass
class PullProgress:
    """One progress line of a pull, summed over layers."""

    status: str
    completed: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        return self.completed / self.total if self.total else 0.0


def unavailable(host: str) -> OllamaUnavailable:
    return OllamaUnavailable.of("ollama_down", host=host)


def missing(model: str) -> ModelMissing:
    return ModelMissing.of("model_missing_hint", model=model)


class OllamaGateway:
    """Thin async wrapper over ``ollama.AsyncClient`` with Egaki's error semantics."""

    def __init__(self, settings: Settings) -> None:
        self.host = settings.ollama_host
        self._timeout = settings.ollama_timeout_s

    def _client(self) -> ollama.AsyncClient:
        # A fresh client per call: cheap, and no stale connection pool after a restart.
        return ollama.AsyncClient(host=self.host, timeout=self._timeout)

    async def installed(self) -> list[str]:
        """Names of installed models; raises OllamaUnavailable when the server is down."""
        try:
            resp = await self._client().list()
        except CONNECTION_ERRORS as err:
            log.info("Ollama unreachable at %s: %s", self.host, err)
            raise unavailable(self.host) from err
        return [m.model or "" for m in resp.models]

    async def status(self, model: str) -> ModelStatus:
        """Capabilities of ``model``; ModelMissing if absent, OllamaUnavailable if down."""
        try:
            info = await self._client().show(model)
        except ollama.ResponseError as err:
            if err.status_code == 404:
                raise missing(model) from err
            raise
        except CONNECTION_ERRORS as err:
            raise unavailable(self.host) from err
        return ModelStatus(name=model, capabilities=list(info.capabilities or []))

    async def pull(self, model: str, on_progress: ProgressCallback | None = None) -> None:
        """Download ``model``, reporting summed byte progress across layers."""
        layers: dict[str, tuple[int, int]] = {}
        try:
            stream = await self._client().pull(model, stream=True)
            async for part in stream:
                if part.digest and part.total:
                    layers[part.digest] = (part.completed or 0, part.total)
                done = sum(c for c, _ in layers.values())
                total = sum(tt for _, tt in layers.values())
                if on_progress is not None:
                    await on_progress(PullProgress(part.status or "", done, total))
        except ollama.ResponseError as err:
            raise ModelMissing.of("pull_failed", model=model, error=err.error) from err
        except CONNECTION_ERRORS as err:
            raise unavailable(self.host) from err

    async def unload_all(self) -> list[str]:
        """Ask Ollama to free memory held by loaded models (before an image job on one GPU)."""
        client = self._client()
        try:
            running = await client.ps()
            names = [m.model for m in running.models if m.model]
            for name in names:
                await client.generate(model=name, prompt="", keep_alive=0)
        except CONNECTION_ERRORS as err:
            log.info("Could not ask Ollama to unload models: %s", err)
            return []
        return names
