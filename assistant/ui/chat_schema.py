"""The SQLite schema behind Chainlit 2.12's SQLAlchemy data layer, and its migrations.

Migrations are named, append-only and each idempotent; the applied ones are recorded in
``_egaki_migrations`` by the shared runner (:mod:`tools.core.migrations`). A database
built from Chainlit's published schema, or by an older Chainlit, is adopted: missing
tables are created and missing columns added.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from tools.core.migrations import Migration, Migrations

# Every column Chainlit 2.12 inserts (the keys of StepDict, ElementDict, Feedback...)
# or selects. Types are SQLite affinities; JSON lives in TEXT. No foreign keys: Chainlit
# deletes children itself, and its writes race (an element can land before its step).
TABLES: dict[str, dict[str, str]] = {
    "users": {
        "id": "TEXT PRIMARY KEY",
        "identifier": "TEXT NOT NULL UNIQUE",
        "metadata": "TEXT NOT NULL DEFAULT '{}'",
        "createdAt": "TEXT",
    },
    "threads": {
        "id": "TEXT PRIMARY KEY",
        "createdAt": "TEXT",
        "name": "TEXT",
        "userId": "TEXT",
        "userIdentifier": "TEXT",
        "tags": "TEXT",
        "metadata": "TEXT",
    },
    "steps": {
        "id": "TEXT PRIMARY KEY",
        "name": "TEXT NOT NULL",
        "type": "TEXT NOT NULL",
        "threadId": "TEXT NOT NULL",
        "parentId": "TEXT",
        "streaming": "BOOLEAN NOT NULL DEFAULT 0",
        "waitForAnswer": "BOOLEAN",
        "isError": "BOOLEAN",
        "metadata": "TEXT",
        "tags": "TEXT",
        "input": "TEXT",
        "output": "TEXT",
        "createdAt": "TEXT",
        "command": "TEXT",
        "modes": "TEXT",
        "start": "TEXT",
        "end": "TEXT",
        "generation": "TEXT",
        "showInput": "TEXT",
        "language": "TEXT",
        "indent": "INTEGER",
        "defaultOpen": "BOOLEAN",
        "autoCollapse": "BOOLEAN",
        "icon": "TEXT",
    },
    "elements": {
        "id": "TEXT PRIMARY KEY",
        "threadId": "TEXT",
        "type": "TEXT",
        "url": "TEXT",
        "chainlitKey": "TEXT",
        "name": "TEXT NOT NULL",
        "display": "TEXT",
        "objectKey": "TEXT",
        "size": "TEXT",
        "page": "INTEGER",
        "language": "TEXT",
        "forId": "TEXT",
        "mime": "TEXT",
        # Chainlit's get_element does json.loads(props): NULL would crash it.
        "props": "TEXT DEFAULT '{}'",
        "autoPlay": "BOOLEAN",
        "playerConfig": "TEXT",
    },
    "feedbacks": {
        "id": "TEXT PRIMARY KEY",
        "forId": "TEXT NOT NULL",
        "threadId": "TEXT",
        "value": "INTEGER NOT NULL",
        "comment": "TEXT",
    },
}

INDEXES = {
    "ix_threads_user": 'threads ("userId")',
    "ix_steps_thread": 'steps ("threadId", "createdAt")',
    "ix_elements_thread": 'elements ("threadId")',
    "ix_feedbacks_for": 'feedbacks ("forId")',
}


def _q(name: str) -> str:
    """Quote an identifier: Chainlit's columns are camelCase, and "end" is a keyword."""
    return '"' + name.replace('"', '""') + '"'


def _columns_of(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({_q(table)})")}


def _addable(decl: str) -> str:
    """A column declaration ALTER TABLE ADD COLUMN accepts.

    SQLite refuses PRIMARY KEY/UNIQUE there and NOT NULL without a default; rows that
    predate the column simply get NULL (or the declared default).
    """
    words = decl.replace("PRIMARY KEY", "").replace("UNIQUE", "")
    if "DEFAULT" not in words:
        words = words.replace("NOT NULL", "")
    return " ".join(words.split())


def add_missing_columns(conn: sqlite3.Connection, table: str, columns: Mapping[str, str]) -> None:
    """``ALTER TABLE ADD COLUMN`` for each of ``columns`` the table lacks (idempotent)."""
    have = _columns_of(conn, table)
    for name, decl in columns.items():
        if name not in have:
            conn.execute(f"ALTER TABLE {_q(table)} ADD COLUMN {_q(name)} {_addable(decl)}")


def _create_tables(conn: sqlite3.Connection) -> None:
    """Create missing tables; bring existing ones (e.g. made from Chainlit's published
    schema, or by an older Chainlit) up to the 2.12 columns."""
    for table, columns in TABLES.items():
        cols = ", ".join(f"{_q(n)} {d}" for n, d in columns.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {_q(table)} ({cols})")
        add_missing_columns(conn, table, columns)


def _create_indexes(conn: sqlite3.Connection) -> None:
    for name, target in INDEXES.items():
        conn.execute(f"CREATE INDEX IF NOT EXISTS {_q(name)} ON {target}")


MIGRATIONS = Migrations(
    "_egaki_migrations",
    [
        Migration("0001_chainlit_2_12_tables", _create_tables),
        Migration("0002_lookup_indexes", _create_indexes),
    ],
)


def ensure_schema_sync(db_path: Path, migrations: Migrations = MIGRATIONS) -> list[str]:
    """Apply the migrations ``db_path`` lacks, each in its own transaction.

    Returns the names applied now (empty when the schema is current). ``BEGIN
    IMMEDIATE`` makes two processes starting at once migrate one after the other.
    """
    return migrations.apply_to(db_path)


async def ensure_schema(db_path: Path) -> None:
    """Create or migrate the chat history schema at ``db_path`` (idempotent)."""
    await MIGRATIONS.apply_to_async(db_path)
