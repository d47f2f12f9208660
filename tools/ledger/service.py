"""The ledger: every generated image recorded, searchable by meaning, reproducible by id.

``Ledger(data_dir, embedder=...)`` (or :meth:`Ledger.from_settings`) keeps

* the truth in SQLite (:mod:`tools.ledger.store`): request, seed, model + hash, LoRAs,
  the user's words, thread, lineage, rating, status, quality report;
* a disposable semantic index in Chroma (:mod:`tools.ledger.index`), fed by an
  :class:`~tools.ledger.embeddings.Embedder`.

Crash safety follows the write order: the PNG is saved atomically first, a record is
committed only for a file that exists, and the index is updated last (in a background
thread, so showing an image never waits for an embedding). :meth:`Ledger.reconcile`
mends whatever a crash left: PNGs without a record are recorded from their infotext,
records whose file is gone are flagged, and the index is re-synced from SQLite.

Search degrades instead of failing: without embeddings (Ollama down, model missing) or
without the index, :meth:`Ledger.search` matches words in prompts and the user's own
text, and says so in ``SearchResult.note``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from tools.core.engine import GeneratedImage
from tools.core.errors import EgakiError, InvalidRequest
from tools.core.messages import Message
from tools.core.request import ImageRequest
from tools.core.settings import Settings
from tools.infotext.text import format_infotext
from tools.ledger.embeddings import Embedder, make_embedder
from tools.ledger.files import generated_row, reconcile_files, search_terms
from tools.ledger.index import ChromaIndex, IndexUnavailable
from tools.ledger.store import LedgerStore
from tools.ledger.types import (
    STATUSES,
    ExportFormat,
    LedgerError,
    LedgerRecord,
    ReconcileReport,
    RecordContext,
    SearchHit,
    SearchResult,
    Status,
    UnknownRecord,
    normalize_id,
)

log = logging.getLogger(__name__)

EMBED_BATCH = 64


def document_text(record: LedgerRecord) -> str:
    """What gets embedded: the person's words and the prompt they led to."""
    return "\n".join(t for t in (record.user_words.strip(), record.request.prompt) if t)


