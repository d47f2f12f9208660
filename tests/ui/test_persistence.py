"""Chat history on SQLite: schema, migrations, the data layer, chat files and resume."""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import chainlit as cl
import httpx
import pytest
from chainlit.context import init_http_context
from chainlit.data import sql_alchemy
from chainlit.element import ElementDict
from chainlit.step import StepDict
from chainlit.types import Feedback, Pagination, ThreadFilter
from chainlit.user import PersistedUser
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from assistant.ui.persistence import (
    EgakiDataLayer,
    LocalStorageClient,
    ensure_schema,
    local_user,
    make_data_layer,
    mount_files,
)
from tests.support.app_process import PERSISTENCE_APP, AppProcess, chat_client, header_login
from tools.core.errors import InvalidRequest


def png_bytes(color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def columns(db: Path) -> dict[str, set[str]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')} for t in tables}


def rows(db: Path, sql: str) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]


class SqlWarnings(logging.Handler):
    """Chainlit's data layer logs SQL errors and carries on; tests must see them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def sql_warnings() -> Iterator[SqlWarnings]:
    handler = SqlWarnings()
    logger = logging.getLogger("chainlit")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
async def layer(tmp_path: Path, sql_warnings: SqlWarnings) -> AsyncIterator[EgakiDataLayer]:
    dl = make_data_layer(tmp_path / "chat.sqlite3", tmp_path / "chat_files")
    yield dl
    await dl.close()
    assert sql_warnings.messages == []


async def new_thread(dl: EgakiDataLayer) -> tuple[PersistedUser, str]:
    user = await dl.create_user(cl.User(identifier="local"))
    assert user is not None and user.identifier == "local"
    thread_id = str(uuid.uuid4())
    init_http_context(thread_id=thread_id, user=user)  # Chainlit's writes need a context
    return user, thread_id


# ---- schema -------------------------------------------------------------------------

ALIASES = {"t": "threads", "s": "steps", "e": "elements", "f": "feedbacks"}


def chainlit_columns() -> dict[str, set[str]]:
    """Every column the installed Chainlit's SQLAlchemy layer selects or inserts."""
    source = inspect.getsource(sql_alchemy)
    wanted: dict[str, set[str]] = {t: set() for t in (*ALIASES.values(), "users")}
    for alias, col in re.findall(r'\b([tsef])\."(\w+)"', source):
        wanted[ALIASES[alias]].add(col)
    for cols in re.findall(r"INSERT INTO users \(([^)]*)\)", source):
        wanted["users"] |= {c.strip(' "') for c in cols.split(",")}
    # Dynamic INSERTs take their columns from these dicts' keys.
    wanted["steps"] |= set(StepDict.__annotations__) - {"feedback"}
    wanted["elements"] |= set(ElementDict.__annotations__) - {"path"}
    wanted["feedbacks"] |= {f.name for f in fields(Feedback)}
    wanted["threads"] |= {"id", "createdAt", "name", "userId", "userIdentifier", "tags",
                          "metadata"}
    return wanted


async def test_fresh_schema_has_every_column_chainlit_reads_or_writes(tmp_path: Path) -> None:
    db = tmp_path / "chat.sqlite3"
    await ensure_schema(db)
    have = columns(db)
    for table, wanted in chainlit_columns().items():
        assert wanted <= have[table], f"{table} lacks {wanted - have[table]}"
    assert {"autoCollapse", "defaultOpen", "modes", "command"} <= have["steps"]
    applied = [r["name"] for r in rows(db, "SELECT name FROM _egaki_migrations ORDER BY name")]
    assert applied == ["0001_chainlit_2_12_tables", "0002_lookup_indexes"]


OLD_STEPS = """CREATE TABLE steps ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL,
  "type" TEXT NOT NULL, "threadId" TEXT NOT NULL, "parentId" TEXT,
  "streaming" BOOLEAN NOT NULL, "waitForAnswer" BOOLEAN, "isError" BOOLEAN,
  "metadata" TEXT, "tags" TEXT, "input" TEXT, "output" TEXT, "createdAt" TEXT,
  "start" TEXT, "end" TEXT, "generation" TEXT, "showInput" TEXT, "language" TEXT)"""


async def test_migration_adds_missing_columns_to_an_old_db_and_keeps_rows(
    tmp_path: Path, sql_warnings: SqlWarnings
) -> None:
    db = tmp_path / "chat.sqlite3"
    with sqlite3.connect(db) as conn:  # as built from an older Chainlit's schema
        conn.execute(OLD_STEPS)
        conn.execute('CREATE TABLE threads ("id" TEXT PRIMARY KEY, "name" TEXT)')
        conn.execute("INSERT INTO threads VALUES ('t1', 'old chat')")
        conn.execute("INSERT INTO steps (id, name, type, threadId, streaming, output) "
                     "VALUES ('s1', 'Egaki', 'assistant_message', 't1', 0, 'kept')")

    await ensure_schema(db)
    await ensure_schema(db)  # idempotent

    have = columns(db)
    assert {"autoCollapse", "defaultOpen", "modes", "command"} <= have["steps"]
    assert {"userId", "userIdentifier", "tags", "metadata", "createdAt"} <= have["threads"]
    assert rows(db, "SELECT output FROM steps") == [{"output": "kept"}]
    assert len(rows(db, "SELECT * FROM _egaki_migrations")) == 2

    dl = make_data_layer(db, tmp_path / "files")
    _, thread_id = await new_thread(dl)
    step = cl.Step(name="tool", type="tool", auto_collapse=True, default_open=True)
    step.thread_id = thread_id
    await dl.create_step(step.to_dict())
    await dl.close()
    assert rows(db, f"SELECT autoCollapse, defaultOpen FROM steps WHERE id = '{step.id}'") == [
        {"autoCollapse": 1, "defaultOpen": 1}]
    assert sql_warnings.messages == []


# ---- data layer ---------------------------------------------------------------------

async def test_thread_round_trips_tags_steps_and_an_image_with_a_loadable_url(
    tmp_path: Path, layer: EgakiDataLayer
) -> None:
    user, thread_id = await new_thread(layer)
    await layer.update_thread(thread_id, name="red square", user_id=user.id,
                              tags=["sd15", "draft"], metadata={"chat_profile": "fast"})
    reply = cl.Message(content="Here it is", author="Egaki")
    reply.thread_id = thread_id
    reply_dict = reply.to_dict()
    reply_dict["modes"] = {"quality": "high"}  # a dict column: stored as JSON
    await layer.create_step(reply_dict)
    tool = cl.Step(name="generate_image", type="tool", auto_collapse=True, show_input="json")
    tool.thread_id, tool.input, tool.output, tool.tags = thread_id, "{}", "ok", ["image"]
    await layer.create_step(tool.to_dict())
    picture = tmp_path / "red.png"
    picture.write_bytes(png_bytes())
    image = cl.Image(path=str(picture), name="red square.png", thread_id=thread_id,
                     for_id=reply.id, mime="image/png")
    await layer.create_element(image)

    thread = await layer.get_thread(thread_id)
    assert thread is not None
    assert thread["tags"] == ["sd15", "draft"]
    assert thread["metadata"] == {"chat_profile": "fast"}
    assert [s["output"] for s in thread["steps"]] == ["Here it is", "ok"]
    assert thread["steps"][1]["tags"] == ["image"]
    assert thread["steps"][1]["metadata"] == {}
    [element] = thread["elements"] or []
    assert element["props"] == {} and element["mime"] == "image/png"
    assert element["url"] == f"/egaki-files/{user.id}/{image.id}/red%20square.png"

    page = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=user.id,
                                                                       search="here"))
    assert [t["id"] for t in page.data] == [thread_id]
    fetched = await layer.get_element(thread_id, image.id)
    assert fetched is not None and fetched["props"] == {}

    app = Starlette()
    mount_files(app, tmp_path / "chat_files", authorize=None)
    response = TestClient(app).get(element["url"])
    assert response.status_code == 200
    assert response.content == picture.read_bytes()
    assert response.headers["content-type"] == "image/png"


