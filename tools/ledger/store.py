"""The ledger's source of truth: one SQLite file (``data_dir/ledger.sqlite3``, WAL mode).

Schema changes are named, append-only migrations recorded in ``_migrations`` (never edit
one that shipped; add the next), run by :mod:`tools.core.migrations`. Every operation
opens its own short-lived connection, so any number of threads and processes can share
the file: WAL lets readers run during a write, ``BEGIN IMMEDIATE`` plus a busy timeout
queues writers instead of failing. A batch of images is inserted in one transaction: all
of it is recorded, or none.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from tools.core.migrations import Migrations
from tools.core.request import ImageRequest
from tools.ledger.types import LedgerError, LedgerRecord, UnknownRecord, new_id

BUSY_TIMEOUT_S = 30.0
MIGRATIONS = Migrations("_migrations")
migration = MIGRATIONS.register  # @migration: the next step, named after its function


@migration
def m001_records(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE records (
            id TEXT PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            request_json TEXT NOT NULL,
            prompt TEXT NOT NULL,
            negative_prompt TEXT NOT NULL DEFAULT '',
            seed INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            model_name TEXT NOT NULL DEFAULT '',
            model_hash TEXT NOT NULL DEFAULT '',
            extra_json TEXT NOT NULL DEFAULT '{}',
            infotext TEXT NOT NULL DEFAULT '',
            user_words TEXT NOT NULL DEFAULT '',
            thread_id TEXT NOT NULL DEFAULT '',
            parent_id TEXT,
            created_at TEXT NOT NULL,
            duration_s REAL NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'shown' CHECK (status IN ('shown', 'rejected')),
            rating INTEGER CHECK (rating BETWEEN 1 AND 5),
            favourite INTEGER NOT NULL DEFAULT 0,
            quality_json TEXT,
            missing INTEGER NOT NULL DEFAULT 0,
            origin TEXT NOT NULL DEFAULT 'generated'
        )
        """
    )
    db.execute("CREATE INDEX records_created ON records (created_at)")
    db.execute("CREATE INDEX records_thread ON records (thread_id)")
    db.execute("CREATE INDEX records_parent ON records (parent_id)")


# Columns written on insert, in order (``id`` is chosen by the store).
_COLUMNS = (
    "path", "request_json", "prompt", "negative_prompt", "seed", "width", "height",
    "model_name", "model_hash", "extra_json", "infotext", "user_words", "thread_id",
    "parent_id", "created_at", "duration_s", "status", "quality_json", "origin",
)  # fmt: skip
_INIT_LOCK = threading.Lock()


