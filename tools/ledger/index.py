"""The ledger's search index: a Chroma collection of record ids and their embeddings.

Local by default (``chromadb.PersistentClient`` under ``data_dir/chroma``), or a Chroma
server when ``chroma_url`` is set. Embeddings are always passed in explicitly: the
collection is created with ``embedding_function=None`` so Chroma never fetches its
default model, and telemetry is off. One collection per embedder name, because vectors
from different models can't be compared.

The index is disposable: SQLite is the truth, and :meth:`ChromaIndex.ids` lets the
ledger add what is missing and drop what has no record. Writes to one index location
are serialised with a process-wide lock (sessions share it); readers don't wait.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tools.core.errors import ConfigError, EgakiError

log = logging.getLogger(__name__)

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_PAGE = 1000


class IndexUnavailable(EgakiError):
    """The search index can't be reached or used; search falls back to text matching."""


def _lock_for(location: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(location, threading.Lock())


def collection_name(embedder_name: str) -> str:
    """A valid Chroma collection name (3-512 of ``[a-zA-Z0-9._-]``, alphanumeric ends)."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", embedder_name).strip("-._")
    return f"egaki-ledger-{slug or 'default'}"[:200]


def _chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def _parse_url(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError.of("index_url", url=url)
    ssl = parts.scheme == "https"
    return parts.hostname, parts.port or (443 if ssl else 8000), ssl


class ChromaIndex:
    """Ids → embeddings in one Chroma collection. Every failure is :class:`IndexUnavailable`."""

    def __init__(self, *, path: Path | None = None, url: str = "", embedder_name: str) -> None:
        if not url and path is None:
            raise ValueError("ChromaIndex needs a path or a url")
        self.path, self.url = path, url
        self.location = url or str(Path(path or ".").resolve())
        self.name = collection_name(embedder_name)
        self._client: Any = None
        self._collection: Any = None
        self._lock = _lock_for(self.location)

    def _open(self) -> Any:
        if self._collection is not None:
            return self._collection
        from tools.core.imports import HEAVY_IMPORTS

        with HEAVY_IMPORTS:  # imported late (slow); serialized with torch/diffusers imports
            import chromadb

        if self.url:
            host, port, ssl = _parse_url(self.url)
            client = chromadb.HttpClient(host=host, port=port, ssl=ssl,
                                         settings=_chroma_settings())
        else:
            assert self.path is not None
            self.path.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(self.path), settings=_chroma_settings())
        self._client = client
        self._collection = client.get_or_create_collection(
            self.name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
        return self._collection

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self._open(), *args, **kwargs)
        except EgakiError:
            raise
        except Exception as err:
            # A third-party store behind a boundary: Chroma raises its own errors, httpx
            # errors, ValueError for refused connections... The SQLite record is already
            # safe, so any failure here only means "search by words for now".
            self._collection = None  # reopen next time (a server may come back)
            log.warning("ledger index %s failed at %s: %s", what, self.location, err)
            raise IndexUnavailable.of(
                "index_unavailable", location=self.location,
                error=f"{type(err).__name__}: {str(err)[:200]}",
            ) from err

    def add(self, ids: list[str], embeddings: list[list[float]]) -> None:
        if not ids:
            return

        def upsert(col: Any) -> None:
            col.upsert(ids=ids, embeddings=embeddings)

        with self._lock:
            self._call("upsert", upsert)

    def delete(self, ids: list[str]) -> None:
        if not ids:
            return
        with self._lock:
            self._call("delete", lambda col: col.delete(ids=ids))

    def reset(self) -> None:
        """Drop the collection (e.g. the embedding model changed its vector size)."""
        with self._lock:
            self._call("reset", lambda _col: self._client.delete_collection(self.name))
            self._collection = None

    def ids(self) -> set[str]:
        def page(col: Any) -> set[str]:
            out: set[str] = set()
            offset = 0
            while True:
                got = col.get(include=[], limit=_PAGE, offset=offset)["ids"]
                out.update(got)
                if len(got) < _PAGE:
                    return out
                offset += _PAGE

        return set(self._call("list", page))

    def count(self) -> int:
        return int(self._call("count", lambda col: col.count()))

    def query(self, embedding: list[float], n: int) -> list[tuple[str, float]]:
        """The ``n`` nearest ids with cosine similarity (1 = same direction)."""

        def run(col: Any) -> list[tuple[str, float]]:
            total = col.count()
            if total == 0:
                return []
            got = col.query(query_embeddings=[embedding], n_results=min(n, total),
                            include=["distances"])
            return [(i, 1.0 - float(d)) for i, d in zip(got["ids"][0], got["distances"][0],
                                                          strict=True)]

        return list(self._call("query", run))

    def is_dimension_error(self, err: IndexUnavailable) -> bool:
        return "dimension" in str(err.__cause__ or "").lower()
