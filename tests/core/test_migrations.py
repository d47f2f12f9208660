"""One migration runner for both SQLite schemas: each step once, in a transaction, by name;
databases made by the code before the shared runner upgrade and keep their rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from assistant.ui.chat_schema import MIGRATIONS as CHAT_MIGRATIONS
from assistant.ui.chat_schema import ensure_schema, ensure_schema_sync
from tools.core.migrations import Migration, Migrations
from tools.core.request import ImageRequest
from tools.ledger import store as ledger_store
from tools.ledger.store import LedgerStore


def names(db: Path, table: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute(f"SELECT name FROM {table} ORDER BY rowid")]


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def counting(calls: list[str], name: str, sql: str) -> Migration:
    def apply(conn: sqlite3.Connection) -> None:
        calls.append(name)
        conn.execute(sql)

    return Migration(name, apply)


# ---- the runner ---------------------------------------------------------------------

def test_each_migration_runs_once_and_is_recorded_by_name(tmp_path: Path) -> None:
    db, calls = tmp_path / "x.sqlite3", []
    steps = Migrations("_m", [counting(calls, "0001_a", "CREATE TABLE a (x)"),
                              counting(calls, "0002_b", "CREATE TABLE b (x)")])

    assert steps.apply_to(db) == ["0001_a", "0002_b"]
    assert steps.apply_to(db) == []  # current: nothing runs again

    assert calls == ["0001_a", "0002_b"]
    assert names(db, "_m") == ["0001_a", "0002_b"]
    assert {"a", "b", "_m"} <= tables(db)


def test_an_appended_migration_is_the_only_one_applied_later(tmp_path: Path) -> None:
    db, calls = tmp_path / "x.sqlite3", []
    first = counting(calls, "0001_a", "CREATE TABLE a (x)")
    Migrations("_m", [first]).apply_to(db)

    later = Migrations("_m", [first, counting(calls, "0002_b", "CREATE TABLE b (x)")])

    assert later.apply_to(db) == ["0002_b"]
    assert calls == ["0001_a", "0002_b"]


def test_a_failing_migration_is_rolled_back_unrecorded_and_stops_the_run(
    tmp_path: Path,
) -> None:
    db, calls = tmp_path / "x.sqlite3", []

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("disk on fire")

    steps = Migrations("_m", [counting(calls, "0001_a", "CREATE TABLE a (x)"),
                              Migration("0002_broken", half_then_fail),
                              counting(calls, "0003_c", "CREATE TABLE c (x)")])
    with pytest.raises(RuntimeError, match="disk on fire"):
        steps.apply_to(db)

    assert names(db, "_m") == ["0001_a"]  # the first step stays applied
    assert "half" not in tables(db) and "c" not in tables(db)

    fixed = Migrations("_m", [counting(calls, "0001_a", "CREATE TABLE a (x)"),
                              counting(calls, "0002_broken", "CREATE TABLE half (x)"),
                              counting(calls, "0003_c", "CREATE TABLE c (x)")])
    assert fixed.apply_to(db) == ["0002_broken", "0003_c"]


def test_register_names_steps_after_their_functions_and_refuses_duplicates() -> None:
    steps = Migrations("_m")

    @steps.register
    def m001_things(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE things (x)")

    assert steps.names == ["m001_things"]
    with pytest.raises(ValueError, match="registered twice"):
        steps.add(Migration("m001_things", m001_things))
    with pytest.raises(ValueError, match="identifier"):
        Migrations("bad name; DROP TABLE x")


def test_the_runner_needs_an_autocommit_connection(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "x.sqlite3") as conn, pytest.raises(ValueError):
        Migrations("_m").apply(conn)


async def test_async_use_applies_in_a_worker_thread(tmp_path: Path) -> None:
    db, calls = tmp_path / "x.sqlite3", []
    steps = Migrations("_m", [counting(calls, "0001_a", "CREATE TABLE a (x)")])

    assert await steps.apply_to_async(db) == ["0001_a"]
    assert await steps.apply_to_async(db) == []


# ---- databases made before the shared runner ------------------------------------------

def make_ledger_db_the_old_way(db: Path) -> None:
    """What ``LedgerStore.__init__`` did before tools.core.migrations, verbatim."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT "
        "NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
    )
    ledger_store.m001_records(conn)  # a shipped migration: never edited
    conn.execute("INSERT INTO _migrations (name) VALUES (?)", ("m001_records",))
    conn.execute(
        "INSERT INTO records (id, path, request_json, prompt, seed, width, height, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ("a1b2c3d4", "outputs/fox.png", ImageRequest(prompt="a red fox", seed=7)
         .model_dump_json(), "a red fox", 7, 512, 512, "2025-01-02T03:04:05Z"),
    )
    conn.execute("COMMIT")
    conn.close()


def test_a_ledger_made_by_the_previous_store_code_keeps_its_records(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite3"
    make_ledger_db_the_old_way(db)

    store = LedgerStore(db, root=tmp_path)

    record = store.get("a1b2c3d4")
    assert record is not None
    assert record.request.prompt == "a red fox" and record.seed == 7
    assert record.path == tmp_path / "outputs" / "fox.png"
    assert store.count() == 1
    assert names(db, "_migrations") == ["m001_records"]  # not run again


def make_chat_db_the_old_way(db: Path) -> None:
    """What ``ensure_schema_sync`` did before tools.core.migrations: its own table, one
    transaction per migration, ISO timestamps written from Python."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _egaki_migrations "
        "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    for migration in CHAT_MIGRATIONS:  # the two shipped steps, unchanged
        conn.execute("BEGIN IMMEDIATE")
        migration.apply(conn)
        conn.execute("INSERT INTO _egaki_migrations (name, applied_at) VALUES (?, ?)",
                     (migration.name, datetime.now(UTC).isoformat()))
        conn.execute("COMMIT")
    conn.execute("INSERT INTO threads (id, name) VALUES ('t1', 'old chat')")
    conn.execute("INSERT INTO steps (id, name, type, threadId, output) "
                 "VALUES ('s1', 'Egaki', 'assistant_message', 't1', 'kept')")
    conn.close()


async def test_a_chat_db_made_by_the_previous_schema_code_keeps_its_rows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "chat.sqlite3"
    make_chat_db_the_old_way(db)

    assert ensure_schema_sync(db) == []  # already current: nothing re-applied
    await ensure_schema(db)

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM threads").fetchall() == [("old chat",)]
        assert conn.execute("SELECT output FROM steps").fetchall() == [("kept",)]
    assert names(db, "_egaki_migrations") == ["0001_chainlit_2_12_tables",
                                              "0002_lookup_indexes"]
