"""Named, append-only SQLite migrations: one runner for every schema Egaki keeps.

A :class:`Migrations` is an ordered list of named steps plus the table that records which
of them a database has had. :meth:`Migrations.apply` runs each missing step once, in its
own ``BEGIN IMMEDIATE`` transaction together with the row that records it, so a step is
either applied and recorded or not at all, and two processes starting at once migrate
one after the other (the second finds the step recorded and skips it).

Never edit, rename or reorder a step that shipped: databases out there have recorded it
by name. Append the next one. Used by the image ledger (:mod:`tools.ledger.store`) and
the chat history (:mod:`assistant.ui.chat_schema`), each with its own table.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

Step = Callable[[sqlite3.Connection], None]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Migration:
    """One schema step. Never edit or reorder a released one: append a new one."""

    name: str
    apply: Step


class Migrations:
    """The ordered steps of one schema and the table (``table``) recording applied names.

    Register steps in order, either up front (``Migrations(table, [Migration(...), ...])``)
    or with :meth:`register` as a decorator, which names a step after its function.
    """

    def __init__(self, table: str, steps: Iterable[Migration] = ()) -> None:
        if not _IDENTIFIER.fullmatch(table):
            raise ValueError(f"migration table name {table!r} is not a plain SQL identifier")
        self.table = table
        self._steps: list[Migration] = []
        for step in steps:
            self.add(step)

    def add(self, migration: Migration) -> None:
        """Append ``migration``; a name already used is refused (names are the record)."""
        if migration.name in self.names:
            raise ValueError(f"migration {migration.name!r} is registered twice")
        self._steps.append(migration)

    def register(self, fn: Step) -> Step:
        """Decorator: append ``fn`` as the next step, named after the function."""
        self.add(Migration(fn.__name__, fn))
        return fn

    def __iter__(self) -> Iterator[Migration]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def names(self) -> list[str]:
        return [step.name for step in self._steps]

    def applied(self, conn: sqlite3.Connection) -> set[str]:
        """The step names ``conn``'s database has recorded (none before the first run)."""
        self._ensure_table(conn)
        return {row[0] for row in conn.execute(f"SELECT name FROM {self.table}")}

    def apply(self, conn: sqlite3.Connection) -> list[str]:
        """Apply the steps the database lacks, in order; returns the names applied now.

        ``conn`` must be in autocommit mode (``isolation_level=None``): each step runs in
        its own ``BEGIN IMMEDIATE`` transaction, and a step that raises is rolled back,
        left unrecorded, and stops the run.
        """
        if conn.isolation_level is not None:
            raise ValueError(
                "migrations manage their own transactions: open the connection with "
                "isolation_level=None"
            )
        done = self.applied(conn)
        applied_now: list[str] = []
        for step in self._steps:
            if step.name not in done and self._apply_one(conn, step):
                applied_now.append(step.name)
        return applied_now

    def apply_to(self, db_path: Path, *, timeout: float = BUSY_TIMEOUT_S) -> list[str]:
        """Open (or create) ``db_path`` in WAL mode and :meth:`apply`; returns names applied."""
        db_path = Path(db_path)
        db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(db_path, timeout=timeout, isolation_level=None)
        try:
            # WAL lets readers run while a writer works (the UI reads while tasks write).
            conn.execute("PRAGMA journal_mode=WAL")
            return self.apply(conn)
        finally:
            conn.close()

    async def apply_to_async(self, db_path: Path, *, timeout: float = BUSY_TIMEOUT_S) -> list[str]:
        """:meth:`apply_to` in a worker thread, for callers on an event loop."""
        return await asyncio.to_thread(self.apply_to, db_path, timeout=timeout)

    def _ensure_table(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} "
            "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )

    def _apply_one(self, conn: sqlite3.Connection, step: Migration) -> bool:
        """Run ``step`` and record it in one transaction; False if another process did."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Checked again under the write lock: another process may have just run it.
            if conn.execute(
                f"SELECT 1 FROM {self.table} WHERE name = ?", (step.name,)
            ).fetchone():
                conn.execute("COMMIT")
                return False
            step.apply(conn)
            conn.execute(
                f"INSERT INTO {self.table} (name, applied_at) "
                "VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (step.name,),
            )
            conn.execute("COMMIT")
            return True
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