class Ledger:
    """Record, search, rate and reproduce generated images. Safe to share across threads.

    ``background_index=False`` indexes inside :meth:`record_batch` (scripts, the CLI);
    the app keeps the default so a slow embedding model never delays an image.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        embedder: Embedder,
        images_dir: Path | None = None,
        chroma_url: str = "",
        background_index: bool = True,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.images_dir = Path(images_dir) if images_dir else self.data_dir / "images"
        self.embedder = embedder
        self.store = LedgerStore(self.data_dir / "ledger.sqlite3", root=self.data_dir)
        self.index = ChromaIndex(
            path=None if chroma_url else self.data_dir / "chroma",
            url=chroma_url,
            embedder_name=embedder.name,
        )
        self._pending: set[str] = set()  # recorded but not yet in the index
        self._lock = threading.Lock()
        self._futures: list[Future[bool]] = []
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="egaki-ledger-index")
            if background_index
            else None
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, embedder: Embedder | None = None, **kwargs: Any
    ) -> Ledger:
        return cls(
            settings.data_dir,
            embedder=embedder or make_embedder(settings),
            images_dir=settings.images_dir,
            chroma_url=settings.chroma_url,
            **kwargs,
        )

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish pending index work and stop the worker thread."""
        self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # --- recording ---------------------------------------------------------------------

    def record_batch(
        self,
        images: list[GeneratedImage],
        paths: list[Path],
        context: RecordContext | None = None,
    ) -> list[str]:
        """Record saved images (one transaction) and return their ids, in order.

        This is the :data:`~tools.ledger.types.Recorder` the image runner calls after the
        PNGs are written. Raises :class:`LedgerError` if a file does not exist: a record
        must never point at an image that was not saved.
        """
        if len(images) != len(paths):
            raise ValueError(f"{len(images)} images but {len(paths)} paths")
        context = context or RecordContext()
        if context.parent_id is not None:
            context = replace(context, parent_id=normalize_id(context.parent_id))
        rows = []
        for gen, path in zip(images, paths, strict=True):
            if not Path(path).is_file():
                raise LedgerError.of("ledger_not_saved", path=path)
            rows.append(generated_row(gen, Path(path), context, self.store.path_key(path)))
        ids = self.store.insert(rows, upgrade=True)
        self._index_later(ids)
        return ids

    def record(self, image: GeneratedImage, path: Path,
               context: RecordContext | None = None) -> str:
        """Record one saved image; see :meth:`record_batch`."""
        return self.record_batch([image], [path], context)[0]

    # --- reading -----------------------------------------------------------------------

    def get(self, record_id: str) -> LedgerRecord:
        """The record for ``#id`` / ``id``; raises :class:`UnknownRecord`."""
        key = normalize_id(record_id)
        record = self.store.get(key)
        if record is None:
            raise UnknownRecord(key)
        return record

    def recent(
        self,
        n: int = 20,
        *,
        thread_id: str | None = None,
        favourites_only: bool = False,
        include_rejected: bool = False,
    ) -> list[LedgerRecord]:
        """Newest first."""
        where, params = _visible(include_rejected, include_missing=True)
        if thread_id is not None:
            where, params = f"{where} AND thread_id = ?", [*params, thread_id]
        if favourites_only:
            where += " AND favourite = 1"
        return self.store.recent(n, where=where, params=params)

    def count(self) -> int:
        return self.store.count()

    def search(self, text: str, k: int = 10, *, include_rejected: bool = False) -> SearchResult:
        """Records most like ``text`` (semantic), or word matches when that's unavailable.

        Records whose file is gone and (by default) rejected candidates are left out.
        """
        if k < 1:
            raise InvalidRequest.of("ledger_k")
        text = text.strip()
        if not text:
            return SearchResult([SearchHit(r, 1.0) for r in self.recent(k)], "recent")
        try:
            self.flush()
            self._index_pending()
            pairs = self.index.query(self.embedder.embed_query(text), max(4 * k, k + 20))
        except EgakiError as err:
            return self._text_search(text, k, include_rejected, err)
        found = self.store.get_many([i for i, _ in pairs])
        hits = [
            SearchHit(found[i], score)
            for i, score in pairs
            if i in found and not found[i].missing
            and (include_rejected or found[i].status == "shown")
        ]
        return SearchResult(hits[:k], "semantic")

    def _text_search(self, text: str, k: int, include_rejected: bool,
                     err: EgakiError) -> SearchResult:
        where, params = _visible(include_rejected, include_missing=False)
        rows = self.store.text_search(search_terms(text), k, where=where, params=params)
        return SearchResult(
            [SearchHit(r, s) for r, s in rows],
            "text",
            note=Message.of("search_words_only", reason=err),
        )

    # --- changing a record -------------------------------------------------------------

    def rate(self, record_id: str, stars: int) -> LedgerRecord:
        """1-5 stars; 0 clears the rating."""
        if not isinstance(stars, int) or not 0 <= stars <= 5:
            raise InvalidRequest.of("ledger_rating", stars=stars)
        key = normalize_id(record_id)
        self.store.update(key, rating=stars or None)
        return self.get(key)

    def favourite(self, record_id: str, on: bool = True) -> LedgerRecord:
        key = normalize_id(record_id)
        self.store.update(key, favourite=int(on))
        return self.get(key)

    def set_status(self, record_id: str, status: Status) -> LedgerRecord:
        if status not in STATUSES:
            raise InvalidRequest.of("ledger_status", statuses=STATUSES)
        key = normalize_id(record_id)
        self.store.update(key, status=status)
        return self.get(key)

    def set_quality(self, record_id: str, report: Mapping[str, Any] | None) -> LedgerRecord:
        key = normalize_id(record_id)
        text = json.dumps(dict(report), ensure_ascii=False) if report is not None else None
        self.store.update(key, quality_json=text)
        return self.get(key)

    # --- export and reproduction ---------------------------------------------------------

    def export(self, record_id: str, fmt: ExportFormat = "a1111") -> str:
        """The A1111 ``parameters`` text exactly as in the PNG, or the record as JSON."""
        record = self.get(record_id)
        if fmt == "json":
            return record.to_json()
        if fmt != "a1111":
            raise InvalidRequest.of("ledger_export_format", fmt=fmt)
        return record.infotext or _infotext_of(record)

    def export_many(self, ids: Iterable[str] | None = None, fmt: ExportFormat = "a1111") -> str:
        """Several records: a JSON array, or infotexts under ``### #id path`` headers."""
        records = ([self.get(i) for i in ids] if ids is not None
                   else list(reversed(self.recent(self.count() or 1, include_rejected=True))))
        if fmt == "json":
            return json.dumps([r.to_dict() for r in records], ensure_ascii=False, indent=2)
        return "\n\n".join(f"### {r.tag} {r.path}\n{self.export(r.id, fmt)}" for r in records)

    def reproduce_request(self, record_id: str) -> ImageRequest:
        """The exact request (seed, sampler, steps, CFG, size, LoRAs, model override)."""
        return self.get(record_id).request.model_copy(deep=True)

    def again_new_seed(self, record_id: str) -> ImageRequest:
        """The same request with a fresh random seed."""
        original = self.get(record_id).request
        while True:
            fresh = original.model_copy(update={"seed": None}).with_seed()
            if fresh.seed != original.seed:
                return fresh

    def lineage(self, record_id: str, **overrides: Any) -> RecordContext:
        """A context for a variation of ``record_id``: same thread and words, it as parent."""
        record = self.get(record_id)
        base = RecordContext(user_words=record.user_words, thread_id=record.thread_id,
                             parent_id=record.id)
        return replace(base, **overrides)

    # --- index upkeep ------------------------------------------------------------------

    def _index_later(self, ids: list[str]) -> None:
        if self._executor is None:
            self._index_ids(ids)
            return
        future = self._executor.submit(self._index_ids, ids)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]

    def flush(self, timeout: float | None = None) -> None:
        """Wait for background indexing started so far."""
        with self._lock:
            futures = list(self._futures)
        wait(futures, timeout)

    def _index_ids(self, ids: list[str]) -> bool:
        """Embed and index ``ids``; on failure remember them for the next attempt."""
        try:
            for start in range(0, len(ids), EMBED_BATCH):
                chunk = ids[start : start + EMBED_BATCH]
                found = self.store.get_many(chunk)
                keys = [i for i in chunk if i in found]
                vectors = self.embedder.embed_documents([document_text(found[i]) for i in keys])
                self._add(keys, vectors)
        except EgakiError as err:
            log.info("ledger: indexing %d record(s) postponed: %s", len(ids), err.message)
            with self._lock:
                self._pending.update(ids)
            return False
        with self._lock:
            self._pending.difference_update(ids)
        return True

    def _add(self, ids: list[str], vectors: list[list[float]]) -> None:
        try:
            self.index.add(ids, vectors)
        except IndexUnavailable as err:
            if not self.index.is_dimension_error(err):
                raise
            # Same model name, new vector size (a re-pulled model): start the index over.
            log.warning("ledger: embedding size changed; rebuilding the search index")
            self.index.reset()
            self.index.add(ids, vectors)
            with self._lock:
                self._pending.update(i for i in self.store.ids() if i not in ids)

    def _index_pending(self) -> None:
        with self._lock:
            pending = sorted(self._pending)
        if pending:
            self._index_ids(pending)

    def sync_index(self) -> tuple[int, int, str]:
        """Make the index hold exactly the records: returns (added, removed, note)."""
        self.flush()
        try:
            have = self.index.ids()
            records = self.store.ids()
            extra = sorted(have - set(records))
            self.index.delete(extra)
        except IndexUnavailable as err:
            return 0, 0, err.message
        todo = [i for i in records if i not in have]
        if todo and not self._index_ids(todo):
            return 0, len(extra), "Search index not updated (embeddings unavailable)."
        return len(todo), len(extra), ""

    def reconcile(self, *, stale_temp_after_s: float = 3600.0) -> ReconcileReport:
        """Record unrecorded PNGs, flag missing files, repair the index (run at start-up)."""
        report = reconcile_files(self.store, self.images_dir,
                                 stale_temp_after_s=stale_temp_after_s)
        report.indexed, report.unindexed, report.note = self.sync_index()
        return report


def _visible(include_rejected: bool, *, include_missing: bool) -> tuple[str, list[Any]]:
    clauses = ["1"]
    if not include_rejected:
        clauses.append("status = 'shown'")
    if not include_missing:
        clauses.append("missing = 0")
    return " AND ".join(clauses), []


def _infotext_of(record: LedgerRecord) -> str:
    # Only the size of the image is read; a 1-bit stand-in avoids opening the file.
    gen = GeneratedImage(
        image=Image.new("1", (record.width, record.height)),
        request=record.request,
        seed=record.seed,
        model_name=record.model_name,
        model_hash=record.model_hash,
        extra=dict(record.extra),
    )
    return format_infotext(gen)
