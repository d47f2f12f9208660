"""Everything Egaki asks an OpenAI-compatible server directly (LM Studio, llama.cpp's
llama-server, vLLM, Jan, Ollama's ``/v1``): the twin of :class:`OllamaGateway`.

Same surface (``installed``, ``status``, ``pull``, ``unload_all``) plus ``embed`` and
``chat_model``. Capabilities come from where the server says them — llama.cpp ``/props``
(``chat_template_caps.supports_tools``, ``modalities.vision``), Ollama ``/api/show``,
LM Studio ``/api/v0/models``, ``/v1/models`` ``input_modalities`` — and the settings'
declarations (``llm_tools``, ``llm_vision``, ``llm_json_schema``) override them. What nobody
says defaults to: JSON schema yes, tools no, vision no (a wrong "no" degrades gracefully; a
wrong "yes" breaks turns).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import httpx

from tools.core.errors import CapabilityMissing, ChatServerError, EgakiError, ModelMissing
from tools.core.settings import Settings
from tools.llm.ollama_gateway import ModelStatus
from tools.llm.openai_chat import LocalChatOpenAI
from tools.llm.openai_errors import (
    CONNECTION_ERRORS,
    MODEL_GONE,
    not_loaded,
    server_down,
    translate_status,
)

log = logging.getLogger(__name__)

ServerKind = Literal["llama.cpp", "ollama", "lmstudio", "vllm", "unknown"]
DECLARED = {"tools": "llm_tools", "vision": "llm_vision", "json_schema": "llm_json_schema"}
DEFAULTS = {"json_schema": True, "tools": False, "vision": False}


class OpenAICompatGateway:
    """Thin async HTTP client with Egaki's error semantics; one per app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.openai_base_url
        self.root_url = re.sub(r"/v\d+$", "", self.base_url)
        self.host = self.base_url  # what messages call "the server"
        self.sources: dict[str, str] = {}  # capability -> where the last status() found it
        self.context_length: int | None = None
        self._models: tuple[float, list[dict[str, Any]]] | None = None
        self._kind: ServerKind | None = None

    # -- HTTP plumbing ---------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        key = self.settings.openai_api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _get(self, url: str, timeout: float = 10.0) -> httpx.Response:
        async with httpx.AsyncClient(timeout=timeout, headers=self._headers()) as client:
            return await client.get(url)

    async def _post(self, url: str, body: dict[str, Any], timeout: float) -> httpx.Response:
        async with httpx.AsyncClient(timeout=timeout, headers=self._headers()) as client:
            return await client.post(url, json=body)

    def _error(self, resp: httpx.Response, model: str) -> EgakiError:
        try:
            body: Any = resp.json()
        except ValueError:
            body = {"message": resp.text[:300]}
        return translate_status(resp.status_code, body, url=self.base_url, model=model,
                                available=self._ids())

    def _ids(self) -> list[str]:
        return [e["id"] for e in (self._models or (0.0, []))[1]]

    async def _entries(self, max_age_s: float = 5.0) -> list[dict[str, Any]]:
        now = time.monotonic()
        if self._models and now - self._models[0] < max_age_s:
            return self._models[1]
        try:
            resp = await self._get(f"{self.base_url}/models")
        except CONNECTION_ERRORS as err:
            log.info("chat server unreachable at %s: %s", self.base_url, err)
            raise server_down(self.base_url, err, 10.0) from err
        if resp.status_code != 200:
            raise self._error(resp, "")
        payload = resp.json()
        entries = [e for e in payload.get("data", []) if isinstance(e, dict) and e.get("id")]
        # llama.cpp also sends an Ollama-style "models" list with "capabilities"
        extra = {m.get("model") or m.get("name"): m for m in payload.get("models", [])
                 if isinstance(m, dict)}
        for e in entries:
            if e["id"] in extra:
                e.setdefault("_ollama_style", extra[e["id"]])
        self._models = (now, entries)
        return entries

    # -- OllamaGateway's surface -------------------------------------------------------------
    async def installed(self) -> list[str]:
        """Model ids the server lists; ChatServerUnavailable when it is down."""
        return [e["id"] for e in await self._entries(max_age_s=0)]

    async def resolve(self, model: str) -> str:
        """The server's id for ``model`` ('' = the first listed): exact, case-folded, or the
        GGUF file name (llama-server without ``--alias`` lists the path); else ModelMissing."""
        entries = await self._entries()
        ids = [e["id"] for e in entries]
        if not model and ids:
            return ids[0]
        names: dict[str, str] = {}
        for e in entries:
            for name in [e["id"], *e.get("aliases", [])]:
                names.setdefault(str(name), e["id"])
        for key in (lambda k: k, str.casefold,
                    lambda k: re.sub(r"\.gguf$", "", k.rsplit("/", 1)[-1]).casefold()):
            table = {key(k): v for k, v in names.items()}
            if key(model) in table:
                return table[key(model)]
        raise not_loaded(self.base_url, model, ids)

    async def server_kind(self) -> ServerKind:
        """Which server this is, from what only that server answers."""
        if self._kind:
            return self._kind
        owners = {str(e.get("owned_by", "")).lower() for e in await self._entries()}
        kind: ServerKind = "unknown"
        if "llamacpp" in owners:
            kind = "llama.cpp"
        elif "vllm" in owners:
            kind = "vllm"
        else:
            try:
                for probe, name in (("/api/version", "ollama"), ("/api/v0/models", "lmstudio"),
                                    ("/props", "llama.cpp")):
                    if (await self._get(self.root_url + probe, timeout=3)).status_code == 200:
                        kind = name  # type: ignore[assignment]
                        break
            except CONNECTION_ERRORS:
                pass
        self._kind = kind
        return kind

    async def status(self, model: str) -> ModelStatus:
        """Capabilities of ``model``; ModelMissing if the server lacks it."""
        model_id = await self.resolve(model)
        kind = await self.server_kind()
        facts: dict[str, bool] = {}
        self.sources = {}

        def put(cap: str, value: Any, source: str) -> None:
            if value is not None and cap not in facts:  # the most specific source wins
                facts[cap] = bool(value)
                self.sources[cap] = source

        entry = next(e for e in await self._entries() if e["id"] == model_id)
        try:
            await self._discover(kind, model_id, entry, put)
        except CONNECTION_ERRORS as err:
            raise server_down(self.base_url, err) from err
        modalities = (entry.get("architecture") or {}).get("input_modalities")
        if isinstance(modalities, list):
            put("vision", "image" in modalities, "/v1/models input_modalities")
        for cap, field in DECLARED.items():  # the person's word beats discovery
            declared = getattr(self.settings, field)
            if declared is not None:
                facts[cap], self.sources[cap] = bool(declared), "settings"
        for cap, value in DEFAULTS.items():
            put(cap, value, "default")
        log.info("%s on %s: %s (from %s)", model_id, kind, facts, self.sources)
        return ModelStatus(name=model_id, capabilities=sorted(c for c, ok in facts.items() if ok))

    async def _discover(self, kind: ServerKind, model_id: str, entry: dict[str, Any],
                        put: Callable[[str, Any, str], None]) -> None:
        if kind == "llama.cpp":
            resp = await self._get(f"{self.root_url}/props")
            if resp.status_code == 200:
                props = resp.json()
                caps = props.get("chat_template_caps") or {}
                # Without tool support in the template, llama.cpp silently drops `tools`.
                put("tools", caps.get("supports_tools"), "/props chat_template_caps")
                put("vision", (props.get("modalities") or {}).get("vision"), "/props modalities")
                settings = props.get("default_generation_settings") or {}
                self.context_length = settings.get("n_ctx") or props.get("n_ctx")
            put("json_schema", True, "llama.cpp grammar")
        elif kind == "ollama":
            resp = await self._post(f"{self.root_url}/api/show", {"model": model_id}, 10.0)
            if resp.status_code == 200:
                caps = resp.json().get("capabilities") or []
                put("tools", "tools" in caps, "ollama /api/show")
                put("vision", "vision" in caps, "ollama /api/show")
            put("json_schema", True, "ollama format grammar")
        elif kind == "lmstudio":
            resp = await self._get(f"{self.root_url}/api/v0/models/{model_id}")
            if resp.status_code == 200:
                info = resp.json()
                put("vision", info.get("type") == "vlm", "lmstudio /api/v0 type")
                put("tools", "tool_use" in (info.get("capabilities") or []),
                    "lmstudio /api/v0 capabilities")
                self.context_length = info.get("loaded_context_length")
            put("json_schema", True, "lmstudio structured output")
        elif kind == "vllm":
            self.context_length = entry.get("max_model_len")
            put("json_schema", True, "vllm guided decoding")

    async def pull(self, model: str,
                   on_progress: Callable[[Any], Awaitable[None]] | None = None) -> None:
        """OpenAI-compatible servers do not download models: say where to do it."""
        err = ModelMissing.of("no_pull", url=self.base_url, model=model)
        err.model = model
        raise err

    async def unload_all(self) -> list[str]:
        """No portable unload API: a no-op."""
        return []

    # -- the chat model and embeddings ------------------------------------------------------
    def chat_model(self, model: str, **options: Any) -> LocalChatOpenAI:
        """``ChatOpenAI`` for ``model`` on this server with Egaki's dialect."""
        params: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.settings.openai_api_key or "not-needed",  # the client wants one
            "model": model,
            "timeout": self.settings.ollama_timeout_s,
            "max_retries": 1,  # one quiet retry (a runner 500, a dropped connection), then say so
            "stream_usage": True,
            "use_responses_api": False,
        }
        params.update(options)
        chat = LocalChatOpenAI(**params)
        chat.egaki_available = self._ids()
        chat.egaki_json_schema = self.settings.llm_json_schema is not False
        return chat

    async def embed(self, texts: list[str], model: str = "") -> list[list[float]]:
        """``POST /v1/embeddings`` with plain strings (not ``OpenAIEmbeddings``: it tokenizes
        with tiktoken, which downloads its tables); CapabilityMissing without embeddings."""
        if not texts:
            return []
        model = model or self.settings.embed_model
        body = {"model": model, "input": texts, "encoding_format": "float"}
        try:
            resp = await self._post(f"{self.base_url}/embeddings", body, 60.0)
        except CONNECTION_ERRORS as err:
            raise server_down(self.base_url, err) from err
        if resp.status_code in (404, 501) or (
            resp.status_code == 400 and re.search(r"embedding|pooling", resp.text, re.I)
        ):
            if resp.status_code == 404 and MODEL_GONE.search(resp.text):
                raise self._error(resp, model)
            raise CapabilityMissing.of("no_embeddings", url=self.base_url, model=model or "?")
        if resp.status_code != 200:
            raise self._error(resp, model)
        data = sorted(resp.json().get("data", []), key=lambda d: d.get("index", 0))
        vectors = [[float(x) for x in d["embedding"]] for d in data]
        if len(vectors) != len(texts):
            raise ChatServerError.of("server_refused", url=self.base_url, status=200,
                                     detail=f"{len(vectors)} embeddings for {len(texts)} texts")
        return vectors
