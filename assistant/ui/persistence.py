"""Chat history that survives restarts: Chainlit's SQLAlchemy data layer on SQLite.

Four pieces:

1. :func:`ensure_schema` (from :mod:`assistant.ui.chat_schema`) creates and migrates the
   tables Chainlit 2.12's ``SQLAlchemyDataLayer`` reads and writes.
2. :class:`EgakiDataLayer` fixes what SQLite cannot do as Chainlit's SQL assumes
   (Postgres arrays and JSONB): lists and dicts are bound as JSON text and decoded
   again on the way out, so thread tags, step metadata and element props round-trip.
3. Element files go to :class:`assistant.ui.chat_files.LocalStorageClient`;
   :func:`mount_files` serves them to their owner only, so a resumed thread's images
   load after a restart.
4. :func:`local_user` is the header-auth callback body for a single-user, loopback-only
   app: Chainlit keeps history only for an authenticated user, and this gives one
   without a login screen.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.element import ElementDict
from chainlit.step import StepDict
from chainlit.types import ThreadDict
from chainlit.user import User
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request

from assistant.ui import compat as chainlit_compat  # noqa: F401  (fixes chainlit before use)
from assistant.ui.chat_files import (
    FILES_ROUTE_PREFIX,
    Authorize,
    LocalStorageClient,
    add_files_route,
)
from assistant.ui.chat_schema import MIGRATIONS, TABLES, ensure_schema, ensure_schema_sync

__all__ = [
    "FILES_ROUTE_PREFIX",
    "MIGRATIONS",
    "TABLES",
    "EgakiDataLayer",
    "LocalStorageClient",
    "chat_owner_only",
    "ensure_schema",
    "ensure_schema_sync",
    "local_user",
    "make_data_layer",
    "mount_files",
]

LOCAL_USER_IDENTIFIER = "local"

# ---- reading and writing values SQLite cannot hold natively ----------------------------

_STEP_BOOLS = ("streaming", "waitForAnswer", "isError", "defaultOpen", "autoCollapse")


def _bindable(value: Any) -> Any:
    """Lists and dicts (tags, modes, playerConfig) are stored as JSON text."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _as_dict(value: Any) -> dict[str, Any]:
    decoded = _from_json(value)
    return decoded if isinstance(decoded, dict) else {}


def _as_tags(value: Any) -> list[str] | None:
    decoded = _from_json(value)
    if decoded is None or isinstance(decoded, list):
        return decoded
    return [str(decoded)]  # a bare string someone else wrote


def decode_step(step: StepDict) -> StepDict:
    """Turn a step read from SQLite back into the shapes the UI and Chainlit expect."""
    raw: dict[str, Any] = dict(step)
    raw["metadata"] = _as_dict(raw.get("metadata"))
    raw["tags"] = _as_tags(raw.get("tags"))
    if raw.get("generation") is not None:
        raw["generation"] = _as_dict(raw["generation"]) or None
    if raw.get("output") is None:
        raw["output"] = ""  # Chainlit's thread search calls .lower() on it
    for key in _STEP_BOOLS:
        if isinstance(raw.get(key), int):
            raw[key] = bool(raw[key])
    return StepDict(**raw)  # type: ignore[typeddict-item]


def decode_element(element: ElementDict) -> ElementDict:
    """Props and player config back to dicts, autoPlay back to a bool."""
    raw: dict[str, Any] = dict(element)
    raw["props"] = _as_dict(raw.get("props"))
    if raw.get("playerConfig") is not None:
        raw["playerConfig"] = _as_dict(raw["playerConfig"])
    if isinstance(raw.get("autoPlay"), int):
        raw["autoPlay"] = bool(raw["autoPlay"])
    return ElementDict(**raw)  # type: ignore[typeddict-item]


def decode_thread(thread: ThreadDict) -> ThreadDict:
    """Thread tags and metadata, and every step and element in it, decoded."""
    raw: dict[str, Any] = dict(thread)
    raw["metadata"] = _as_dict(raw.get("metadata"))
    raw["tags"] = _as_tags(raw.get("tags"))
    raw["steps"] = [decode_step(s) for s in raw.get("steps") or []]
    raw["elements"] = [decode_element(e) for e in raw.get("elements") or []]
    return ThreadDict(**raw)  # type: ignore[typeddict-item]