async def test_deleting_a_thread_deletes_its_files(tmp_path: Path, layer: EgakiDataLayer) -> None:
    user, thread_id = await new_thread(layer)
    await layer.update_thread(thread_id, user_id=user.id)
    msg = cl.Message(content="x")
    msg.thread_id = thread_id
    await layer.create_step(msg.to_dict())
    await layer.create_element(cl.Image(content=png_bytes(), name="a.png", thread_id=thread_id,
                                        for_id=msg.id, mime="image/png"))
    [stored] = (tmp_path / "chat_files").rglob("a.png")
    assert stored.read_bytes() == png_bytes()
    await layer.delete_thread(thread_id)
    assert await layer.get_thread(thread_id) is None
    assert list((tmp_path / "chat_files").iterdir()) == []


# ---- storage client and file route ----------------------------------------------------

@pytest.mark.parametrize("key", ["../x", "u/../../x", "/etc/passwd", "u//x", "u\\x", "",
                                 "u/./x", "u/x\x00", "u/.."])
async def test_storage_client_refuses_keys_that_escape(tmp_path: Path, key: str) -> None:
    store = LocalStorageClient(tmp_path / "root")
    with pytest.raises(InvalidRequest):
        await store.upload_file(key, b"data")
    assert not (tmp_path / "x").exists()


