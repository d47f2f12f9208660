"""A1111 prompts through DiffusersEngine on tiny pipelines, on torch and on OpenVINO.

Long prompts, ``(word:1.2)`` weights, ``BREAK``, embeddings from ``EGAKI_EMBEDDINGS_DIR``
and clip skip in txt2img, img2img, inpaint and fast mode; the infotext the engine writes
reads back to the same request. OpenVINO pictures match torch's within the OpenVINO
tests' tolerance (3 levels of 255).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tools.core.engine import GeneratedImage
from tools.core.request import ImageRequest
from tools.engines.diffusers.engine import DiffusersEngine
from tools.engines.diffusers.prompts.a1111 import tokenize_prompt
from tools.infotext.text import format_infotext, infotext_to_request, parse_infotext

pytestmark = pytest.mark.slow

LONG = ", ".join(f"{w} {i}" for i, w in enumerate(["cat", "dog", "red", "sky"] * 12))
WIDTH = 32  # the tiny text encoders' width
OV_TOLERANCE = 3  # test_openvino.py's torch-vs-OpenVINO bound, in levels of 255
REQUEST_FIELDS = ("prompt", "negative_prompt", "width", "height", "steps", "cfg_scale",
                  "sampler", "seed", "clip_skip", "strength")


def req(**kw: Any) -> ImageRequest:
    base: dict[str, Any] = {"prompt": "a red cat on a sofa", "negative_prompt": "blurry",
                            "width": 64, "height": 64, "steps": 3, "seed": 5,
                            "sampler": "Euler"}
    return ImageRequest(**{**base, **kw})


def px(gen: GeneratedImage) -> np.ndarray:
    return np.asarray(gen.image, dtype=np.int16)


def vectors(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, WIDTH, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.fixture(scope="module")
def embeddings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An A1111 ``embeddings/`` folder: an SD1.5 file in a sub-folder and an SDXL pair."""
    root = tmp_path_factory.mktemp("embeddings")
    (root / "style").mkdir()
    save_file({"emb_params": vectors(3, 1).contiguous()},
              str(root / "style" / "zqstyle.safetensors"))
    save_file({"clip_l": vectors(2, 2).contiguous(), "clip_g": vectors(2, 3).contiguous()},
              str(root / "zqxl.safetensors"))
    return root