class EgakiDataLayer(SQLAlchemyDataLayer):
    """Chainlit's SQLAlchemy data layer, taught to store lists and dicts in SQLite."""

    async def execute_sql(
        self, query: str, parameters: dict
    ) -> list[dict[str, Any]] | int | None:
        """Bind lists/dicts as JSON: SQLite has no array or JSONB parameters."""
        bound = {key: _bindable(value) for key, value in parameters.items()}
        return await super().execute_sql(query, bound)

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """As Chainlit's, but an empty name is no name: Chainlit names a thread after its
        first message's text, "" for a picture sent alone, which would erase a title."""
        await super().update_thread(thread_id, name=name or None, user_id=user_id,
                                    metadata=metadata, tags=tags)

    async def get_all_user_threads(
        self, user_id: str | None = None, thread_id: str | None = None
    ) -> list[ThreadDict] | None:
        """Threads (for the history list and resume) with JSON columns decoded."""
        threads = await super().get_all_user_threads(user_id=user_id, thread_id=thread_id)
        return None if threads is None else [decode_thread(t) for t in threads]

    async def get_step(self, step_id: str) -> StepDict | None:
        step = await super().get_step(step_id)
        return None if step is None else decode_step(step)

    async def get_element(self, thread_id: str, element_id: str) -> ElementDict | None:
        element = await super().get_element(thread_id, element_id)
        return None if element is None else decode_element(element)

    async def get_favorite_steps(self, user_id: str) -> list[StepDict]:
        return [decode_step(s) for s in await super().get_favorite_steps(user_id)]

    async def file_owner(self, object_key: str) -> str | None:
        """The id of the user whose thread holds the element stored at ``object_key``.

        Asked of the database, not read from the key: Chainlit names a file after its
        thread's user, but a first message's files are often written before the thread
        has a user, and then land under ``unknown/``.
        """
        found = await self.execute_sql(
            'SELECT t."userId" AS owner FROM elements e JOIN threads t '
            'ON t."id" = e."threadId" WHERE e."objectKey" = :key LIMIT 1',
            {"key": object_key},
        )
        if isinstance(found, list) and found:
            return found[0]["owner"]
        return None


async def chat_owner_only(request: Request, object_key: str) -> bool:
    """Authorize hook for the files route: with login on, only the thread's owner reads.

    Without login (no auth callback) Chainlit keeps no history, so nothing is stored.
    """
    from chainlit.auth import get_current_user, require_login
    from chainlit.auth.cookie import get_token_from_cookies
    from chainlit.data import get_data_layer

    if not require_login():
        return True
    token = get_token_from_cookies(dict(request.cookies))
    if not token:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value if scheme.lower() == "bearer" else None
    if not token:
        return False
    try:
        user = await get_current_user(token)
    except HTTPException:  # a bad or expired token
        return False
    data_layer = get_data_layer()
    user_id = getattr(user, "id", None)
    if not user_id or not isinstance(data_layer, EgakiDataLayer):
        return False
    return await data_layer.file_owner(object_key) == user_id


def mount_files(
    app: Starlette,
    root: Path,
    prefix: str = FILES_ROUTE_PREFIX,
    authorize: Authorize | None = chat_owner_only,
) -> None:
    """Serve chat files under ``root`` at ``GET {prefix}/{path}`` on Chainlit's ``app``.

    Files outside ``root`` answer 404, as do files of another user's thread. The route
    is put first, ahead of Chainlit's catch-all UI route; calling twice replaces it.
    """
    add_files_route(app, root, prefix, authorize)


def make_data_layer(
    db_path: Path, files_root: Path, url_prefix: str = FILES_ROUTE_PREFIX
) -> EgakiDataLayer:
    """The data layer for ``@cl.data_layer``: schema ensured, files under ``files_root``.

    ``url_prefix`` must match the prefix given to :func:`mount_files`.
    """
    ensure_schema_sync(db_path)
    return EgakiDataLayer(
        conninfo=f"sqlite+aiosqlite:///{Path(db_path).resolve()}",
        # Chainlit writes steps from many tasks at once: wait for the lock, don't fail.
        connect_args={"timeout": 30},
        storage_provider=LocalStorageClient(files_root, url_prefix),
    )


def _is_loopback_host(host_header: str) -> bool:
    hostname = urlsplit(f"//{host_header}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def local_user(headers: Mapping[str, str]) -> User | None:
    """The single local user, for ``@cl.header_auth_callback`` on a loopback-only app.

    Only requests addressed to a loopback host get it: a page that points its own domain
    at 127.0.0.1 (DNS rebinding) sends its domain as ``Host`` and is refused.
    """
    if not _is_loopback_host(headers.get("host", "")):
        return None
    return User(identifier=LOCAL_USER_IDENTIFIER, metadata={"provider": "local"})
