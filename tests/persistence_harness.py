"""Run ``tests/persistence_app.py`` with ``chainlit run`` and talk to it like a browser.

``ChainlitServer`` starts the app in a subprocess (app root in a temp dir, so Chainlit's
config files land there) and waits for HTTP 200. ``ResumeClient`` logs in through header
auth, connects socket.io with the auth cookie, optionally resuming a thread, sends user
messages and records every event.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import socketio

from tests.chainlit_client import free_port

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "persistence_app.py"


class ChainlitServer:
    """``chainlit run tests/persistence_app.py`` in a subprocess; a context manager."""

    def __init__(self, app_root: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_root = app_root
        self.env = {**os.environ, **env, "CHAINLIT_APP_ROOT": str(app_root),
                    "PYTHONUNBUFFERED": "1"}
        self.log_path = app_root / f"server-{self.port}.log"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ChainlitServer:
        self.app_root.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chainlit", "run", str(APP), "--headless",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"server did not start in 60 s:\n{self.log()}")

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
    return httpx.post(f"{url}/auth/header", headers=headers, timeout=10)


class ResumeClient:
    """A socket.io client that logs in by cookie and can resume a thread."""

    def __init__(self, url: str, cookies: httpx.Cookies) -> None:
        self.url = url
        self.cookies = cookies
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.sio.on("*", self._on_any)

    async def _on_any(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if args else None))

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    async def connect(self, thread_id: str | None = None) -> ResumeClient:
        await self.sio.connect(
            self.url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            headers={"Cookie": self.cookie_header()},
            auth={
                "sessionId": str(uuid.uuid4()),
                "clientType": "webapp",
                "userEnv": "{}",
                "chatProfile": None,
                "threadId": thread_id,
            },
        )
        await self.sio.emit("connection_successful")
        return self

    async def send(self, text: str) -> None:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        step = {"id": str(uuid.uuid4()), "name": "User", "type": "user_message",
                "output": text, "createdAt": now}
        await self.sio.emit("client_message", {"message": step, "fileReferences": []})

    async def wait_event(self, name: str, timeout: float = 15.0) -> Any:
        """The payload of the first ``name`` event, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event, data in self.events:
                if event == name:
                    return data
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name!r} event; got {[e for e, _ in self.events]}")

    async def close(self) -> None:
        await self.sio.disconnect()
