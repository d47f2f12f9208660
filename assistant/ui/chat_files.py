"""Files attached to persisted chats (generated images, uploads), kept on local disk.

Chainlit's SQLAlchemy data layer hands every element's bytes to a storage client under
an object key shaped ``<user id or "unknown">/<element id>/<name>`` and stores the URL the
client gives back. :class:`LocalStorageClient` writes those files under the data dir,
and :func:`add_files_route` adds the route that serves them, so a resumed thread's images
load in the browser after a restart. Who may read which file is decided by the
``authorize`` hook (see :func:`assistant.ui.persistence.chat_owner_only`).
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from chainlit.data.storage_clients.base import BaseStorageClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from assistant.ui import compat as chainlit_compat  # noqa: F401  (fixes chainlit before use)
from tools.core.errors import InvalidRequest

FILES_ROUTE_PREFIX = "/egaki-files"
ROUTE_NAME = "egaki-chat-files"

# Served inline; anything else (HTML, SVG, scripts...) is a download in a sandbox, so a
# stored file can never run script in the chat's origin.
INLINE_TYPES = frozenset({
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif",
    "application/pdf", "text/plain",
})
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
)

Authorize = Callable[[Request, str], Awaitable[bool]]
"""``authorize(request, object_key)``: may this request read that file?"""


def check_object_key(object_key: str) -> PurePosixPath:
    """Return ``object_key`` as a relative path, refusing anything that could escape.

    Absolute keys, ``.``/``..``/empty segments, backslashes and NUL bytes are refused
    rather than cleaned up: a key like that never comes from Chainlit itself.
    """
    parts = object_key.split("/")
    if (
        not object_key
        or "\x00" in object_key
        or "\\" in object_key
        or object_key.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise InvalidRequest.of("chat_file_key", key=object_key)
    return PurePosixPath(*parts)


def sniff_media_type(path: Path) -> str:
    """The media type from the file name, else from the first bytes, else octet-stream."""
    guessed = mimetypes.guess_type(path.name)[0]
    if guessed:
        return guessed
    with path.open("rb") as f:
        head = f.read(16)
    for magic, media in _MAGIC:
        if head.startswith(magic):
            return media
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class LocalStorageClient(BaseStorageClient):
    """A :class:`BaseStorageClient` writing under ``root`` and serving via ``url_prefix``."""

    def __init__(self, root: Path, url_prefix: str = FILES_ROUTE_PREFIX) -> None:
        self.root = Path(root)
        self.url_prefix = url_prefix.rstrip("/")

    def path_for(self, object_key: str) -> Path:
        """The file for ``object_key``; raises :class:`InvalidRequest` outside ``root``."""
        path = self.root / check_object_key(object_key)
        # A symlink planted inside root must not lead outside it either.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise InvalidRequest.of("chat_file_outside", key=object_key)
        return path

    def url_for(self, object_key: str) -> str:
        """The browser URL of ``object_key`` (each segment percent-encoded)."""
        check_object_key(object_key)
        return f"{self.url_prefix}/{quote(object_key, safe='/')}"

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        """Write ``data`` atomically; return ``object_key`` and ``url`` as Chainlit expects."""
        path = self.path_for(object_key)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        await asyncio.to_thread(_write_atomic, path, payload, overwrite)
        return {"object_key": object_key, "url": self.url_for(object_key), "mime": mime}

    async def delete_file(self, object_key: str) -> bool:
        """Remove the file and the folders it leaves empty; False if it was not there."""
        path = self.path_for(object_key)
        return await asyncio.to_thread(_delete_and_prune, path, self.root)

    async def get_read_url(self, object_key: str) -> str:
        """The same stable URL for every read: the route checks who may read it."""
        return self.url_for(object_key)

    async def close(self) -> None:
        """Nothing to release: files are opened per call."""


def _write_atomic(path: Path, payload: bytes, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # readers see the old file or the whole new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _delete_and_prune(path: Path, root: Path) -> bool:
    if not path.is_file():
        return False
    path.unlink()
    parent = path.parent
    while parent != root and parent.is_relative_to(root):
        try:
            parent.rmdir()
        except OSError:
            break  # not empty
        parent = parent.parent
    return True


def files_route(
    root: Path, prefix: str = FILES_ROUTE_PREFIX, authorize: Authorize | None = None
) -> Route:
    """The ``GET {prefix}/{path}`` route serving files under ``root``."""
    store = LocalStorageClient(root, prefix)

    async def serve(request: Request) -> Response:
        key = request.path_params["path"]
        not_found = PlainTextResponse("Not found", status_code=404)
        try:
            path = store.path_for(key)
        except InvalidRequest:
            return not_found
        # 404 rather than 403: do not confirm that someone else's file exists.
        if authorize is not None and not await authorize(request, key):
            return not_found
        if not path.is_file() or path.name.startswith(".part-"):
            return not_found
        media = sniff_media_type(path)
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}
        if media not in INLINE_TYPES and not media.startswith(("audio/", "video/")):
            headers["Content-Disposition"] = "attachment"
            headers["Content-Security-Policy"] = "sandbox"
        return FileResponse(path, media_type=media, headers=headers)

    return Route(f"{prefix.rstrip('/')}/{{path:path}}", serve, methods=["GET", "HEAD"],
                 name=ROUTE_NAME)


def add_files_route(
    app: Starlette,
    root: Path,
    prefix: str = FILES_ROUTE_PREFIX,
    authorize: Authorize | None = None,
) -> None:
    """Serve chat files from ``root`` at ``{prefix}/...`` on ``app`` (idempotent).

    The route goes first: Chainlit's app ends with a catch-all that would otherwise
    answer every unknown path with the UI's HTML.
    """
    routes = app.router.routes
    routes[:] = [r for r in routes if getattr(r, "name", None) != ROUTE_NAME]
    routes.insert(0, files_route(root, prefix, authorize))
