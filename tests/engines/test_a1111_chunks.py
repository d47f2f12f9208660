"""A1111's 75-token chunker and token counter with the tiny byte-level tokenizer, where
``a`` is one token and ``,`` is ``,</w>`` (no model needed)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.prompt_fixtures import words
from tools.engines.diffusers.prompts.a1111 import (
    EmbeddingTokens,
    comma_token_id,
    count_tokens,
    tokenize_prompt,
    used_embedding_names,
)


@pytest.fixture(scope="module")
def tok() -> Any:
    from tests.support.tiny_pipelines import _tokenizer

    return _tokenizer()


# --- chunking --------------------------------------------------------------------------


def test_short_prompt_is_one_padded_chunk(tok):
    tp = tokenize_prompt("a cat", tok)
    (chunk,) = tp.chunks
    ids = tok("a cat", add_special_tokens=False)["input_ids"]
    assert chunk.tokens == [tok.bos_token_id, *ids] + [tok.eos_token_id] * (76 - len(ids))
    assert chunk.weights == [1.0] * 77
    assert chunk.length == len(ids) == tp.token_count


def test_chunk_matches_diffusers_tokenization(tok):
    plain = "a photo of a cat, best quality"
    diffusers = tok(plain, padding="max_length", max_length=77, truncation=True)["input_ids"]
    assert tokenize_prompt(plain, tok).chunks[0].tokens == diffusers


def test_weights_follow_tokens(tok):
    (chunk,) = tokenize_prompt("(a:1.5) b", tok).chunks
    assert chunk.weights[:4] == [1.0, 1.5, 1.0, 1.0]


@pytest.mark.parametrize(("n", "lengths", "total", "limit"), [
    (75, [75], 75, 75),
    (76, [75, 1], 76, 150),
    (200, [75, 75, 50], 200, 225),
])
def test_long_prompts_split_every_75(tok, n, lengths, total, limit):
    tp = tokenize_prompt(words(n), tok)
    assert [c.length for c in tp.chunks] == lengths
    assert all(len(c.tokens) == 77 and c.tokens[0] == tok.bos_token_id for c in tp.chunks)
    assert all(c.tokens[-1] == tok.eos_token_id for c in tp.chunks)
    count = count_tokens(words(n), tok)
    assert (count.per_chunk, count.total, count.limit) == (lengths, total, limit)
    assert str(count) == f"{total}/{limit}"


def test_break_starts_a_new_chunk(tok):
    tp = tokenize_prompt("a cat BREAK a dog", tok)
    assert len(tp.chunks) == 2
    assert tp.chunks[0].tokens == tokenize_prompt("a cat", tok).chunks[0].tokens
    assert tp.chunks[1].tokens == tokenize_prompt("a dog", tok).chunks[0].tokens
    # A1111 counts a chunk ended by BREAK as a full 75
    assert tp.token_count == 75 + len(tok("a dog", add_special_tokens=False)["input_ids"])


def test_break_first_gives_an_empty_chunk(tok):
    tp = tokenize_prompt("BREAK a", tok)
    assert [c.length for c in tp.chunks] == [0, 1]


def test_comma_backtrack_moves_text_after_the_last_comma(tok):
    prompt = words(70) + ", " + words(10, "b")  # comma is token 71; chunk fills at 75
    comma = comma_token_id(tok)
    tp = tokenize_prompt(prompt, tok)
    assert [c.length for c in tp.chunks] == [71, 10]
    assert tp.chunks[0].tokens[71] == comma  # BOS + 70 a's, then the comma ends chunk 0
    assert tp.chunks[0].tokens[72:] == [tok.eos_token_id] * 5
    assert tp.token_count == 85
    off = tokenize_prompt(prompt, tok, comma_backtrack=0)
    assert [c.length for c in off.chunks] == [75, 6]


def test_comma_too_far_back_is_ignored(tok):
    prompt = words(50) + ", " + words(30, "b")  # 25 tokens after the comma > 20
    assert [c.length for c in tokenize_prompt(prompt, tok).chunks] == [75, 6]
    assert [c.length for c in tokenize_prompt(prompt, tok, comma_backtrack=30).chunks] == [
        51, 30]


def test_embedding_stays_whole_in_one_chunk(tok):
    emb = EmbeddingTokens("zq", tuple(tok("zq", add_special_tokens=False)["input_ids"]),
                          (900, 901, 902))
    tp = tokenize_prompt(words(73) + " zq", tok, embeddings=[emb])
    assert [c.length for c in tp.chunks] == [73, 3]  # 73 + 3 > 75: moved whole
    assert tp.chunks[1].tokens[1:4] == [900, 901, 902]
    weighted = tokenize_prompt("(zq:1.2)", tok, embeddings=[emb]).chunks[0]
    assert weighted.tokens[1:4] == [900, 901, 902]
    assert weighted.weights[1:4] == [1.2] * 3


def test_embedding_matches_whole_words_only(tok):
    emb = EmbeddingTokens("zq", tuple(tok("zq", add_special_tokens=False)["input_ids"]),
                          (900,))
    tp = tokenize_prompt("zqx ZQ, zq", tok, embeddings=[emb])
    assert tp.chunks[0].tokens.count(900) == 2  # "ZQ" (lower-cased) and "zq", not "zqx"


def test_used_embedding_names(tok):
    names = ["EasyNeg", "bad-hands-5", "unused", "cat"]
    prompt = "(bad-hands-5:1.2), concatenate, easyneg BREAK x"
    assert used_embedding_names(prompt, names, tok) == ["bad-hands-5", "EasyNeg"]
    assert used_embedding_names(prompt, names) == ["bad-hands-5", "EasyNeg"]
    assert used_embedding_names("a cat", names, tok) == ["cat"]
    assert used_embedding_names("nothing here", names, tok) == []
