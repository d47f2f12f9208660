"""Encoding A1111 prompts for tiny SD1.5 / SDXL pipelines, straight on the pipelines.

Pictures are 64×64 after 2 steps, compared as uint8 pixels. The same behaviours through
the engine (and on OpenVINO) are in ``test_a1111_prompts_engine.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting
from PIL import Image

from tests.support.prompt_fixtures import render, words
from tools.core.errors import InvalidRequest
from tools.engines.diffusers.prompts.a1111 import tokenize_prompt
from tools.engines.diffusers.prompts.encoding import apply_emphasis, encode, encode_prompts

pytestmark = pytest.mark.slow

LONG = ", ".join(f"{w} {i}" for i, w in enumerate(["cat", "dog", "red", "sky"] * 12))
KEYS_XL = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
           "negative_pooled_prompt_embeds"]


def first_chunk_text(pipe, prompt: str) -> str:
    """The text of ``prompt``'s first chunk (at most 75 tokens; the byte-level tokenizer
    decodes exactly)."""
    chunk = tokenize_prompt(prompt, pipe.tokenizer).chunks[0]
    return pipe.tokenizer.decode(chunk.tokens[1:1 + chunk.length]).strip()


def diffusers_encode(pipe, prompt, negative, **kw):
    return pipe.encode_prompt(prompt=prompt, device="cpu", num_images_per_prompt=1,
                              do_classifier_free_guidance=True, negative_prompt=negative, **kw)


# --- identical to diffusers for plain prompts -------------------------------------------


def test_sd15_plain_prompt_is_bit_identical_to_diffusers(sd15):
    ref = diffusers_encode(sd15, "a photo of a cat, best quality", "blurry")
    ours = encode_prompts(sd15, "a photo of a cat, best quality", "blurry")
    assert torch.equal(ours["prompt_embeds"], ref[0])
    assert torch.equal(ours["negative_prompt_embeds"], ref[1])
    empty = encode_prompts(sd15, "a cat", "")
    assert torch.equal(empty["negative_prompt_embeds"], diffusers_encode(sd15, "a cat", None)[1])


@pytest.mark.parametrize("negative", ["blurry, low quality", ""])
def test_sdxl_plain_prompt_is_bit_identical_to_diffusers(sdxl, negative):
    ref = diffusers_encode(sdxl, "a photo of a cat", negative or None)
    ours = encode_prompts(sdxl, "a photo of a cat", negative)
    for key, tensor in zip(KEYS_XL, ref, strict=True):
        assert torch.equal(ours[key], tensor), key
    if not negative:  # SDXL's force_zeros_for_empty_prompt, as A1111
        assert not ours["negative_prompt_embeds"].any()


def test_plain_prompt_gives_the_same_picture(sd15):
    before = render(sd15, prompt="a cat on a sofa", negative_prompt="blurry")
    after = render(sd15, **encode_prompts(sd15, "a cat on a sofa", "blurry"))
    assert np.array_equal(before, after)


# --- long prompts ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sd15", "sdxl"])
def test_200_token_prompt_changes_the_picture(request, name):
    pipe = request.getfixturevalue(name)
    assert len(pipe.tokenizer(LONG, add_special_tokens=False)["input_ids"]) >= 200
    short = first_chunk_text(pipe, LONG)
    long_kw = encode_prompts(pipe, LONG, "blurry")
    short_kw = encode_prompts(pipe, short, "blurry")
    chunks = len(tokenize_prompt(LONG, pipe.tokenizer).chunks)
    assert chunks >= 3
    assert long_kw["prompt_embeds"].shape[1] == 77 * chunks
    assert long_kw["negative_prompt_embeds"].shape == long_kw["prompt_embeds"].shape
    assert torch.allclose(long_kw["prompt_embeds"][:, :77], short_kw["prompt_embeds"], atol=1e-5)
    assert not np.array_equal(render(pipe, **long_kw), render(pipe, **short_kw))


def test_each_chunk_is_encoded_on_its_own(sd15):
    a, b = words(75, "a"), words(10, "b")
    both = encode_prompts(sd15, f"{a} {b}", "")["prompt_embeds"]
    # equal up to float rounding: the chunks run as one batch
    assert torch.allclose(both[:, :77], encode_prompts(sd15, a, "")["prompt_embeds"], atol=1e-5)
    assert torch.allclose(both[:, 77:], encode_prompts(sd15, b, "")["prompt_embeds"], atol=1e-5)


def test_negative_pads_with_empty_chunks(sd15):
    kw = encode_prompts(sd15, "short", LONG)
    empty = encode_prompts(sd15, "", "")["prompt_embeds"]
    k = kw["negative_prompt_embeds"].shape[1] // 77
    assert kw["prompt_embeds"].shape == kw["negative_prompt_embeds"].shape
    for i in range(1, k):
        assert torch.allclose(kw["prompt_embeds"][:, 77 * i:77 * (i + 1)], empty, atol=1e-5)


def test_sdxl_pooled_comes_from_the_first_chunk(sdxl):
    long_kw = encode_prompts(sdxl, LONG, "blurry")
    short_kw = encode_prompts(sdxl, first_chunk_text(sdxl, LONG), "blurry")
    assert torch.allclose(long_kw["pooled_prompt_embeds"], short_kw["pooled_prompt_embeds"],
                          atol=1e-5)
    zero = encode_prompts(sdxl, LONG, "")
    assert zero["negative_prompt_embeds"].shape == zero["prompt_embeds"].shape
    assert not zero["negative_pooled_prompt_embeds"].any()


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
@pytest.mark.parametrize("name", ["sd15", "sdxl"])
def test_img2img_and_inpaint_take_long_prompts(request, name, mode):
    base = request.getfixturevalue(name)
    auto = AutoPipelineForImage2Image if mode == "img2img" else AutoPipelineForInpainting
    pipe = auto.from_pipe(base)  # as Egaki builds them: shared modules
    pipe.set_progress_bar_config(disable=True)
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    extra = {"image": init, "strength": 0.9, "num_inference_steps": 3}
    if mode == "inpaint":
        mask = np.zeros((64, 64), np.uint8)
        mask[16:48, 16:48] = 255
        extra.update(mask_image=Image.fromarray(mask), width=64, height=64)
    long_px = render(pipe, **encode_prompts(pipe, LONG, "blurry"), **extra)
    short_px = render(pipe, **encode_prompts(pipe, first_chunk_text(pipe, LONG), "blurry"), **extra)
    assert long_px.shape == (1, 64, 64, 3)
    assert not np.array_equal(long_px, short_px)


def test_batch_is_left_to_the_pipeline(sdxl):
    px = render(sdxl, num_images_per_prompt=2, **encode_prompts(sdxl, LONG, "blurry"))
    assert px.shape == (2, 64, 64, 3)


# --- emphasis ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sd15", "sdxl"])
def test_weight_one_is_identical_and_other_weights_differ(request, name):
    pipe = request.getfixturevalue(name)
    plain = render(pipe, **encode_prompts(pipe, "a cat on a sofa", "blurry"))
    same = render(pipe, **encode_prompts(pipe, "a (cat:1.0) on a sofa", "blurry"))
    strong = render(pipe, **encode_prompts(pipe, "a (cat:1.5) on a sofa", "blurry"))
    assert np.array_equal(plain, same)
    assert not np.array_equal(plain, strong)


def test_emphasis_scales_the_output_then_restores_the_mean(sd15):
    plain = encode_prompts(sd15, "a cat", "")["prompt_embeds"]
    weighted = encode_prompts(sd15, "a (cat:1.5)", "")["prompt_embeds"]
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    w = torch.tensor([tokenize_prompt("a (cat:1.5)", sd15.tokenizer).chunks[0].weights])
    assert w.max() == 1.5
    manual = plain * w.unsqueeze(-1)
    manual *= plain.mean() / manual.mean()
    assert torch.allclose(weighted, manual, atol=1e-6)


def test_apply_emphasis_is_per_chunk():
    z = torch.randn(2, 77, 8)
    w = torch.ones(2, 77)
    w[1, 5] = 2.0
    out = apply_emphasis(z, w)
    assert torch.equal(out[0], z[0])
    assert torch.allclose(out[1].mean(), z[1].mean(), atol=1e-6)


# --- BREAK -------------------------------------------------------------------------------


def test_break_makes_one_chunk_per_part(sd15):
    kw = encode_prompts(sd15, "a cat BREAK a dog", "")
    assert kw["prompt_embeds"].shape[1] == 154
    assert torch.allclose(kw["prompt_embeds"][:, 77:],
                          encode_prompts(sd15, "a dog", "")["prompt_embeds"], atol=1e-5)
    joined = render(sd15, **encode_prompts(sd15, "a cat a dog", ""))
    assert not np.array_equal(render(sd15, **kw), joined)


# --- clip skip ---------------------------------------------------------------------------


def test_clip_skip_2_changes_the_sd15_picture(sd15):
    one = encode_prompts(sd15, "a cat on a sofa", "blurry")
    two = encode_prompts(sd15, "a cat on a sofa", "blurry", clip_skip=2)
    assert not np.array_equal(render(sd15, **one), render(sd15, **two))
    te = sd15.text_encoder
    ids = torch.tensor([tokenize_prompt("a cat on a sofa", sd15.tokenizer).chunks[0].tokens])
    expected = te.final_layer_norm(te(ids, output_hidden_states=True).hidden_states[-2])
    assert torch.equal(two["prompt_embeds"], expected)


def test_sdxl_clip_skip_follows_a1111(sdxl):
    default = encode_prompts(sdxl, "a cat", "blurry")
    assert torch.equal(encode_prompts(sdxl, "a cat", "blurry", clip_skip=2)["prompt_embeds"],
                       default["prompt_embeds"])  # A1111 ignores it on SDXL by default
    l_skip = encode_prompts(sdxl, "a cat", "blurry", clip_skip=1, sdxl_clip_l_skip=True)
    assert not torch.equal(l_skip["prompt_embeds"][..., :32], default["prompt_embeds"][..., :32])
    assert torch.equal(l_skip["prompt_embeds"][..., 32:], default["prompt_embeds"][..., 32:])


def test_clip_skip_out_of_range_is_explained(sd15, sdxl):
    with pytest.raises(InvalidRequest, match="use 1 to 2"):
        encode_prompts(sd15, "a cat", "", clip_skip=3)
    encode_prompts(sdxl, "a cat", "", clip_skip=3)  # ignored on SDXL, so never refused


def test_without_negative(sd15):
    assert set(encode_prompts(sd15, "a cat", "x", with_negative=False)) == {"prompt_embeds"}


def test_padded_tells_when_a1111_needs_its_pad_option(sd15, sdxl):
    assert not encode(sd15, "a cat", "blurry").padded
    assert encode(sd15, LONG, "blurry").padded
    assert encode(sdxl, "a cat", LONG).padded
    assert not encode(sdxl, LONG, "").padded  # zeros: same as A1111's separate pass
    assert not encode(sd15, LONG, "blurry", with_negative=False).padded
    assert encode(sd15, LONG, "").chunks == len(tokenize_prompt(LONG, sd15.tokenizer).chunks)