@pytest.fixture(scope="module")
def sd15_dir(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SD1.5 with a trained-looking final layer norm in its text encoder.

    An untrained norm (weight 1, bias 0) gives every position a mean of exactly 0, and
    A1111's emphasis divides by the chunk's mean: on such an encoder any weight other than
    1 is ill-conditioned (pictures saturate). Real CLIP norms have learned biases.
    """
    import shutil

    from transformers import CLIPTextModel

    path = tmp_path_factory.mktemp("a1111-model") / "tiny-sd15"
    shutil.copytree(tiny_models.sd15_dir, path)
    te = CLIPTextModel.from_pretrained(path / "text_encoder")
    norm = getattr(te, "text_model", te).final_layer_norm
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.2 * torch.randn(norm.weight.shape, generator=gen))
        norm.bias.copy_(0.5 + 0.3 * torch.randn(norm.bias.shape, generator=gen))
    te.save_pretrained(path / "text_encoder")
    return path


def make_engine(tiny_models: TinyModels, data: Path, **settings: Any) -> DiffusersEngine:
    return DiffusersEngine(make_tiny_settings(data, tiny_models, **settings), preview_every=0)


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory,
           embeddings_dir: Path, sd15_dir: Path) -> DiffusersEngine:
    return make_engine(tiny_models, tmp_path_factory.mktemp("a1111-torch"),
                       image_model=str(sd15_dir), embeddings_dir=embeddings_dir)


@pytest.fixture(scope="module")
def ov_engine(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory,
              embeddings_dir: Path, sd15_dir: Path) -> DiffusersEngine:
    return make_engine(tiny_models, tmp_path_factory.mktemp("a1111-ov"),
                       image_model=str(sd15_dir), embeddings_dir=embeddings_dir,
                       cpu_runtime="openvino", openvino_precision="f32")


def first_chunk(engine: DiffusersEngine, prompt: str) -> str:
    """The text of ``prompt``'s first 75-token chunk (the byte tokenizer decodes exactly)."""
    engine.generate(req(steps=1))  # make sure a model (and its tokenizer) is resident
    tok = engine.cache.current.pipe.tokenizer  # type: ignore[union-attr]
    chunk = tokenize_prompt(prompt, tok).chunks[0]
    return str(tok.decode(chunk.tokens[1:1 + chunk.length])).strip()


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    init = tmp_path / "init.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(init)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return init, tmp_path / "mask.png"


# --- the picture follows the prompt as A1111 reads it -------------------------------------


def test_200_token_prompt_changes_the_picture_against_its_first_75(
    engine: DiffusersEngine,
) -> None:
    short = first_chunk(engine, LONG)
    count = engine.count_tokens(LONG)
    assert count is not None and count.total >= 200 and len(count.per_chunk) >= 3
    long_img, short_img = engine.generate(req(prompt=LONG))[0], engine.generate(
        req(prompt=short))[0]
    assert not np.array_equal(px(long_img), px(short_img))
    assert long_img.request.prompt == LONG
    assert long_img.extra["Pad conds"] == "True"  # "blurry" was padded to LONG's chunks
    assert "Pad conds" not in short_img.extra


def test_weight_one_is_the_plain_word_and_other_weights_change_the_picture(
    engine: DiffusersEngine,
) -> None:
    plain = px(engine.generate(req(prompt="a red cat on a sofa"))[0])
    same = px(engine.generate(req(prompt="a red (cat:1.0) on a sofa"))[0])
    strong = px(engine.generate(req(prompt="a red (cat:1.5) on a sofa"))[0])
    nested = px(engine.generate(req(prompt="a red ((cat)) on a [sofa]"))[0])
    assert np.array_equal(plain, same)
    assert not np.array_equal(plain, strong) and not np.array_equal(plain, nested)
    assert min(strong.std(), nested.std()) > 10  # pictures, not saturated planes


def test_break_starts_a_new_chunk(engine: DiffusersEngine) -> None:
    count = engine.count_tokens("a red cat BREAK on a sofa")
    alone = engine.count_tokens("on a sofa")
    assert count is not None and alone is not None and len(count.per_chunk) == 2
    assert count.per_chunk[1] == alone.total
    assert count.total == 75 + alone.total  # A1111 counts a chunk ended by BREAK as 75
    joined = px(engine.generate(req(prompt="a red cat on a sofa"))[0])
    broken = px(engine.generate(req(prompt="a red cat BREAK on a sofa"))[0])
    assert not np.array_equal(joined, broken)


def test_embedding_name_loads_its_vectors_and_unknown_names_stay_words(
    engine: DiffusersEngine, tiny_models: TinyModels, tmp_path: Path, sd15_dir: Path
) -> None:
    without = make_engine(tiny_models, tmp_path / "no-embeddings", image_model=str(sd15_dir))
    prompt = "a photo of a red cat, zqstyle"
    got, plain = engine.generate(req(prompt=prompt))[0], without.generate(req(prompt=prompt))[0]
    assert not np.array_equal(px(got), px(plain))
    assert got.extra["TI hashes"].startswith("zqstyle: ") and "TI hashes" not in plain.extra
    tok = engine.cache.current.pipe.tokenizer  # type: ignore[union-attr]
    weight = engine.cache.current.pipe.text_encoder.get_input_embeddings().weight  # type: ignore[union-attr]
    ids = tok.convert_tokens_to_ids([f"<ti:zqstyle:{i}>" for i in range(3)])
    assert torch.equal(weight[ids], vectors(3, 1))
    unknown = "a photo of a red cat, zqunknown"
    assert np.array_equal(px(engine.generate(req(prompt=unknown))[0]),
                          px(without.generate(req(prompt=unknown))[0]))
    in_negative = engine.generate(req(negative_prompt="blurry, zqstyle"))[0]
    assert not np.array_equal(px(in_negative), px(without.generate(
        req(negative_prompt="blurry, zqstyle"))[0]))
    without.unload()


def test_clip_skip_from_request_or_settings_changes_the_picture(
    engine: DiffusersEngine, tiny_models: TinyModels, tmp_path: Path, sd15_dir: Path
) -> None:
    one, two = engine.generate(req())[0], engine.generate(req(clip_skip=2))[0]
    assert one.request.clip_skip == 1 and two.request.clip_skip == 2
    assert not np.array_equal(px(one), px(two))
    default_two = make_engine(tiny_models, tmp_path / "skip2", image_model=str(sd15_dir),
                              clip_skip=2)
    from_settings = default_two.generate(req())[0]
    assert from_settings.request.clip_skip == 2
    assert np.array_equal(px(from_settings), px(two))
    assert "Clip skip: 2" in format_infotext(from_settings)
    assert "Clip skip" not in format_infotext(one)  # A1111 writes it only above 1
    default_two.unload()


def test_img2img_inpaint_and_fast_mode_take_long_prompts(
    engine: DiffusersEngine, images: tuple[Path, Path]
) -> None:
    init, mask = images
    short = first_chunk(engine, LONG)
    for kw in ({"init_image": init, "strength": 0.9}, {"init_image": init, "mask_image": mask,
                                                      "strength": 1.0},
               {"fast": True, "steps": 2}):
        long_img = engine.generate(req(prompt=LONG, **kw))[0]
        short_img = engine.generate(req(prompt=short, **kw))[0]
        assert long_img.request.mode == short_img.request.mode
        assert not np.array_equal(px(long_img), px(short_img)), kw
    fast = engine.generate(req(prompt=LONG, fast=True, steps=2))[0]
    assert fast.request.cfg_scale <= 1 and "Pad conds" not in fast.extra  # no negative runs


def test_sdxl_long_prompts_weights_and_embedding_pairs(
    tiny_models: TinyModels, tmp_path: Path, embeddings_dir: Path
) -> None:
    xl = make_engine(tiny_models, tmp_path / "xl", image_model=str(tiny_models.sdxl_dir),
                     embeddings_dir=embeddings_dir)
    short = first_chunk(xl, LONG)
    assert not np.array_equal(px(xl.generate(req(prompt=LONG))[0]),
                              px(xl.generate(req(prompt=short))[0]))
    plain = px(xl.generate(req())[0])
    assert np.array_equal(plain, px(xl.generate(req(prompt="a red (cat:1.0) on a sofa"))[0]))
    assert not np.array_equal(plain, px(xl.generate(req(prompt="a red (cat:1.5) on a sofa"))[0]))
    assert np.array_equal(plain, px(xl.generate(req(clip_skip=2))[0]))  # A1111 ignores it on XL
    pair = xl.generate(req(prompt="a red cat on a sofa, zqxl"))[0]
    assert pair.extra["TI hashes"].startswith("zqxl: ")
    xl.unload()


# --- the infotext Egaki writes reads back to the same request -----------------------------


def test_infotext_reads_back_to_the_same_request(engine: DiffusersEngine) -> None:
    request = req(prompt="(masterpiece:1.2), a red ((cat)) BREAK on a [sofa], zqstyle",
                  negative_prompt="(worst quality, low quality:1.4), blurry, zqstyle",
                  clip_skip=2, width=72, height=64)
    gen = engine.generate(request)[0]
    text = format_infotext(gen)
    assert "Clip skip: 2" in text and "TI hashes" in text
    back = infotext_to_request(parse_infotext(text))
    assert {f: getattr(back, f) for f in REQUEST_FIELDS} == {
        f: getattr(gen.request, f) for f in REQUEST_FIELDS}
    assert np.array_equal(px(engine.generate(back)[0]), px(gen))


# --- the same on OpenVINO -----------------------------------------------------------------


def test_openvino_honours_everything_within_tolerance_on_one_compile(
    ov_engine: DiffusersEngine, engine: DiffusersEngine
) -> None:
    cases = [req(), req(prompt=LONG), req(prompt="a red (cat:1.5) on a sofa"),
             req(prompt="a red cat BREAK on a sofa"), req(prompt="a red cat on a sofa, zqstyle"),
             req(clip_skip=2), req(prompt=LONG, negative_prompt=LONG + ", zqstyle", clip_skip=2)]
    unet = None
    for r in cases:
        got, want = ov_engine.generate(r)[0], engine.generate(r)[0]
        assert np.abs(px(got) - px(want)).max() <= OV_TOLERANCE, r.prompt[:40]
        assert got.extra == want.extra
        loaded = ov_engine.cache.current
        assert loaded is not None and loaded.openvino is not None
        unet = next(x for x in loaded.openvino.routes if x.module is loaded.pipe.unet)
    assert unet is not None
    assert unet.failed is None and unet.calls >= 3 * len(cases)  # OpenVINO ran every step
    # 77 positions: the static compile; 154, 231… (LONG, BREAK): one shared dynamic one
    assert sorted(key[2][1] for key in unet.model._compiled) == [-1, 77]


def test_prompt_length_is_static_at_77_and_dynamic_beyond() -> None:
    from tools.engines.diffusers.openvino.pipeline import UNET_DYNAMIC
    from tools.engines.diffusers.openvino.runtime import compile_key

    def key(positions: int) -> Any:
        return compile_key([(2, 4, 8, 8), (), (2, positions, 32)], UNET_DYNAMIC)

    assert key(77) == ((2, 4, 8, 8), (), (2, 77, 32))
    assert key(154) == key(231) == ((2, 4, 8, 8), (), (2, -1, 32))


# --- an A1111 PNG, reused as it is ----------------------------------------------------------

A1111_PNG = (
    "(masterpiece:1.2), a red ((cat)) on a [sofa] BREAK snowy window, zqstyle\n"
    "Negative prompt: (worst quality:1.4), blurry\n"
    "Steps: 3, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 70x90, Model hash: 1234abcd, "
    "Model: someones_model, Clip skip: 2, ADetailer model: face_yolov8n.pt, "
    'TI hashes: "zqstyle: 0123456789ab", '
    "Version: v1.10.1"
)


class _UI:
    def __init__(self) -> None:
        self.shown: list[str] = []

    async def say(self, text: str) -> None:
        self.shown.append(text)

    async def show(self, text: str, actions: list[Any]) -> None:
        self.shown.append(text)

    async def show_images(self, text: str, images: list[Path], actions: list[Any]) -> None:
        self.shown.append(text)

    async def show_mask_painter(self, text: str, props: dict[str, Any]) -> None:
        raise AssertionError("not part of reusing settings")


class _NoCaptioner:
    """Reusing a PNG's settings never asks a vision model."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the captioner was asked to {name}")


async def test_a1111_png_reuse_honours_weights_break_embedding_and_clip_skip(
    engine: DiffusersEngine, tiny_models: TinyModels, tmp_path: Path, sd15_dir: Path
) -> None:
    import asyncio

    from PIL.PngImagePlugin import PngInfo

    from assistant.chat.vision_flow import REUSE, VisionFlow
    from tools.infotext.png import read_png_parameters, save_png
    from vision.uploads import load_upload

    made: list[tuple[GeneratedImage, Path]] = []

    async def runner(request: ImageRequest) -> tuple[list[GeneratedImage], list[Path]]:
        images = await asyncio.to_thread(engine.generate, request)
        paths = [save_png(g, tmp_path / f"out-{len(made)}.png") for g in images]
        made.extend(zip(images, paths, strict=True))
        return images, paths

    png = tmp_path / "a1111.png"
    info = PngInfo()
    info.add_text("parameters", A1111_PNG)
    Image.new("RGB", (70, 90), (90, 120, 200)).save(png, pnginfo=info)
    flow, ui = VisionFlow(_NoCaptioner(), runner, engine.settings), _UI()  # type: ignore[arg-type]
    upload = load_upload(png, engine.settings)
    await flow.on_upload(upload, ui)
    card = ui.shown[-1]
    assert "70x90" in card and "72x88" in card  # snapped to multiples of 8, and said so
    assert "Not reused" in card and "ADetailer model" in card and "Model" in card
    assert "plain words" not in card  # every piece of its prompt syntax is honoured

    await flow.on_action(REUSE, {"image_id": upload.id}, ui)
    (gen, path), = made
    assert gen.image.size == (72, 88) and gen.request.clip_skip == 2 and gen.seed == 42
    assert gen.extra["TI hashes"].startswith("zqstyle: ")
    written = read_png_parameters(path)
    assert written is not None and "Clip skip: 2" in written
    back = infotext_to_request(parse_infotext(written))
    assert {f: getattr(back, f) for f in REQUEST_FIELDS} == {
        f: getattr(gen.request, f) for f in REQUEST_FIELDS}

    # each of them changes the picture: leaving one out renders something else
    reused = px(gen)
    assert reused.std() > 10  # a picture, not a saturated plane
    prompt = gen.request.prompt
    for change in ({"clip_skip": 1}, {"prompt": prompt.replace(" BREAK", ",")},
                   {"prompt": "masterpiece, a red cat on a sofa BREAK snowy window, zqstyle"}):
        other = engine.generate(gen.request.model_copy(update=change))[0]
        assert not np.array_equal(reused, px(other)), change
    without = make_engine(tiny_models, tmp_path / "no-embeddings", image_model=str(sd15_dir))
    assert not np.array_equal(reused, px(without.generate(gen.request)[0]))
    without.unload()


# --- the card's token count: a tokenizer from this machine, or no count -------------------


def test_token_counts_come_from_local_files_and_never_the_network(
    tiny_models: TinyModels, tmp_path: Path, no_network: list[Any]
) -> None:
    from tools.engines.diffusers.prompts.counter import TokenCounter

    text = f"{LONG} BREAK snow <lora:tiny-style:0.5>"
    counts = {}
    for name, model in (("folder", str(tiny_models.sd15_dir)), ("hub", "egaki-test/tiny-sd"),
                        ("single file", str(tiny_models.checkpoint))):
        settings = make_tiny_settings(tmp_path / name, tiny_models, image_model=model)
        counts[name] = TokenCounter(settings).count(text)  # nothing loaded: files only
    missing = make_tiny_settings(tmp_path / "missing", tiny_models, image_model="nobody/nothing")
    assert TokenCounter(missing).count(text) is None  # no tokenizer here: no count
    assert no_network == []
    folder = counts["folder"]
    assert folder is not None and counts["hub"] == counts["single file"] == folder
    engine = make_engine(tiny_models, tmp_path / "resident")
    engine.generate(req(steps=1))
    assert engine.count_tokens(text) == folder  # the resident pipeline's own tokenizer
    assert folder.per_chunk[-1] == engine.count_tokens("snow").total  # the LoRA tag is not text
    engine.unload()