async def test_storage_client_refuses_a_symlink_out_of_its_root(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(InvalidRequest):
        await LocalStorageClient(tmp_path / "root").upload_file("link/f", b"data")
    assert list((tmp_path / "outside").iterdir()) == []


async def test_storage_client_overwrites_atomically_and_prunes_on_delete(tmp_path: Path) -> None:
    store = LocalStorageClient(tmp_path, "/files")
    result = await store.upload_file("u/e/pic.png", b"one", mime="image/png")
    assert result["object_key"] == "u/e/pic.png" and result["url"] == "/files/u/e/pic.png"
    await store.upload_file("u/e/pic.png", "two")
    assert (tmp_path / "u/e/pic.png").read_bytes() == b"two"
    with pytest.raises(FileExistsError):
        await store.upload_file("u/e/pic.png", b"three", overwrite=False)
    assert [p.name for p in (tmp_path / "u/e").iterdir()] == ["pic.png"]  # no temp leftovers
    assert await store.get_read_url("u/e/pic.png") == "/files/u/e/pic.png"
    assert await store.delete_file("u/e/pic.png") is True
    assert await store.delete_file("u/e/pic.png") is False
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def file_app(tmp_path: Path) -> TestClient:
    root = tmp_path / "files"
    (root / "u1/e1").mkdir(parents=True)
    (root / "u1/e1/picture").write_bytes(png_bytes())  # no extension: sniffed
    (root / "u1/e1/page.html").write_text("<script>alert(1)</script>")
    (root / "u2/e2").mkdir(parents=True)
    (root / "u2/e2/theirs.png").write_bytes(png_bytes("blue"))
    (tmp_path / "secret.txt").write_text("secret")

    async def catch_all(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ui")

    async def owner_u1(request: Request, key: str) -> bool:
        return key.startswith("u1/")

    # Like Chainlit's app: a catch-all route is already registered.
    app = Starlette(routes=[Route("/{full_path:path}", catch_all)])
    mount_files(app, root, "/egaki-files", authorize=owner_u1)
    mount_files(app, root, "/egaki-files", authorize=owner_u1)  # idempotent
    return TestClient(app)


def test_file_route_serves_files_with_their_type(file_app: TestClient) -> None:
    response = file_app.get("/egaki-files/u1/e1/picture")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_file_route_serves_active_content_only_as_a_sandboxed_download(
    file_app: TestClient,
) -> None:
    response = file_app.get("/egaki-files/u1/e1/page.html")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == "attachment"
    assert response.headers["content-security-policy"] == "sandbox"


@pytest.mark.parametrize("path", ["/egaki-files/%2e%2e/secret.txt",
                                  "/egaki-files/u1/%2e%2e/%2e%2e/secret.txt",
                                  "/egaki-files/u1/e1/missing.png",
                                  "/egaki-files/u2/e2/theirs.png"])
def test_file_route_404s_outside_root_missing_or_not_yours(file_app: TestClient,
                                                           path: str) -> None:
    response = file_app.get(path)
    assert response.status_code == 404
    assert b"secret" not in response.content


async def test_raw_dot_dot_path_is_refused(file_app: TestClient) -> None:
    # HTTP clients normalize "..": hand the raw path straight to the ASGI app instead.
    path = "/egaki-files/u1/e1/../../../secret.txt"
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [], "root_path": "", "scheme": "http",
             "server": ("testserver", 80), "client": ("127.0.0.1", 1), "http_version": "1.1"}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await file_app.app(scope, receive, send)
    assert sent[0]["status"] == 404
    assert all(b"secret" not in m.get("body", b"") for m in sent)


@pytest.mark.parametrize(("host", "ok"), [("127.0.0.1:8000", True), ("localhost:8000", True),
                                          ("[::1]:8000", True), ("localhost", True),
                                          ("evil.example:8000", False), ("", False),
                                          ("192.168.1.5:8000", False)])
def test_local_user_only_for_requests_addressed_to_loopback(host: str, ok: bool) -> None:
    user = local_user({"host": host})
    assert (user is not None and user.identifier == "local") is ok


# ---- end to end: restart, resume, image loads ------------------------------------------

@pytest.mark.slow
async def test_resumed_thread_brings_back_its_image_after_a_restart(tmp_path: Path) -> None:
    picture = tmp_path / "red.png"
    picture.write_bytes(png_bytes())
    env = {"EGAKI_TEST_CHAT_DIR": str(tmp_path / "chat"), "EGAKI_TEST_IMAGE": str(picture),
           "CHAINLIT_AUTH_SECRET": "test-secret-" + "x" * 40}
    db = tmp_path / "chat" / "chat.sqlite3"

    def server() -> AppProcess:
        return AppProcess(env, app_file=PERSISTENCE_APP, app_root=tmp_path / "approot")

    with server() as first:
        assert header_login(first.url, host="evil.example").status_code == 401
        login = header_login(first.url)
        assert login.status_code == 200, login.text
        cookies = dict(login.cookies.items())
        async with chat_client(first, cookies=cookies) as client:
            await client.send("a red square")
            thread_id = (await client.wait_event("first_interaction"))["thread_id"]
            await client.wait_event("element")
            for _ in range(100):  # Chainlit writes elements from a background task
                if rows(db, "SELECT id FROM elements"):
                    break
                await asyncio.sleep(0.05)

    with server() as second:
        async with chat_client(second, thread_id=thread_id, cookies=cookies) as client:
            thread = await client.wait_event("resume_thread")
        messages = [s for s in thread["steps"] if s["type"].endswith("_message")]
        assert [m["output"] for m in messages] == ["a red square", "drew: a red square"]
        assert isinstance(thread["metadata"], dict)  # decoded, so the UI can read it
        [element] = thread["elements"]
        assert element["type"] == "image" and element["url"].startswith("/egaki-files/")

        async with httpx.AsyncClient(base_url=second.url, cookies=cookies) as http:
            image = await http.get(element["url"])
            assert image.status_code == 200
            assert image.headers["content-type"] == "image/png"
            assert image.content == picture.read_bytes()
            history = await http.post("/project/threads",
                                      json={"pagination": {"first": 20}, "filter": {}})
            assert [t["id"] for t in history.json()["data"]] == [thread_id]
        anonymous = httpx.get(second.url + element["url"])
        assert anonymous.status_code == 404
