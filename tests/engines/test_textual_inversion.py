"""Textual-inversion embeddings from an A1111-style folder, on tiny pipelines."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.support.prompt_fixtures import render
from tools.engines.diffusers.prompts.a1111 import tokenize_prompt
from tools.engines.diffusers.prompts.encoding import encode, encode_prompts, encoder_slots
from tools.engines.diffusers.prompts.textual_inversion import (
    CLIP_G,
    CLIP_L,
    SINGLE,
    EmbeddingError,
    EmbeddingRegistry,
    load_vectors,
    scan_embeddings,
)

pytestmark = pytest.mark.slow

WIDTH = 32  # the tiny text encoders' width


def vectors(n: int, seed: int, width: int = WIDTH) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) * 3


def a1111_pt(path: Path, vec: torch.Tensor) -> Path:
    """What A1111's training writes (``string_to_param``, name, step, checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vec},
                "name": "ignored-the-stem-wins", "step": 3000,
                "sd_checkpoint": "abc", "sd_checkpoint_name": "model"}, path)
    return path


def safetensors_file(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "embeddings"
    a1111_pt(root / "sub" / "zqstyle.pt", vectors(3, 1))
    safetensors_file(root / "zqneg.safetensors", {"emb_params": vectors(2, 2)})
    safetensors_file(root / "xl" / "zqxl.safetensors",
                     {CLIP_L: vectors(2, 3), CLIP_G: vectors(2, 4)})
    (root / "empty.pt").write_bytes(b"")
    (root / "notes.txt").write_text("not an embedding")
    return root


# --- files -------------------------------------------------------------------------------


def test_scan_is_recursive_and_skips_others(folder):
    assert sorted(scan_embeddings(folder)) == ["zqneg", "zqstyle", "zqxl"]
    assert scan_embeddings(folder / "missing") == {}
    assert scan_embeddings(None) == {}


def test_first_of_two_same_names_wins(folder):
    a1111_pt(folder / "zz" / "zqneg.pt", vectors(1, 9))
    assert scan_embeddings(folder)["zqneg"] == folder / "zqneg.safetensors"


def test_formats(folder, tmp_path):
    assert load_vectors(folder / "sub" / "zqstyle.pt")[SINGLE].shape == (3, WIDTH)
    assert torch.equal(load_vectors(folder / "zqneg.safetensors")[SINGLE], vectors(2, 2))
    pair = load_vectors(folder / "xl" / "zqxl.safetensors")
    assert set(pair) == {CLIP_L, CLIP_G}
    torch.save({"<concept>": vectors(1, 5)[0]}, tmp_path / "learned_embeds.bin")  # diffusers
    assert load_vectors(tmp_path / "learned_embeds.bin")[SINGLE].shape == (1, WIDTH)
    safetensors_file(tmp_path / "lora.safetensors", {"a.weight": vectors(1, 1),
                                                     "b.weight": vectors(1, 1)})
    with pytest.raises(EmbeddingError, match="not a textual-inversion embedding"):
        load_vectors(tmp_path / "lora.safetensors")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(EmbeddingError, match="can't be read"):
        load_vectors(tmp_path / "bad.pt")


# --- SD1.5 -------------------------------------------------------------------------------


def test_embedding_name_loads_its_vectors(fresh_sd15, folder):
    pipe, registry = fresh_sd15, EmbeddingRegistry(folder)
    plain = encode_prompts(pipe, "a photo, zqstyle", "")
    with_ti = encode_prompts(pipe, "a photo, zqstyle", "", embeddings=registry)
    ids = pipe.tokenizer.convert_tokens_to_ids([f"<ti:zqstyle:{i}>" for i in range(3)])
    weight = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(weight[ids], vectors(3, 1))
    assert not torch.equal(plain["prompt_embeds"], with_ti["prompt_embeds"])
    (known,) = registry.prepare(encoder_slots(pipe), ["zqstyle"])
    chunk = tokenize_prompt("a photo, (zqstyle:1.2)", pipe.tokenizer, embeddings=known).chunks[0]
    assert [t for t in chunk.tokens if t in ids] == ids
    assert {w for t, w in zip(chunk.tokens, chunk.weights, strict=True) if t in ids} == {1.2}
    assert not np.array_equal(render(pipe, **plain), render(pipe, **with_ti))


def test_only_used_names_load_and_loading_is_idempotent(fresh_sd15, folder):
    pipe, registry = fresh_sd15, EmbeddingRegistry(folder)
    encode_prompts(pipe, "zqneg", "", embeddings=registry)
    vocab = pipe.tokenizer.get_vocab()
    assert "<ti:zqneg:1>" in vocab and "<ti:zqstyle:0>" not in vocab
    size, rows = len(pipe.tokenizer), pipe.text_encoder.get_input_embeddings().weight.shape[0]
    first = encode_prompts(pipe, "zqneg", "", embeddings=registry)
    again = encode_prompts(pipe, "zqneg", "", embeddings=EmbeddingRegistry(folder))
    assert len(pipe.tokenizer) == size
    assert pipe.text_encoder.get_input_embeddings().weight.shape[0] == rows
    assert torch.equal(first["prompt_embeds"], again["prompt_embeds"])


def test_unknown_names_stay_plain_words(fresh_sd15, folder):
    pipe = fresh_sd15
    prompt = "zqunknown, zqstyles"  # not a file; a longer word than a known name
    assert torch.equal(encode_prompts(pipe, prompt, "x")["prompt_embeds"],
                       encode_prompts(pipe, prompt, "x", embeddings=EmbeddingRegistry(folder))[
                           "prompt_embeds"])
    assert not any(t.startswith("<ti:") for t in pipe.tokenizer.get_vocab())


def test_negative_prompt_embeddings_load(fresh_sd15, folder):
    pipe = fresh_sd15
    plain = encode_prompts(pipe, "a cat", "zqneg")
    ti = encode_prompts(pipe, "a cat", "zqneg", embeddings=EmbeddingRegistry(folder))
    assert torch.equal(plain["prompt_embeds"], ti["prompt_embeds"])
    assert not torch.equal(plain["negative_prompt_embeds"], ti["negative_prompt_embeds"])


def test_changed_file_rewrites_rows(fresh_sd15, folder):
    pipe, registry = fresh_sd15, EmbeddingRegistry(folder)
    encode_prompts(pipe, "zqneg", "", embeddings=registry)
    safetensors_file(folder / "zqneg.safetensors", {"emb_params": vectors(2, 7)})
    encode_prompts(pipe, "zqneg", "", embeddings=registry)
    ids = pipe.tokenizer.convert_tokens_to_ids(["<ti:zqneg:0>", "<ti:zqneg:1>"])
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[ids], vectors(2, 7))


