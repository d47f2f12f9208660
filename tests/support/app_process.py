"""Run a Chainlit app in a subprocess and talk to it over socket.io, like the browser does.

``AppProcess`` starts the real Egaki app (``egaki run``, the command users run) or, given
``app_file``, any small Chainlit app file (``chainlit run FILE``), waits until it answers
HTTP 200 and stops it on exit. ``chat_client(app)`` is an async context manager around
``ChatClient``: it logs in through header auth, connects socket.io, records every event,
answers "ask" prompts by clicking a chosen action, rebuilds message texts from stream
tokens and updates, and always disconnects::

    with AppProcess(app_env(tmp_path / "data", ollama)) as app:
        async with chat_client(app, language="ja-JP") as client:
            await client.send("猫の絵を描いて")
            await client.wait_text("どんな雰囲気")

``guarded_env(log)`` puts the network guard (``tests/support/netguard/sitecustomize.py``)
in front of a subprocess: it refuses and logs any non-local DNS lookup or connect.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import socketio

from tests.support import ROOT

if TYPE_CHECKING:
    from tests.support.fake_ollama import FakeOllama
    from tests.support.tiny_pipelines import TinyModels

NETGUARD = Path(__file__).resolve().parent / "netguard"
PERSISTENCE_APP = Path(__file__).resolve().parent / "persistence_app.py"
START_TIMEOUT_S = 90

AskAnswer = Callable[[dict[str, Any], list[dict[str, Any]]], Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def guarded_env(log: Path) -> dict[str, str]:
    """Environment for a subprocess whose every outbound connection attempt is refused and
    logged to ``log`` (an empty or missing log means it stayed on this machine)."""
    path = [str(NETGUARD), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"EGAKI_NETGUARD_LOG": str(log), "PYTHONPATH": os.pathsep.join(path)}


def app_env(
    data_dir: Path,
    ollama: FakeOllama,
    tiny_models: TinyModels | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of an offline Egaki app on ``data_dir`` talking to the fake Ollama:
    the fake image engine, or with ``tiny_models`` the real diffusers engine on the tiny
    SD1.5 pipeline. ``extra`` variables are added last."""
    env = {
        "EGAKI_DATA_DIR": str(data_dir),
        "EGAKI_OLLAMA_HOST": ollama.url,
        "EGAKI_OFFLINE": "1",
        "EGAKI_IMAGE_ENGINE": "fake",
    }
    if tiny_models is not None:
        env |= {
            "EGAKI_IMAGE_ENGINE": "diffusers",
            "EGAKI_IMAGE_MODEL": str(tiny_models.sd15_dir),
            "EGAKI_TINY_VAE_MODEL": str(tiny_models.taesd_dir),
            "EGAKI_HF_CACHE_DIR": str(tiny_models.hf_cache),
        }
    return env | extra


