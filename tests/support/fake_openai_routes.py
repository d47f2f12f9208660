"""The fake Ollama's OpenAI-compatible API under ``/v1``, as real Ollama serves it.

``GET /v1/models``, ``POST /v1/chat/completions`` (plain and SSE streaming, ``tools`` →
``tool_calls``, ``response_format`` JSON schema, ``max_tokens``) and ``POST /v1/embeddings``
answer from the same scripted :class:`~tests.support.fake_ollama_script.Reply` queue as
``/api/chat``, so one test script drives either backend (``EGAKI_LLM_API=ollama`` or
``openai`` with ``EGAKI_OPENAI_BASE_URL=<fake>/v1``). Errors come in OpenAI's shape with
Ollama's words: 404 ``model "x" not found, try pulling it first``, 400 ``... does not
support tools``.

A request is recorded as sent, and :func:`as_ollama_chat` turns it into the ``/api/chat``
shape (``format``, ``options.num_predict``, ``tools``), so tests read either backend's
requests alike through :meth:`FakeOllama.chat_requests`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .fake_ollama_script import Reply, fake_embedding, split_text

V1_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/v1/models"): "v1_models",
    ("POST", "/v1/chat/completions"): "v1_chat",
    ("POST", "/v1/embeddings"): "v1_embeddings",
}
V1_CHAT = "/v1/chat/completions"


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def as_ollama_chat(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request in the ``/api/chat`` shape (the original under ``_openai``)."""
    messages = []
    for m in body.get("messages") or []:
        out: dict[str, Any] = {"role": m.get("role"), "content": _text(m.get("content"))}
        images = [p["image_url"]["url"] for p in m.get("content") or []
                  if isinstance(p, dict) and p.get("type") == "image_url"] \
            if isinstance(m.get("content"), list) else []
        if images:
            out["images"] = images
        if m.get("tool_calls"):
            out["tool_calls"] = [
                {"function": {"name": c["function"]["name"],
                              "arguments": json.loads(c["function"].get("arguments") or "{}")}}
                for c in m["tool_calls"]
            ]
        messages.append(out)
    fmt = body.get("response_format") or {}
    options = {k: body[k] for k in ("temperature", "seed", "top_p") if k in body}
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        options["num_predict"] = limit
    chat: dict[str, Any] = {
        "model": body.get("model"), "messages": messages, "stream": bool(body.get("stream")),
        "options": options, "_openai": body,
    }
    if body.get("tools"):
        chat["tools"] = body["tools"]
    if fmt.get("type") == "json_schema":
        chat["format"] = fmt.get("json_schema", {}).get("schema", {})
    elif fmt.get("type") == "json_object":
        chat["format"] = "json"
    return chat


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "api_error", "param": None,
                              "code": None}}


class OpenAIRoutes:
    """Mixin for the fake's request handler (``tests.support.fake_ollama._Handler``)."""

    fake: Any
    _json: Any
    _hangup: Any
    wfile: Any
    send_response: Any
    send_header: Any
    end_headers: Any

    def api_v1_models(self, body: dict[str, Any]) -> None:
        with self.fake._lock:
            names = list(self.fake.models)
        data = [{"id": n, "object": "model", "created": 1_700_000_000, "owned_by": "library"}
                for n in names]
        self._json(200, {"object": "list", "data": data})

    def api_v1_embeddings(self, body: dict[str, Any]) -> None:
        name = body.get("model", "")
        model = self.fake.find(name)
        if model is None:
            return self._json(*_error(404, f'model "{name}" not found, try pulling it first'))
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        data = [{"object": "embedding", "index": i,
                 "embedding": fake_embedding(str(t), model.embedding_length)}
                for i, t in enumerate(inputs)]
        tokens = sum(len(str(t).split()) for t in inputs)
        self._json(200, {"object": "list", "data": data, "model": name,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def api_v1_chat(self, body: dict[str, Any]) -> None:
        name = body.get("model", "")
        model = self.fake.find(name)
        if model is None:
            return self._json(*_error(404, f'model "{name}" not found, try pulling it first'))
        if body.get("tools") and "tools" not in model.capabilities:
            return self._json(*_error(400, f"registry.ollama.ai/library/{name} does not "
                                      "support tools"))
        reply = self.fake._next_reply(as_ollama_chat(body))
        self.fake._set_loaded(model.name, True)
        if reply.error and reply.error_after <= 0:
            return self._json(*_error(reply.status, reply.error))
        if reply.hangup_after == 0:
            return self._hangup()
        if not body.get("stream"):
            self.fake._wait(reply.delay)
            return self._json(200, self._completion(body, reply))
        self._sse(body, reply)

    # --- answers -------------------------------------------------------------------------
    @staticmethod
    def _calls(reply: Reply) -> list[dict[str, Any]]:
        return [{"index": i, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "function",
                 "function": {"name": c["function"]["name"],
                              "arguments": json.dumps(c["function"]["arguments"])}}
                for i, c in enumerate(reply.wire_tool_calls())]

    @staticmethod
    def _finish(reply: Reply) -> str:
        if reply.tool_calls:
            return "tool_calls"
        return "length" if reply.done_reason == "length" else "stop"

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply)
        n = len(split_text(reply.text))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:6]}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model"),
            "system_fingerprint": "fp_ollama",
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish(reply)}],
            "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n},
        }

    def _sse(self, body: dict[str, Any], reply: Reply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = {"id": f"chatcmpl-{uuid.uuid4().hex[:6]}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model"),
                "system_fingerprint": "fp_ollama"}
        pieces = split_text(reply.text)
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": p} for p in pieces]
        if reply.tool_calls:
            deltas.append({"role": "assistant", "content": "", "tool_calls": self._calls(reply)})
        for i, delta in enumerate(deltas):
            if reply.hangup_after is not None and i >= reply.hangup_after:
                return self._hangup()
            if reply.error and i >= reply.error_after:
                self._event({"error": {"message": reply.error, "type": "api_error"}})
                return self._end()
            self.fake._wait(reply.delay)
            self._event({**base, "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": None}]})
        self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                "content": ""},
                                          "finish_reason": self._finish(reply)}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            n = len(pieces)
            self._event({**base, "choices": [], "usage": {
                "prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}})
        self._raw(b"data: [DONE]\n\n")
        self._end()

    def _event(self, obj: Any) -> None:
        self._raw(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _raw(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
