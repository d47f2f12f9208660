"""A1111's 75-token chunks and token count, without torch.

A port of ``FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line``
(``modules/sd_hijack_clip.py``) on top of the attention parser in
:mod:`tools.infotext.prompt_syntax`:

* :func:`tokenize_prompt` — 75-token chunks, each later wrapped in BOS/EOS to 77 ids,
  with A1111's comma backtrack (a chunk that fills up moves the text after its last comma
  into the next chunk when that comma is within ``comma_backtrack`` tokens of the end),
  ``BREAK`` starting a new chunk, and textual-inversion embeddings kept whole inside one
  chunk;
* :func:`count_tokens` — A1111's token counter (``12/75``, ``80/150``) per chunk;
* :func:`used_embedding_names` — which known embedding names a prompt actually uses.

Tokenizers are duck-typed: anything with ``__call__(texts, add_special_tokens=False,
truncation=False) -> {"input_ids": [[...]]}``, ``bos_token_id``, ``eos_token_id`` and
``get_vocab()`` (a ``transformers`` CLIP tokenizer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.infotext.prompt_syntax import is_break, parse_prompt_attention

CHUNK_LENGTH = 75  # tokens of text per chunk; BOS + 75 + EOS = CLIP's 77 positions
COMMA_BACKTRACK = 20  # A1111 ``comma_padding_backtrack`` default



@dataclass(frozen=True)
class EmbeddingTokens:
    """A textual-inversion embedding as the chunker sees it.

    ``match_ids``: the name as the tokenizer spells it (A1111 matches names token by
    token); ``vector_ids``: the ids whose rows of the text encoder's token embedding hold
    the embedding's vectors (one per vector).
    """

    name: str
    match_ids: tuple[int, ...]
    vector_ids: tuple[int, ...]


@dataclass
class PromptChunk:
    """77 token ids (BOS + 75 + EOS) and one weight per id; ``length`` counts the real
    tokens (no BOS, EOS or padding)."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    length: int = 0


@dataclass(frozen=True)
class TokenizedPrompt:
    """Chunks of a prompt and A1111's token count (what its counter shows)."""

    chunks: list[PromptChunk]
    token_count: int


class _Chunker:
    """A1111's ``tokenize_line`` loop, one token (or embedding) at a time."""

    def __init__(self, bos: int, eos: int, comma: int | None, backtrack: int,
                 chunk_length: int) -> None:
        self.bos, self.eos, self.comma = bos, eos, comma
        self.backtrack, self.size = backtrack, chunk_length
        self.chunks: list[PromptChunk] = []
        self.chunk = PromptChunk()
        self.token_count = 0
        self.last_comma = -1

    def next_chunk(self, is_last: bool = False) -> None:
        c = self.chunk
        self.token_count += len(c.tokens) if is_last else self.size
        c.length = len(c.tokens)
        pad = self.size - len(c.tokens)
        c.tokens = [self.bos, *c.tokens, *[self.eos] * max(pad, 0), self.eos]
        c.weights = [1.0, *c.weights, *[1.0] * max(pad, 0), 1.0]
        self.last_comma = -1
        self.chunks.append(c)
        self.chunk = PromptChunk()

    def _backtrack_to_comma(self) -> None:
        c = self.chunk
        cut = self.last_comma + 1
        tokens, weights = c.tokens[cut:], c.weights[cut:]
        c.tokens, c.weights = c.tokens[:cut], c.weights[:cut]
        self.next_chunk()
        self.chunk.tokens, self.chunk.weights = tokens, weights

    def before_token(self, token: int) -> None:
        c = self.chunk
        if token == self.comma:
            self.last_comma = len(c.tokens)
        elif (self.backtrack != 0 and len(c.tokens) == self.size and self.last_comma != -1
              and len(c.tokens) - self.last_comma <= self.backtrack):
            self._backtrack_to_comma()
        if len(self.chunk.tokens) == self.size:
            self.next_chunk()

    def add(self, tokens: list[int], weight: float,
            lookup: Mapping[int, list[EmbeddingTokens]]) -> None:
        position = 0
        while position < len(tokens):
            self.before_token(tokens[position])
            emb = _embedding_at(tokens, position, lookup)
            if emb is None:
                self.chunk.tokens.append(tokens[position])
                self.chunk.weights.append(weight)
                position += 1
                continue
            if len(self.chunk.tokens) + len(emb.vector_ids) > self.size:
                self.next_chunk()
            self.chunk.tokens += list(emb.vector_ids)
            self.chunk.weights += [weight] * len(emb.vector_ids)
            position += len(emb.match_ids)

    def finish(self) -> TokenizedPrompt:
        if self.chunk.tokens or not self.chunks:
            self.next_chunk(is_last=True)
        return TokenizedPrompt(self.chunks, self.token_count)