class AppProcess:
    """A Chainlit app in a subprocess on a free (or given) loopback port; a context manager.

    Without ``app_file`` it is ``egaki run`` and ``env`` must name ``EGAKI_DATA_DIR`` (the
    log goes there). With ``app_file`` it is ``chainlit run app_file --headless`` with its
    Chainlit root (config, session files, the log) in ``app_root``.
    """

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        app_file: Path | None = None,
        app_root: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_file = app_file
        # OpenVINO converts once per data dir: apps run torch unless a test asks for it.
        self.env = {"EGAKI_CPU_RUNTIME": "torch", **os.environ, **env, "PYTHONUNBUFFERED": "1"}
        if app_file is None:
            self.data_dir = Path(env["EGAKI_DATA_DIR"])
            self.env["EGAKI_PORT"] = str(self.port)
            log_dir = self.data_dir
        else:
            if app_root is None:
                raise ValueError("a Chainlit app file needs an app_root for its config")
            self.data_dir = app_root
            self.env["CHAINLIT_APP_ROOT"] = str(app_root)
            log_dir = app_root
        self.log_path = log_dir / f"app-{self.port}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.started_in_s = 0.0

    def command(self) -> list[str]:
        if self.app_file is None:
            return [sys.executable, "-m", "assistant.ui.cli", "run", "--port", str(self.port)]
        return [sys.executable, "-m", "chainlit", "run", str(self.app_file), "--headless",
                "--host", "127.0.0.1", "--port", str(self.port)]

    def __enter__(self) -> AppProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, text=True)
        while time.monotonic() < t0 + START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited early:\n{self.log()}")
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    self.started_in_s = time.monotonic() - t0
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"app did not start in {START_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def header_login(url: str, host: str | None = None) -> httpx.Response:
    """POST /auth/header as the login page does; the response sets the auth cookie."""
    headers = {"Host": host} if host else {}
    return httpx.post(f"{url}/auth/header", headers=headers, timeout=30)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class ChatClient:
    """A socket.io client speaking Chainlit's protocol; open it with :func:`chat_client`."""

    def __init__(
        self,
        url: str,
        language: str = "en-US",
        thread_id: str | None = None,
        cookies: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.language = language
        self.thread_id = thread_id
        self.cookies: dict[str, str] = dict(cookies or {})
        self.session_id = str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.messages: dict[str, dict[str, Any]] = {}  # id -> latest step dict
        self.actions: list[dict[str, Any]] = []
        self.answer_ask: AskAnswer = lambda spec, actions: None
        self.sio.on("*", self._on_any)
        self.sio.on("ask", self._on_ask)

    async def _on_any(self, event: str, *args: Any) -> None:
        data = args[0] if args else None
        self.events.append((event, data))
        if event in ("new_message", "update_message", "stream_start") and isinstance(data, dict):
            prev = self.messages.get(data["id"], {})
            self.messages[data["id"]] = {**prev, **data}
        elif event == "stream_token" and isinstance(data, dict):
            msg = self.messages.setdefault(data["id"], {"id": data["id"], "output": ""})
            if data.get("isSequence"):
                msg["output"] = data["token"]
            else:
                msg["output"] = msg.get("output", "") + data["token"]
        elif event == "action" and isinstance(data, dict):
            self.actions.append(data)

    async def _on_ask(self, data: dict[str, Any]) -> Any:
        self.events.append(("ask", data))
        keys = set(data.get("spec", {}).get("keys", []))
        offered = [a for a in self.actions if a["id"] in keys]
        return self.answer_ask(data, offered)

    def login(self) -> None:
        """Log in like the browser's login page does (local header auth on loopback)."""
        if not self.cookies:
            resp = header_login(self.url)
            resp.raise_for_status()
            self.cookies = dict(resp.cookies.items())

    async def connect(self) -> ChatClient:
        self.login()
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        await self.sio.connect(
            self.url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            headers={"Accept-Language": self.language, "Cookie": cookie},
            auth={
                "sessionId": self.session_id,
                "clientType": "webapp",
                "userEnv": "{}",
                "chatProfile": None,
                "threadId": self.thread_id,
            },
        )
        await self.sio.emit("connection_successful")
        return self

    async def close(self) -> None:
        await self.sio.disconnect()

    async def send(self, text: str) -> None:
        await self.send_files(text, [])

    async def upload(self, path: Path, mime: str) -> dict[str, Any]:
        """POST a file the way the composer's attach button does; returns its reference."""
        async with httpx.AsyncClient(cookies=self.cookies) as http:
            resp = await http.post(
                f"{self.url}/project/file",
                params={"session_id": self.session_id},
                files={"file": (path.name, path.read_bytes(), mime)},
            )
        resp.raise_for_status()
        return dict(resp.json())

    async def send_files(self, text: str, refs: list[dict[str, Any]]) -> None:
        step = {"id": str(uuid.uuid4()), "name": "User", "type": "user_message",
                "output": text, "createdAt": _now()}
        await self.sio.emit(
            "client_message", {"message": step, "fileReferences": [{"id": r["id"]} for r in refs]}
        )

    async def click(self, action: dict[str, Any], **payload: Any) -> None:
        """Press a button (or a custom element's callAction) over HTTP like the frontend."""
        body = {**action, "payload": {**action.get("payload", {}), **payload}}
        async with httpx.AsyncClient(cookies=self.cookies, timeout=120) as http:
            resp = await http.post(
                f"{self.url}/project/action",
                json={"sessionId": self.session_id, "action": body},
            )
        resp.raise_for_status()

    def action(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The most recent offered action matching ``predicate``."""
        return next(a for a in reversed(self.actions) if predicate(a))

    def texts(self) -> list[str]:
        return [
            m.get("output", "")
            for m in self.messages.values()
            if m.get("type") != "user_message"
        ]

    def count(self, event: str) -> int:
        return sum(1 for e, _ in self.events if e == event)

    async def wait_for(
        self, predicate: Callable[[ChatClient], bool], timeout: float = 60.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out; messages so far: {self.texts()}")

    async def wait_text(self, needle: str, timeout: float = 60.0) -> str:
        await self.wait_for(lambda c: any(needle in t for t in c.texts()), timeout)
        return next(t for t in self.texts() if needle in t)

    async def wait_event(self, name: str, timeout: float = 60.0) -> Any:
        """The payload of the first ``name`` event, waiting for it if needed."""
        try:
            await self.wait_for(lambda c: c.count(name) > 0, timeout)
        except AssertionError:
            raise AssertionError(f"no {name!r} event; got {[e for e, _ in self.events]}") from None
        return next(data for event, data in self.events if event == name)


@asynccontextmanager
async def chat_client(
    app: AppProcess | str,
    *,
    language: str = "en-US",
    thread_id: str | None = None,
    cookies: Mapping[str, str] | None = None,
    answer_ask: AskAnswer | None = None,
) -> AsyncIterator[ChatClient]:
    """A connected :class:`ChatClient` for ``app`` (or its URL), disconnected on exit.

    ``cookies`` reuses a login (e.g. to resume a thread after a restart); ``answer_ask``
    is set before connecting, so it also answers the prompts of the chat's start.
    """
    url = app if isinstance(app, str) else app.url
    client = ChatClient(url, language=language, thread_id=thread_id, cookies=cookies)
    if answer_ask is not None:
        client.answer_ask = answer_ask
    await client.connect()
    try:
        yield client
    finally:
        await client.close()
