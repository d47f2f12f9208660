"""Egaki's errors for what an OpenAI-compatible server answers.

Evidence (llama.cpp's llama-server, vLLM, Ollama's ``/v1``): llama.cpp answers 400
``{"error": {"type": "exceed_context_size_error", "message": "request (5031 tokens) exceeds
the available context size (2048 tokens) ...", "n_prompt_tokens": 5031, "n_ctx": 2048}}``;
501 ``not_supported_error`` for embeddings without ``--embeddings``; 500 "image input is not
supported - hint: ... mmproj" for an image sent to a text model. vLLM/OpenAI say "maximum
context length" / ``context_length_exceeded``; vLLM and Ollama answer an unknown model with
404. Every error made here is a catalogue message (``prompts/messages/llm_server.yaml``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx
import openai

from tools.core.errors import (
    NO_TOOLS,
    CapabilityMissing,
    ChatServerError,
    ChatServerUnavailable,
    ContextTooLong,
    EgakiError,
    ModelMissing,
    ToolsRefused,
)

TIMEOUT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    httpx.TimeoutException,  # a TransportError: tested before CONNECTION_ERRORS
    openai.APITimeoutError,  # an APIConnectionError: likewise
)
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    httpx.TransportError,
    openai.APIConnectionError,
)
_CTX = re.compile(
    r"exceed_context_size_error|context_length_exceeded|exceeds the available context size"
    r"|maximum context length|context (?:window|length) (?:exceeded|is too small)"
    r"|prompt is too long|too many tokens|context overflow",
    re.I,
)
MODEL_GONE = re.compile(
    r"model\b.{0,80}\b(?:not found|does not exist|not loaded|is not available|unknown)"
    r"|no models? (?:is )?loaded|model_not_found|failed to load model",
    re.I,
)
_VISION = re.compile(
    r"image input is not supported|does not support (?:image|vision)|mmproj"
    r"|vision (?:is )?not supported",
    re.I,
)
_NUMS = re.compile(r"\((\d+) tokens\).*?\((\d+) tokens\)")


def server_down(url: str, err: BaseException | None = None, seconds: float = 0.0) -> EgakiError:
    """Server unreachable, or (for a timeout) reachable but too slow."""
    if isinstance(err, TIMEOUT_ERRORS):
        return ChatServerUnavailable.of("server_timeout", url=url, seconds=f"{seconds:g}")
    return ChatServerUnavailable.of("server_down", url=url)


def not_loaded(url: str, model: str, available: Sequence[str]) -> ModelMissing:
    err = ModelMissing.of(
        "model_not_loaded", url=url, model=model,
        available=", ".join(f"`{a}`" for a in available) or "—",
    )
    err.model = model
    return err


def translate_error(err: BaseException, *, url: str, model: str,
                    available: Sequence[str] = (), timeout_s: float = 0.0) -> EgakiError | None:
    """Egaki's error for an ``openai``/``httpx`` exception, or None to let it through."""
    if isinstance(err, EgakiError):
        return err
    if isinstance(err, CONNECTION_ERRORS):
        return server_down(url, err, timeout_s)
    if isinstance(err, openai.APIStatusError):
        return translate_status(err.status_code, err.body, url=url, model=model,
                                available=available, fallback=err.message)
    return None


def translate_status(status: int, body: Any, *, url: str, model: str,
                     available: Sequence[str] = (), fallback: str = "") -> EgakiError:
    """Egaki's error for an HTTP error answer (``body``: its parsed JSON, if any)."""
    inner = body.get("error", body) if isinstance(body, dict) else body
    if not isinstance(inner, dict):
        inner = {"message": str(inner or fallback)}
    text = " ".join(str(inner.get(k, "")) for k in ("type", "code", "message")).strip()
    text = text or fallback
    if _CTX.search(text):
        n_prompt, n_ctx = inner.get("n_prompt_tokens"), inner.get("n_ctx")
        if n_prompt is None and (m := _NUMS.search(text)):
            n_prompt, n_ctx = int(m.group(1)), int(m.group(2))
        return ContextTooLong.of("context_too_long", n_prompt=n_prompt or "?", n_ctx=n_ctx or "?")
    if status == 404 or MODEL_GONE.search(text):
        return not_loaded(url, model, available)
    if _VISION.search(text):
        return CapabilityMissing.of("no_vision_server", model=model)
    if NO_TOOLS.search(text):  # Ollama's /v1, vLLM without a tool parser
        return ToolsRefused.of("llm_no_tools", model=model)
    if status in (401, 403):
        return ChatServerError.of("auth_failed", url=url)
    detail = str(inner.get("message") or fallback)[:300]
    return ChatServerError.of("server_refused", url=url, status=status, detail=detail)