class LedgerStore:
    """Records in SQLite. Paths inside ``root`` are stored relative to it (movable data)."""

    def __init__(self, db_path: Path, *, root: Path) -> None:
        self.db_path = db_path
        self.root = root
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with _INIT_LOCK, closing(self._connect()) as db:
            try:
                MIGRATIONS.apply(db)
            except sqlite3.Error as err:
                raise _storage_error(self.db_path, err) from err

    # --- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed record survives power loss too (one fsync per generation).
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as err:
            raise _storage_error(self.db_path, err) from err
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error."""
        with closing(self._connect()) as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException as err:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error):
                    raise _storage_error(self.db_path, err) from err
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with closing(self._connect()) as db:
            try:
                return list(db.execute(sql, params))
            except sqlite3.Error as err:
                raise _storage_error(self.db_path, err) from err

    # --- paths -------------------------------------------------------------------------

    def path_key(self, path: Path) -> str:
        full = Path(path).resolve()
        try:
            return full.relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(full)

    def full_path(self, key: str) -> Path:
        path = Path(key)
        return path if path.is_absolute() else self.root / path

    # --- writes ------------------------------------------------------------------------

    def insert(self, rows: list[dict[str, Any]], *, upgrade: bool) -> list[str]:
        """Insert ``rows`` (``_COLUMNS`` keys) in one transaction; returns their ids.

        A row whose path is already recorded keeps its id: with ``upgrade`` its fields are
        replaced (the generator knows more than a reconcile pass that beat it to the
        file), otherwise it is left alone.
        """
        cols = ", ".join(("id", *_COLUMNS))
        marks = ", ".join("?" * (len(_COLUMNS) + 1))
        update = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "path")
        conflict = f"DO UPDATE SET {update}, missing = 0" if upgrade else "DO NOTHING"
        sql = f"INSERT INTO records ({cols}) VALUES ({marks}) ON CONFLICT (path) {conflict}"
        ids: list[str] = []
        with self._write() as db:
            for row in rows:
                values = [row[c] for c in _COLUMNS]
                for _ in range(10):  # 8 hex digits: a clash is rare, two in a row rarer
                    try:
                        db.execute(sql, [new_id(), *values])
                        break
                    except sqlite3.IntegrityError as err:
                        if "records.id" not in str(err):
                            raise
                else:
                    raise LedgerError.of("ledger_no_free_id")
                found = db.execute("SELECT id FROM records WHERE path = ?", (row["path"],))
                ids.append(found.fetchone()[0])
        return ids

    def update(self, record_id: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as db:
            cur = db.execute(f"UPDATE records SET {sets} WHERE id = ?",
                             [*fields.values(), record_id])
            if cur.rowcount == 0:
                raise UnknownRecord(record_id)

    def set_missing(self, ids: Sequence[str], missing: bool) -> None:
        with self._write() as db:
            db.executemany("UPDATE records SET missing = ? WHERE id = ?",
                           [(int(missing), i) for i in ids])

    # --- reads -------------------------------------------------------------------------

    def get(self, record_id: str) -> LedgerRecord | None:
        rows = self._read("SELECT * FROM records WHERE id = ?", (record_id,))
        return self._record(rows[0]) if rows else None

    def get_many(self, ids: Sequence[str]) -> dict[str, LedgerRecord]:
        out: dict[str, LedgerRecord] = {}
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for row in self._read(f"SELECT * FROM records WHERE id IN ({marks})", chunk):
                out[row["id"]] = self._record(row)
        return out

    def recent(
        self, n: int, *, where: str = "1", params: Sequence[Any] = ()
    ) -> list[LedgerRecord]:
        sql = f"SELECT * FROM records WHERE {where} ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [self._record(r) for r in self._read(sql, [*params, n])]

    def count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM records")[0][0])

    def ids(self) -> list[str]:
        return [r[0] for r in self._read("SELECT id FROM records ORDER BY rowid")]

    def paths(self) -> dict[str, tuple[str, bool]]:
        """``path key → (id, missing)`` for every record."""
        rows = self._read("SELECT path, id, missing FROM records")
        return {r[0]: (r[1], bool(r[2])) for r in rows}

    def text_search(self, terms: list[str], n: int, *, where: str = "1",
                    params: Sequence[Any] = ()) -> list[tuple[LedgerRecord, float]]:
        """Records containing the most of ``terms`` (LIKE over prompt and the user's words)."""
        if not terms:
            return []
        text = "(prompt || ' ' || user_words)"
        hits = " + ".join(f"({text} LIKE ? ESCAPE '\\')" for _ in terms)
        sql = (
            f"SELECT *, ({hits}) AS hits FROM records WHERE ({where}) AND hits > 0 "
            "ORDER BY hits DESC, created_at DESC LIMIT ?"
        )
        likes = [f"%{_escape_like(t)}%" for t in terms]
        rows = self._read(sql, [*likes, *params, n])
        return [(self._record(r), r["hits"] / len(terms)) for r in rows]

    def _record(self, row: sqlite3.Row) -> LedgerRecord:
        return LedgerRecord(
            id=row["id"],
            path=self.full_path(row["path"]),
            request=ImageRequest.model_validate_json(row["request_json"]),
            seed=row["seed"],
            width=row["width"],
            height=row["height"],
            model_name=row["model_name"],
            model_hash=row["model_hash"],
            extra=json.loads(row["extra_json"] or "{}"),
            infotext=row["infotext"],
            user_words=row["user_words"],
            thread_id=row["thread_id"],
            parent_id=row["parent_id"],
            created_at=row["created_at"],
            duration_s=row["duration_s"],
            status=row["status"],
            rating=row["rating"],
            favourite=bool(row["favourite"]),
            quality=json.loads(row["quality_json"]) if row["quality_json"] else None,
            missing=bool(row["missing"]),
            origin=row["origin"],
        )


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _storage_error(path: Path, err: sqlite3.Error) -> LedgerError:
    return LedgerError.of("ledger_storage_unusable", path=path, error=err)
