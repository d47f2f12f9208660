"""The ledger's data: records, the context a generation is recorded with, search results.

Kept free of SQLite and Chroma so the image runner and the UI can import it cheaply.
Ids are 8 lowercase hex digits, shown to people as ``#a1b2c3d4``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tools.core.engine import GeneratedImage
from tools.core.errors import EgakiError, InvalidRequest
from tools.core.messages import Message
from tools.core.request import ImageRequest

Status = Literal["shown", "rejected"]
Origin = Literal["generated", "reconciled"]
ExportFormat = Literal["a1111", "json"]
STATUSES: tuple[Status, ...] = ("shown", "rejected")
ID_LENGTH = 8
_ID = re.compile(r"^#?([0-9a-fA-F]{8})$")


class LedgerError(EgakiError):
    """The ledger could not store or read a record (disk full, broken database...)."""


class UnknownRecord(InvalidRequest):
    """No record has the given id."""

    def __init__(self, record_id: str) -> None:
        shown = record_id if record_id.startswith("#") else f"#{record_id}"
        super().__init__(Message.of("unknown_record", tag=shown))
        self.record_id = record_id


def new_id() -> str:
    return secrets.token_hex(ID_LENGTH // 2)


def normalize_id(text: str) -> str:
    """``"#A1B2C3D4"`` → ``"a1b2c3d4"``; raises :class:`UnknownRecord` for anything else."""
    m = _ID.match(text.strip())
    if m is None:
        raise UnknownRecord(text.strip() or "#")
    return m.group(1).lower()


@dataclass(frozen=True)
class RecordContext:
    """Who asked for a generation and why: stored next to each image it produced.

    ``user_words`` are the person's own words (any language), ``parent_id`` the record
    this one varies (lineage), ``status`` "rejected" for candidates a quality check
    dropped, ``quality`` a free-form report (JSON-serialisable).
    """

    user_words: str = ""
    thread_id: str = ""
    parent_id: str | None = None
    status: Status = "shown"
    quality: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {self.status!r}")


# ``recorder(images, paths, context) -> ids``: what ImageRunner calls after saving PNGs.
Recorder = Callable[[list[GeneratedImage], list[Path], RecordContext], list[str]]


@dataclass
class LedgerRecord:
    """One generated image as the ledger knows it."""

    id: str
    path: Path  # absolute
    request: ImageRequest  # exact: concrete seed, batch_size 1, LoRAs, model override
    seed: int
    width: int
    height: int
    model_name: str = ""
    model_hash: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    infotext: str = ""  # the exact A1111 text written into the PNG
    user_words: str = ""
    thread_id: str = ""
    parent_id: str | None = None
    created_at: str = ""  # ISO 8601, UTC
    duration_s: float = 0.0
    status: Status = "shown"
    rating: int | None = None
    favourite: bool = False
    quality: dict[str, Any] | None = None
    missing: bool = False  # the PNG is gone from disk
    origin: Origin = "generated"

    @property
    def tag(self) -> str:
        """How people see the id: ``#a1b2c3d4``."""
        return f"#{self.id}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (the ``json`` export format)."""
        return {
            "id": self.id,
            "path": str(self.path),
            "request": self.request.model_dump(mode="json"),
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "model_name": self.model_name,
            "model_hash": self.model_hash,
            "extra": dict(self.extra),
            "infotext": self.infotext,
            "user_words": self.user_words,
            "thread_id": self.thread_id,
            "parent_id": self.parent_id,
            "created_at": self.created_at,
            "duration_s": self.duration_s,
            "status": self.status,
            "rating": self.rating,
            "favourite": self.favourite,
            "quality": self.quality,
            "missing": self.missing,
            "origin": self.origin,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)


@dataclass(frozen=True)
class SearchHit:
    """A record and how well it matched (cosine similarity, or word overlap in text mode)."""

    record: LedgerRecord
    score: float


@dataclass(frozen=True)
class SearchResult:
    """Hits, best first. ``mode`` says how they were found; ``note`` why it wasn't semantic."""

    hits: list[SearchHit]
    mode: Literal["semantic", "text", "recent"]
    note: Message | None = None

    def __iter__(self) -> Any:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    @property
    def records(self) -> list[LedgerRecord]:
        return [h.record for h in self.hits]


@dataclass
class ReconcileReport:
    """What a :meth:`Ledger.reconcile` pass found and fixed."""

    added: list[str] = field(default_factory=list)  # ids recorded from unrecorded PNGs
    missing: list[str] = field(default_factory=list)  # records whose PNG is gone
    restored: list[str] = field(default_factory=list)  # PNG back after being missing
    skipped: list[Path] = field(default_factory=list)  # PNGs without readable parameters
    stale_temp_files: list[Path] = field(default_factory=list)  # removed half-writes
    indexed: int = 0  # records (re)added to the search index
    unindexed: int = 0  # index entries removed because no record has them
    note: str = ""  # why the index could not be repaired, if it couldn't

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added from PNGs",
            f"{len(self.missing)} with missing files",
            f"{len(self.restored)} files back",
            f"{len(self.skipped)} PNGs skipped (no parameters)",
            f"{len(self.stale_temp_files)} stale temp files removed",
            f"index: +{self.indexed} / -{self.unindexed}",
        ]
        text = "Reconciled: " + ", ".join(parts) + "."
        return f"{text} {self.note}" if self.note else text