def test_sdxl_file_on_sd15_is_skipped(fresh_sd15, folder, caplog):
    pipe = fresh_sd15
    plain = encode_prompts(pipe, "zqxl", "")
    ti = encode_prompts(pipe, "zqxl", "", embeddings=EmbeddingRegistry(folder))
    assert torch.equal(plain["prompt_embeds"], ti["prompt_embeds"])
    assert "zqxl skipped" in caplog.text


def test_growing_the_embedding_matrix(fresh_sd15, tmp_path):
    pipe = fresh_sd15
    rows = pipe.text_encoder.get_input_embeddings().weight.shape[0]
    safetensors_file(tmp_path / "e" / "zqbig.safetensors", {"emb_params": vectors(12, 8)})
    encode_prompts(pipe, "zqbig", "", embeddings=EmbeddingRegistry(tmp_path / "e"))
    weight = pipe.text_encoder.get_input_embeddings().weight
    ids = pipe.tokenizer.convert_tokens_to_ids([f"<ti:zqbig:{i}>" for i in range(12)])
    assert max(ids) >= rows and weight.shape[0] == max(ids) + 1
    assert torch.equal(weight[ids], vectors(12, 8))
    assert pipe.text_encoder.config.vocab_size == weight.shape[0]


def test_hashes(folder):
    expected = hashlib.sha256((folder / "zqneg.safetensors").read_bytes()).hexdigest()[:12]
    assert EmbeddingRegistry(folder).hashes(["zqneg", "nope"]) == f"zqneg: {expected}"