def _embedding_at(tokens: Sequence[int], position: int,
                  lookup: Mapping[int, list[EmbeddingTokens]]) -> EmbeddingTokens | None:
    for emb in lookup.get(tokens[position], ()):
        if tuple(tokens[position:position + len(emb.match_ids)]) == emb.match_ids:
            return emb
    return None


def _lookup(embeddings: Iterable[EmbeddingTokens]) -> dict[int, list[EmbeddingTokens]]:
    """First token id → embeddings starting with it, longest name first (as A1111)."""
    table: dict[int, list[EmbeddingTokens]] = {}
    for emb in embeddings:
        if emb.match_ids:
            table.setdefault(emb.match_ids[0], []).append(emb)
    for entries in table.values():
        entries.sort(key=lambda e: len(e.match_ids), reverse=True)
    return table


def comma_token_id(tokenizer: Any) -> int | None:
    """The id of ``,</w>`` (a comma ending a word), as A1111 looks it up."""
    return tokenizer.get_vocab().get(",</w>")


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, truncation=False,
                                           add_special_tokens=False)["input_ids"]]


def tokenize_prompt(
    prompt: str,
    tokenizer: Any,
    *,
    embeddings: Iterable[EmbeddingTokens] = (),
    comma_backtrack: int = COMMA_BACKTRACK,
    chunk_length: int = CHUNK_LENGTH,
) -> TokenizedPrompt:
    """A1111 chunks of ``prompt``: each chunk is ``chunk_length + 2`` ids with weights."""
    parsed = parse_prompt_attention(prompt)
    ids = _token_ids(tokenizer, [text for text, _ in parsed])
    chunker = _Chunker(tokenizer.bos_token_id, tokenizer.eos_token_id,
                       comma_token_id(tokenizer), comma_backtrack, chunk_length)
    lookup = _lookup(embeddings)
    for tokens, piece in zip(ids, parsed, strict=True):
        if is_break(piece):
            chunker.next_chunk()
        else:
            chunker.add(tokens, piece[1], lookup)
    return chunker.finish()


def empty_chunk(tokenizer: Any, chunk_length: int = CHUNK_LENGTH) -> PromptChunk:
    """The chunk of an empty prompt (BOS, then EOS to the end), used for padding."""
    tokens = [tokenizer.bos_token_id] + [tokenizer.eos_token_id] * (chunk_length + 1)
    return PromptChunk(tokens=tokens, weights=[1.0] * (chunk_length + 2), length=0)


# --- counting and embedding names -------------------------------------------------------


@dataclass(frozen=True)
class TokenCount:
    """What a prompt card shows: real tokens per chunk, A1111's total and its limit
    (``total/limit``, e.g. ``80/150``)."""

    per_chunk: list[int]
    total: int
    limit: int

    def __str__(self) -> str:
        return f"{self.total}/{self.limit}"


def count_tokens(prompt: str, tokenizer: Any, *,
                 embeddings: Iterable[EmbeddingTokens] = (),
                 comma_backtrack: int = COMMA_BACKTRACK) -> TokenCount:
    """Tokens per chunk and A1111's ``token_count / target`` for ``prompt``."""
    tok = tokenize_prompt(prompt, tokenizer, embeddings=embeddings,
                          comma_backtrack=comma_backtrack)
    limit = math.ceil(max(tok.token_count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH
    return TokenCount([c.length for c in tok.chunks], tok.token_count, limit)


def name_token_ids(tokenizer: Any, names: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Each name as the tokenizer spells it (how A1111 recognises embedding names)."""
    names = list(names)
    if not names:
        return {}
    return {n: tuple(ids) for n, ids in zip(names, _token_ids(tokenizer, names), strict=True)}


def used_embedding_names(prompt: str, names: Iterable[str], tokenizer: Any = None
                         ) -> list[str]:
    """Names from ``names`` that ``prompt`` uses, in order of first use.

    With a tokenizer the match is A1111's (token ids, so case-insensitive and only whole
    BPE words: ``easynegative,`` matches, ``easynegatives`` does not). Without one a
    case-insensitive whole-word match on the parsed text stands in (for a prompt card
    before any model is loaded).
    """
    parsed = [p for p in parse_prompt_attention(prompt) if not is_break(p)]
    names = list(dict.fromkeys(names))
    if tokenizer is None:
        return _used_by_text(" ".join(t for t, _ in parsed), names)
    found: dict[str, int] = {}
    table = _lookup(EmbeddingTokens(n, ids, ()) for n, ids in
                    name_token_ids(tokenizer, names).items())
    offset = 0
    for tokens in _token_ids(tokenizer, [t for t, _ in parsed]):
        for position in range(len(tokens)):
            emb = _embedding_at(tokens, position, table)
            if emb is not None:
                found.setdefault(emb.name, offset + position)
        offset += len(tokens)
    return sorted(found, key=found.__getitem__)


def _used_by_text(text: str, names: list[str]) -> list[str]:
    hits = []
    for name in names:
        m = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)
        if m:
            hits.append((m.start(), name))
    return [name for _, name in sorted(hits)]
