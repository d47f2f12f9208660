"""Text embeddings for ledger search, behind a small protocol.

``Embedder.embed_documents(texts)`` and ``embed_query(text)`` return plain float lists;
``name`` identifies the vector space (different names never share a search index).

* :class:`OllamaEmbedder` asks Ollama's ``/api/embed`` (``settings.embed_model``). A
  missing model raises :class:`~tools.core.errors.ModelMissing` (pulling is the UI's job),
  a server that is down raises :class:`~tools.core.errors.OllamaUnavailable`.
* :class:`HashEmbedder` hashes words and character trigrams: deterministic, instant and
  offline. It only knows word overlap, not meaning; tests use it, and so can people
  who never run Ollama (``EGAKI_EMBEDDER=hash``).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Protocol, runtime_checkable

import httpx
import ollama

from tools.core.errors import (
    CapabilityMissing,
    ChatServerUnavailable,
    EgakiError,
    ModelMissing,
    OllamaUnavailable,
)
from tools.core.settings import Settings

# nomic-embed-text was trained with task prefixes and retrieves noticeably worse without.
_TASK_PREFIXES = {"nomic-embed": ("search_document: ", "search_query: ")}
_WORD = re.compile(r"\w+", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


@runtime_checkable
class Embedder(Protocol):
    """Turns text into vectors of one fixed space."""

    name: str

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


class HashEmbedder:
    """Hashed bag of words + character trigrams, L2-normalised (no model, no network)."""

    def __init__(self, dims: int = 256) -> None:
        if dims < 8:
            raise ValueError("dims must be at least 8")
        self.dims = dims
        self.name = f"hash-{dims}"

    @staticmethod
    def _features(text: str) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for word in _WORD.findall(text.lower()):
            out.append((word, 2.0))
            if _CJK.search(word):
                # Japanese has no spaces: a "word" is a whole phrase. Characters and pairs
                # let 猫 meet ソファで寝る猫.
                out += [(c, 1.0) for c in word] + [(word[i : i + 2], 1.5)
                                                   for i in range(len(word) - 1)]
            else:
                # Trigrams let "foxes" meet "fox".
                out += [(word[i : i + 3], 1.0) for i in range(max(1, len(word) - 2))]
        return out

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dims
        for feature, weight in self._features(text):
            h = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            vec[int.from_bytes(h[:4], "little") % self.dims] += weight if h[4] & 1 else -weight
        norm = math.sqrt(sum(v * v for v in vec))
        if norm == 0.0:
            vec[0], norm = 1.0, 1.0
        return [v / norm for v in vec]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def _unavailable(host: str) -> OllamaUnavailable:
    return OllamaUnavailable.of("embed_ollama_down", host=host)


def _missing(model: str) -> ModelMissing:
    return ModelMissing.of("embed_model_missing", model=model)


class OllamaEmbedder:
    """Embeddings from Ollama's ``/api/embed``; one HTTP call per batch."""

    def __init__(self, host: str, model: str, *, timeout_s: float = 60.0) -> None:
        self.host = host
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"ollama-{model.removesuffix(':latest')}"
        prefixes = next((p for k, p in _TASK_PREFIXES.items() if k in model), ("", ""))
        self._doc_prefix, self._query_prefix = prefixes

    @classmethod
    def from_settings(cls, settings: Settings) -> OllamaEmbedder:
        # Embedding a query is quick; a short timeout keeps search snappy when Ollama hangs.
        return cls(settings.ollama_host, settings.embed_model,
                   timeout_s=min(settings.ollama_timeout_s, 60.0))

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        client = ollama.Client(host=self.host, timeout=self.timeout_s)
        try:
            resp = client.embed(model=self.model, input=texts)
        except ollama.ResponseError as err:
            if err.status_code == 404:
                raise _missing(self.model) from err
            raise EgakiError.of("embed_failed", model=self.model, error=err.error) from err
        except (ConnectionError, httpx.TransportError) as err:
            raise _unavailable(self.host) from err
        vectors = [list(map(float, v)) for v in resp.embeddings]
        if len(vectors) != len(texts):
            raise EgakiError.of("embed_count", got=len(vectors), texts=len(texts))
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed([self._doc_prefix + t for t in texts])

    def embed_query(self, text: str) -> list[float]:
        return self._embed([self._query_prefix + text])[0]


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible server's ``/v1/embeddings`` (plain strings).

    A server without an embedding model (llama-server without ``--embeddings`` answers 501)
    raises :class:`CapabilityMissing`; the ledger then matches words only, as for Ollama.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str = "",
                 timeout_s: float = 60.0) -> None:
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        self.name = f"openai-{model}"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIEmbedder:
        return cls(settings.openai_base_url, settings.embed_model,
                   api_key=settings.openai_api_key,
                   timeout_s=min(settings.ollama_timeout_s, 60.0))

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        try:
            resp = httpx.post(f"{self.base_url}/embeddings", json=body,
                              headers=self._headers, timeout=self.timeout_s)
        except httpx.TransportError as err:
            raise ChatServerUnavailable.of("server_down", url=self.base_url) from err
        if resp.status_code != 200:
            raise CapabilityMissing.of("no_embeddings", url=self.base_url, model=self.model)
        data = sorted(resp.json().get("data", []), key=lambda d: d.get("index", 0))
        vectors = [[float(x) for x in d["embedding"]] for d in data]
        if len(vectors) != len(texts):
            raise CapabilityMissing.of("no_embeddings", url=self.base_url, model=self.model)
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text])[0]


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for."""
    if settings.embedder == "hash":
        return HashEmbedder()
    if settings.embedder == "openai":
        return OpenAIEmbedder.from_settings(settings)
    return OllamaEmbedder.from_settings(settings)