# --- SDXL --------------------------------------------------------------------------------


def test_sdxl_pair_loads_into_both_encoders(fresh_sdxl, folder):
    pipe = fresh_sdxl
    plain = encode_prompts(pipe, "a photo, zqxl", "")
    ti = encode_prompts(pipe, "a photo, zqxl", "", embeddings=EmbeddingRegistry(folder))
    for tok, te, key in ((pipe.tokenizer, pipe.text_encoder, CLIP_L),
                         (pipe.tokenizer_2, pipe.text_encoder_2, CLIP_G)):
        ids = tok.convert_tokens_to_ids(["<ti:zqxl:0>", "<ti:zqxl:1>"])
        expected = load_vectors(folder / "xl" / "zqxl.safetensors")[key]
        assert torch.equal(te.get_input_embeddings().weight[ids], expected)
    assert not torch.equal(plain["prompt_embeds"], ti["prompt_embeds"])
    assert not torch.equal(plain["pooled_prompt_embeds"], ti["pooled_prompt_embeds"])
    assert not np.array_equal(render(pipe, **plain), render(pipe, **ti))


def test_sd15_file_on_sdxl_is_skipped(fresh_sdxl, folder):
    pipe = fresh_sdxl
    plain = encode_prompts(pipe, "zqneg", "")
    ti = encode_prompts(pipe, "zqneg", "", embeddings=EmbeddingRegistry(folder))
    assert torch.equal(plain["prompt_embeds"], ti["prompt_embeds"])


def test_pooled_reads_eos_even_with_legacy_eos_config(fresh_sdxl, folder):
    """Configs with ``eos_token_id == 2`` (SDXL's own) make transformers pool at the largest
    id — a registered embedding's — instead of EOS; the pooled embedding must not move."""
    pipe = fresh_sdxl
    registry = EmbeddingRegistry(folder)
    reference = encode_prompts(pipe, "zqxl", "", embeddings=registry)["pooled_prompt_embeds"]
    text_model = pipe.text_encoder_2.text_model
    text_model.eos_token_id = 2
    legacy = encode_prompts(pipe, "zqxl", "", embeddings=registry)["pooled_prompt_embeds"]
    assert torch.equal(legacy, reference)
    (_, known) = registry.prepare(encoder_slots(pipe), ["zqxl"])
    ids = torch.tensor([tokenize_prompt("zqxl", pipe.tokenizer_2, embeddings=known)
                        .chunks[0].tokens])
    with torch.no_grad():  # the premise: transformers' own pooling would be wrong here
        assert not torch.allclose(pipe.text_encoder_2(ids).text_embeds, reference)


# --- what the engine reports and counts -----------------------------------------------------


def test_encode_reports_the_names_it_used(fresh_sd15, folder):
    registry = EmbeddingRegistry(folder)
    enc = encode(fresh_sd15, "a photo, zqstyle", "zqneg, zqunknown", embeddings=registry)
    assert enc.embeddings == ["zqstyle", "zqneg"]
    assert registry.hashes(enc.embeddings).startswith("zqstyle: ")


def test_counting_counts_vectors_and_registers_nothing(fresh_sd15, folder):
    from tools.engines.diffusers.prompts.a1111 import count_tokens

    tok = fresh_sd15.tokenizer
    text = "a photo, zqstyle"
    known = EmbeddingRegistry(folder).counting_tokens(tok, [text])
    spelled = len(tok("zqstyle", add_special_tokens=False)["input_ids"])
    assert count_tokens(text, tok, embeddings=known).total == (
        count_tokens(text, tok).total - spelled + 3)  # its 3 vectors, not its letters
    assert not any(t.startswith("<ti:") for t in tok.get_vocab())
