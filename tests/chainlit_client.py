"""Drive the real Egaki app over Chainlit's socket.io interface, like the browser does.

``AppProcess`` starts ``egaki run`` (the same command users run) as a subprocess with a
given environment and waits until it answers HTTP 200. ``ChatClient`` connects a
socket.io client, sends user messages, records every event, answers "ask" prompts by
clicking a chosen action, and rebuilds message texts from stream tokens and updates.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import socketio

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AppProcess:
    """``egaki run`` in a subprocess; use as a context manager."""

    def __init__(self, env: dict[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # OpenVINO converts once per data dir: apps run torch unless a test asks for it.
        self.env = {"EGAKI_CPU_RUNTIME": "torch", **os.environ, **env,
                    "EGAKI_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[str] | None = None
        self.started_in_s = 0.0
        self.data_dir = Path(env.get("EGAKI_DATA_DIR", "/tmp"))
        self.log_path = self.data_dir / f"app-{self.port}.log"

    def __enter__(self) -> AppProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistant.ui.cli", "run", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        deadline = t0 + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited early:\n{self.log()}")
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    self.started_in_s = time.monotonic() - t0
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"app did not start in 90 s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ChatClient:
    """A socket.io client speaking Chainlit's protocol."""

    def __init__(self, url: str, language: str = "en-US", thread_id: str | None = None) -> None:
        self.url = url
        self.language = language
        self.thread_id = thread_id
        self.cookies: dict[str, str] = {}
        self.session_id = str(uuid.uuid4())
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.messages: dict[str, dict[str, Any]] = {}  # id -> latest step dict
        self.actions: list[dict[str, Any]] = []
        self.answer_ask: Callable[[dict[str, Any], list[dict[str, Any]]], Any] = (
            lambda spec, actions: None
        )
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
            resp = httpx.post(f"{self.url}/auth/header", timeout=10)
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
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        step = {
            "id": str(uuid.uuid4()),
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": now,
        }
        await self.sio.emit("client_message", {"message": step, "fileReferences": []})

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
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        step = {"id": str(uuid.uuid4()), "name": "User", "type": "user_message",
                "output": text, "createdAt": now}
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
        self, predicate: Callable[[ChatClient], bool], timeout: float = 20.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out; messages so far: {self.texts()}")

    async def wait_text(self, needle: str, timeout: float = 20.0) -> str:
        await self.wait_for(lambda c: any(needle in t for t in c.texts()), timeout)
        return next(t for t in self.texts() if needle in t)
