"""A wire-compatible fake Ollama HTTP server for tests, also runnable by hand.

Speaks enough of the Ollama REST API for ``ollama.Client``/``AsyncClient`` and
``langchain_ollama`` (``ChatOllama``, ``OllamaEmbeddings``): ``GET /``, ``/api/version``,
``/api/tags``, ``/api/ps``, ``POST /api/show``, ``/api/pull`` (progress lines),
``/api/chat``, ``/api/generate`` (incl. load/unload with ``keep_alive: 0``), ``/api/embed``,
``/api/embeddings``, ``DELETE /api/delete``, and the OpenAI-compatible API under ``/v1``
(:mod:`tests.support.fake_openai_routes`). Streams are chunked NDJSON, errors are
``{"error": ...}`` with Ollama's status codes (404 ``model 'x' not found``).

In tests, take the ``ollama`` fixture (``tests/conftest.py``: one server per module, reset
for each test, scripted with ``@pytest.mark.ollama(script=[...])``), or by hand::

    with FakeOllama() as srv:  # models: qwen3-vl:8b (vision, tools, thinking), nomic-embed-text
        srv.enqueue(Reply("Hello!"), Reply(tool_calls=[{"name": "f", "arguments": {}}]))
        ...  # point the client at srv.url
        assert srv.last_chat()["messages"][-1]["images"]
        srv.stop()   # Ollama is down: connections refused, live ones dropped
        srv.start()  # back on the same port
        srv.reset()  # as good as new, same port

From a shell: ``python -m tests.support.fake_ollama --port 11434 --script replies.yaml
--models qwen3-vl:8b=completion,tools,vision --models nomic-embed-text=embedding``; the
script format is described in :mod:`tests.support.fake_ollama_script`.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import urlsplit

from .fake_ollama_script import (
    DEFAULT_MODELS,
    DEFAULT_PULLABLE,
    FakeModel,
    Reply,
    default_reply,
    fake_embedding,
    load_script,
    normalize_name,
    split_text,
)
from .fake_openai_routes import V1_CHAT, V1_ROUTES, OpenAIRoutes, as_ollama_chat

__all__ = ["FakeModel", "FakeOllama", "RecordedRequest", "Reply", "main"]

Responder = Callable[[dict[str, Any]], "Reply | None"]
PULL_ERROR = "pull model manifest: file does not exist"


class RecordedRequest(NamedTuple):
    """One request the fake received (GET requests have an empty body)."""

    path: str
    body: dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _is_zero(keep_alive: Any) -> bool:
    return keep_alive in (0, 0.0, "0", "0s", "0m", "0h")


class FakeOllama:
    """The fake server. Use as a context manager, or :meth:`start` / :meth:`stop`.

    ``models``: installed models (default :data:`DEFAULT_MODELS`); ``pullable``: what
    ``/api/pull`` can fetch (default :data:`DEFAULT_PULLABLE`); ``port`` 0 picks a free one,
    kept across :meth:`stop`/:meth:`start`; ``responder(body) -> Reply | None`` answers when
    the queue is empty (``None`` falls back to the default reply); ``pull_delay``: seconds
    between pull progress lines.
    """

    def __init__(
        self,
        models: Iterable[FakeModel] | None = None,
        *,
        pullable: Iterable[FakeModel] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        responder: Responder | None = None,
        pull_delay: float = 0.0,
        verbose: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.verbose = verbose
        self.models: dict[str, FakeModel] = {}
        self.pullable: dict[str, FakeModel] = {}
        self.loaded: set[str] = set()
        self.responder: Responder | None = None
        self.pull_delay = 0.0
        self.show_delay = 0.0  # seconds before /api/show answers (a slow or busy Ollama)
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._configure(models, pullable, responder, pull_delay)

    def _configure(
        self,
        models: Iterable[FakeModel] | None,
        pullable: Iterable[FakeModel] | None,
        responder: Responder | None,
        pull_delay: float,
    ) -> None:
        with self._lock:
            self.models = {m.name: m for m in models or DEFAULT_MODELS}
            self.pullable = {m.name: m for m in pullable or DEFAULT_PULLABLE}
            self.loaded.clear()
            self.responder = responder
            self.pull_delay = pull_delay

    # --- lifecycle -------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeOllama:
        """Listen (again, on the same port once one was picked)."""
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Simulate Ollama going down: stop listening and drop open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_all()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reset(
        self,
        *,
        script: Iterable[Reply | str | dict[str, Any]] | str | Path = (),
        models: Iterable[FakeModel] | None = None,
        pullable: Iterable[FakeModel] | None = None,
        responder: Responder | None = None,
        pull_delay: float = 0.0,
    ) -> FakeOllama:
        """As good as new on the same port: running, ``models`` (default
        :data:`DEFAULT_MODELS`) installed and none loaded, nothing recorded, and ``script``
        queued: replies, or the path of a script file (see :func:`load_script`)."""
        self._configure(models, pullable, responder, pull_delay)
        self.clear()
        self.start()
        if isinstance(script, str | Path):
            script = load_script(script)
        self.enqueue(*script)
        return self

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- scripting -------------------------------------------------------------------
    def enqueue(self, *replies: Reply | str | dict[str, Any]) -> None:
        """Queue replies for the next chat/generate requests, in order."""
        with self._lock:
            self._queue.extend(Reply.coerce(r) for r in replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        return len(self._queue)

    def add_model(self, model: FakeModel) -> None:
        with self._lock:
            self.models[model.name] = model

    def remove_model(self, name: str) -> bool:
        with self._lock:
            self.loaded.discard(normalize_name(name))
            return self.models.pop(normalize_name(name), None) is not None

    def find(self, name: str) -> FakeModel | None:
        with self._lock:
            return self.models.get(normalize_name(name)) if name else None

    # --- recording -------------------------------------------------------------------
    def requests_to(self, path: str) -> list[dict[str, Any]]:
        """Bodies of the requests to ``path`` (e.g. ``"/api/chat"``), oldest first."""
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    def chat_requests(self) -> list[dict[str, Any]]:
        """Chat request bodies, oldest first: ``/api/chat`` as sent and ``/v1`` ones in the
        same shape (:func:`~tests.support.fake_openai_routes.as_ollama_chat`)."""
        with self._lock:
            return [r.body if r.path == "/api/chat" else as_ollama_chat(r.body)
                    for r in self.requests if r.path in ("/api/chat", V1_CHAT)]

    def last_chat(self) -> dict[str, Any]:
        """The body of the latest ``/api/chat`` request (``AssertionError`` if none)."""
        chats = self.chat_requests()
        assert chats, "no /api/chat request was made"
        return chats[-1]

    def clear(self) -> None:
        """Forget recorded requests and scripted replies."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    # --- internals used by the handler ----------------------------------------------
    def _record(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(path, body))

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        reply = self.responder(body) if self.responder else None
        return Reply.coerce(reply) if reply is not None else default_reply(body)

    def _set_loaded(self, name: str, loaded: bool) -> None:
        with self._lock:
            (self.loaded.add if loaded else self.loaded.discard)(name)

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            raise ConnectionAbortedError("fake Ollama stopped")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeOllama) -> None:
        self.fake = fake
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:  # skip HTTPServer's slow reverse-DNS lookup
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(OpenAIRoutes, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else small writes wait ~40 ms for delayed ACKs
    server: _Server
    ROUTES: ClassVar[dict[tuple[str, str], str]] = {
        ("GET", "/api/version"): "version",
        ("GET", "/api/tags"): "tags",
        ("GET", "/api/ps"): "ps",
        ("POST", "/api/show"): "show",
        ("POST", "/api/pull"): "pull",
        ("POST", "/api/chat"): "chat",
        ("POST", "/api/generate"): "generate",
        ("POST", "/api/embed"): "embed",
        ("POST", "/api/embeddings"): "embeddings",
        ("DELETE", "/api/delete"): "delete",
        **V1_ROUTES,  # the OpenAI-compatible API, as real Ollama serves it
    }

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    @property
    def fake(self) -> FakeOllama:
        return self.server.fake

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self.fake._record(path, {"_raw": raw.decode(errors="replace")})
            return self._json(400, {"error": "invalid JSON body"})
        self.fake._record(path, body)
        try:
            if path == "/" and method in ("GET", "HEAD"):
                return self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
            route = self.ROUTES.get((method, path))
            if route is None:
                return self._send(404, b"404 page not found", "text/plain")
            getattr(self, f"api_{route}")(body)
        except OSError:  # client went away, or the fake was stopped mid-stream
            self.close_connection = True
        except Exception as exc:  # a broken responder must not kill the server
            with suppress(OSError):
                self._json(500, {"error": f"fake ollama: {exc!r}"})

    # --- wire helpers --------------------------------------------------------------
    def _send(self, status: int, data: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json; charset=utf-8")

    def _stream_start(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, obj: Any) -> None:
        data = (json.dumps(obj) + "\n").encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stream_end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _hangup(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _not_found(self, name: str) -> None:
        self._json(404, {"error": f"model '{name}' not found"})

    # --- endpoints -----------------------------------------------------------------
    def api_version(self, body: dict[str, Any]) -> None:
        self._json(200, {"version": "0.12.6"})

    def api_tags(self, body: dict[str, Any]) -> None:
        with self.fake._lock:
            models = [m.tag() for m in self.fake.models.values()]
        self._json(200, {"models": models})

    def api_ps(self, body: dict[str, Any]) -> None:
        fake = self.fake
        with fake._lock:
            loaded = [fake.models[n] for n in sorted(fake.loaded) if n in fake.models]
        until = "2099-01-01T00:00:00Z"
        models = [
            {**m.tag(), "expires_at": until, "size_vram": m.size, "context_length": 4096}
            for m in loaded
        ]
        self._json(200, {"models": models})

    def api_show(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name") or ""
        self.fake._wait(self.fake.show_delay)
        model = self.fake.find(name)
        if model is None:
            return self._not_found(name)
        self._json(200, model.show())

    def api_delete(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name") or ""
        if not self.fake.remove_model(name):
            return self._not_found(name)
        self._send(200, b"")

    def api_pull(self, body: dict[str, Any]) -> None:
        name = normalize_name(body.get("model") or body.get("name") or "")
        model = self.fake.pullable.get(name) or self.fake.find(name)
        stream = body.get("stream", True) is not False
        if model is None:
            if not stream:
                return self._json(500, {"error": PULL_ERROR})
            self._stream_start()
            self._chunk({"status": "pulling manifest"})
            self._chunk({"error": PULL_ERROR})
            return self._stream_end()
        if not stream:
            self.fake.add_model(model)
            return self._json(200, {"status": "success"})
        self._stream_start()
        for line in model.pull_progress():
            if line["status"] == "success":
                self.fake.add_model(model)
            self.fake._wait(self.fake.pull_delay)
            self._chunk(line)
        self._stream_end()

    def api_embed(self, body: dict[str, Any]) -> None:
        name = body.get("model", "")
        model = self.fake.find(name)
        if model is None:
            return self._not_found(name)
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        dims = int(body.get("dimensions") or model.embedding_length)
        self.fake._set_loaded(model.name, not _is_zero(body.get("keep_alive")))
        vectors = [fake_embedding(str(text), dims) for text in inputs]
        tokens = sum(len(str(t).split()) for t in inputs)
        self._json(
            200,
            {
                "model": name,
                "embeddings": vectors,
                "total_duration": 1_000_000,
                "load_duration": 100_000,
                "prompt_eval_count": tokens,
            },
        )

    def api_embeddings(self, body: dict[str, Any]) -> None:
        name = body.get("model", "")
        model = self.fake.find(name)
        if model is None:
            return self._not_found(name)
        vector = fake_embedding(str(body.get("prompt", "")), model.embedding_length)
        self._json(200, {"embedding": vector})

    def api_chat(self, body: dict[str, Any]) -> None:
        self._answer(body, chat=True)

    def api_generate(self, body: dict[str, Any]) -> None:
        self._answer(body, chat=False)

    def _answer(self, body: dict[str, Any], *, chat: bool) -> None:
        name = body.get("model", "")
        model = self.fake.find(name)
        if model is None:
            return self._not_found(name)
        caps = model.capabilities
        if "completion" not in caps:
            what = "chat" if chat else "generate"
            return self._json(400, {"error": f'"{name}" does not support {what}'})
        if body.get("tools") and "tools" not in caps:
            return self._json(400, {"error": f'"{name}" does not support tools'})
        if body.get("think") and "thinking" not in caps:
            return self._json(400, {"error": f'"{name}" does not support thinking'})
        keep = not _is_zero(body.get("keep_alive"))
        if not (body.get("messages") if chat else body.get("prompt") or body.get("images")):
            self.fake._set_loaded(model.name, keep)  # an empty request just loads/unloads
            return self._json(200, self._final(body, chat, "load" if keep else "unload"))
        reply = self.fake._next_reply(body)
        self.fake._set_loaded(model.name, keep)
        if reply.error and reply.error_after <= 0:
            return self._json(reply.status, {"error": reply.error})
        if body.get("stream", True) is False:
            if reply.hangup_after is not None:
                return self._hangup()
            if reply.error:
                return self._json(reply.status, {"error": reply.error})
            self.fake._wait(reply.delay)
            return self._json(200, self._final(body, chat, reply.done_reason, reply))
        parts: list[tuple[str, Any]] = [("thinking", p) for p in split_text(reply.thinking)]
        parts += [("content", p) for p in split_text(reply.text)]
        if reply.tool_calls:
            parts.append(("tool_calls", reply.wire_tool_calls()))
        if reply.hangup_after == 0:
            return self._hangup()
        self._stream_start()
        for i, (key, value) in enumerate([*parts, ("final", None)]):
            if reply.hangup_after is not None and i >= reply.hangup_after:
                return self._hangup()
            if reply.error and i >= reply.error_after:
                self._chunk({"error": reply.error})
                return self._stream_end()
            self.fake._wait(reply.delay)
            if key == "final":
                self._chunk(self._final(body, chat, reply.done_reason, eval_count=len(parts)))
            else:
                self._chunk(self._part(body, chat, key, value))
        self._stream_end()

    def _part(self, body: dict[str, Any], chat: bool, key: str, value: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"model": body.get("model"), "created_at": _now()}
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": ""}
            message[key] = value
            out["message"] = message
        else:
            out["response"] = value if key == "content" else ""
            if key == "thinking":
                out["thinking"] = value
        out["done"] = False
        return out

    def _final(
        self,
        body: dict[str, Any],
        chat: bool,
        reason: str,
        reply: Reply | None = None,
        eval_count: int = 0,
    ) -> dict[str, Any]:
        out = self._part(body, chat, "content", reply.text if reply else "")
        if reply is not None:
            eval_count = len(split_text(reply.text)) + len(split_text(reply.thinking))
            extra: dict[str, Any] = {"thinking": reply.thinking} if reply.thinking else {}
            if chat and reply.tool_calls:
                extra["tool_calls"] = reply.wire_tool_calls()
            (out["message"] if chat else out).update(extra)
        prompt = json.dumps(body.get("messages") or body.get("prompt") or "")
        out.update(
            done=True,
            done_reason=reason,
            total_duration=5_000_000 + 1_000_000 * eval_count,
            load_duration=1_000_000,
            prompt_eval_count=len(prompt) // 4 if reason in ("stop", "length") else 0,
            prompt_eval_duration=2_000_000,
            eval_count=eval_count,
            eval_duration=1_000_000 * eval_count,
        )
        return out


def main(argv: list[str] | None = None) -> int:
    """CLI: serve until Ctrl-C (see the module docstring)."""
    prog = "python -m tests.support.fake_ollama"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=11434, help="0 picks a free port")
    parser.add_argument("--script", help="JSON or YAML list of replies (see fake_ollama_script)")
    parser.add_argument(
        "--models", action="append", metavar="NAME[=CAP,...]", help="installed model (repeat)"
    )
    parser.add_argument(
        "--pullable", action="append", metavar="NAME[=CAP,...]", help="pullable model (repeat)"
    )
    parser.add_argument("--pull-delay", type=float, default=0.3, help="seconds per pull line")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    models = [FakeModel.parse(s) for s in args.models] if args.models else None
    pullable = [FakeModel.parse(s) for s in args.pullable] if args.pullable else None
    srv = FakeOllama(
        models,
        pullable=pullable,
        host=args.host,
        port=args.port,
        pull_delay=args.pull_delay,
        verbose=args.verbose,
    )
    if args.script:
        srv.enqueue(*load_script(args.script))
    srv.start()
    print(f"Fake Ollama listening on {srv.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
