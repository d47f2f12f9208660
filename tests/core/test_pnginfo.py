"""A1111 infotext writing/reading, and recognising ComfyUI and Fooocus PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.request import ImageRequest, LoraRef
from tools.engines.fake import FakeEngine
from tools.infotext.png import comfyui_summary, read_png_metadata, read_png_parameters, save_png
from tools.infotext.text import (
    MAX_INFOTEXT_CHARS,
    VERSION_TAG,
    format_infotext,
    infotext_to_request,
    parse_infotext,
    reuse_infotext,
    reuse_notes,
)

# Verbatim from the docstring of parse_generation_parameters in A1111's
# modules/infotext_utils.py (an old-style infotext: short model hash, no Version).
A1111_DOCSTRING_SAMPLE = """\
girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate
Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured, poorly drawn face, mutation, mutated, (extra_limb), (ugly), (poorly drawn hands), messy drawing
Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b
"""  # noqa: E501

# The v1.9+ grammar as A1111 writes it (create_infotext): a multi-line prompt with LoRA
# tags, a multi-line negative, the split "Schedule type", and quoted values holding
# commas and colons (Lora hashes, TI hashes, Hires prompt).
A1111_V19_SAMPLE = """\
masterpiece, best quality, 1girl, silver hair, kimono,
cherry blossoms, night, lanterns <lora:add_detail:0.6> <lora:kimono_style_v2:0.8>
Negative prompt: (worst quality, low quality:1.4), watermark,
easynegative
Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3141592653, \
Size: 512x768, Model hash: 6ce0161689, Model: dreamshaper_8, Denoising strength: 0.45, \
Clip skip: 2, Hires prompt: "detailed face, sharp eyes", Hires upscale: 2, \
Hires upscaler: R-ESRGAN 4x+, Lora hashes: "add_detail: 7c6bad76eb54, kimono_style_v2: \
1b0a3e5c9f21", TI hashes: "easynegative: c74b4e810b03", Version: v1.10.1"""

# Same grammar as a real SDXL infotext, with a sampler Egaki does not have.
A1111_DPM3M_SAMPLE = (
    "magical fantasy forest <lora:CosmicStyleSDXL:1.2>\n"
    "Negative prompt: ugly, bad anatomy\n"
    "Steps: 30, Sampler: DPM++ 3M, Schedule type: Karras, CFG scale: 6.5, Seed: 2921279476, "
    "Size: 888x1184, Model hash: 501235c0cd, Model: jibMixRealisticXL_v180SkinSupreme, "
    'Lora hashes: "CosmicStyleSDXL: ccfe5cfff7", Version: v1.9.4'
)


def _gen(**overrides: object) -> GeneratedImage:
    request = ImageRequest(prompt="a cat", negative_prompt="blurry", seed=123, steps=20)
    request = request.model_copy(update=overrides)
    return GeneratedImage(
        image=Image.new("RGB", (request.width, request.height)),
        request=request,
        seed=request.seed or 0,
        model_name="dreamshaper_8",
        model_hash="abcdef1234",
    )


# --- writing -------------------------------------------------------------------------------


def test_format_matches_a1111_layout_exactly() -> None:
    text = format_infotext(_gen(cfg_scale=7.0))
    assert text == (
        "a cat\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 123, "
        f"Size: 512x512, Model hash: abcdef1234, Model: dreamshaper_8, Version: {VERSION_TAG}"
    )


def test_format_omits_empty_negative_and_can_write_legacy_sampler() -> None:
    text = format_infotext(_gen(negative_prompt="", sampler="Euler a"), legacy_sampler=True)
    assert "Negative prompt" not in text
    assert text.splitlines()[1].startswith("Steps: 20, Sampler: Euler a, CFG scale: 7,")


def test_format_quotes_values_with_commas_and_colons_and_adds_lora_tags() -> None:
    gen = _gen(loras=[LoraRef(name="add_detail", weight=0.5)])
    gen.model_name = "my, model: v2"
    gen.extra["Lora hashes"] = "add_detail: 7c6bad76eb54"
    text = format_infotext(gen)
    assert text.startswith("a cat <lora:add_detail:0.5>\n")
    assert 'Model: "my, model: v2"' in text
    assert 'Lora hashes: "add_detail: 7c6bad76eb54"' in text
    assert text.endswith(f"Version: {VERSION_TAG}")


def test_version_tag_is_not_a_parseable_webui_version() -> None:
    # A1111's backcompat would treat "0.1.0" as an ancient webui; ours must not parse.
    assert " " in VERSION_TAG and not VERSION_TAG[0].isdigit()


def test_save_png_is_atomic_and_embeds_parameters(tmp_path: Path) -> None:
    gen = _gen()
    path = save_png(gen, tmp_path / "out" / "a.png")
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]  # no temp file left
    with Image.open(path) as im:
        assert im.info["parameters"] == format_infotext(gen)


# --- reading --------------------------------------------------------------------------------


def test_round_trip_through_a_png_gives_back_the_request(tmp_path: Path) -> None:
    init = tmp_path / "init.png"
    Image.new("RGB", (320, 256)).save(init)
    request = ImageRequest(
        prompt="a lighthouse,\nstormy sea",
        negative_prompt="fog,\nlow quality",
        width=320,
        height=256,
        steps=33,
        cfg_scale=5.5,
        sampler="DPM++ SDE Karras",
        seed=4_000_000_000,
        init_image=init,
        strength=0.35,
        loras=[LoraRef(name="film grain", weight=0.7)],
    )
    gen = FakeEngine().generate(request)[0]
    path = save_png(gen, tmp_path / "x.png")

    text = read_png_parameters(path)
    assert text is not None
    back = infotext_to_request(parse_infotext(text))
    assert back.prompt == "a lighthouse,\nstormy sea <lora:film grain:0.7>"
    assert back.negative_prompt == "fog,\nlow quality"
    assert (back.width, back.height, back.steps) == (320, 256, 33)
    assert (back.cfg_scale, back.sampler, back.seed) == (5.5, "DPM++ SDE Karras", 4_000_000_000)
    assert back.strength == 0.35


def test_parses_the_a1111_docstring_sample() -> None:
    parsed = parse_infotext(A1111_DOCSTRING_SAMPLE)
    assert parsed.prompt.startswith("girl with an artist's beret")
    assert parsed.negative_prompt.endswith("messy drawing")
    assert parsed.params["Model hash"] == "45dee52b"
    req = infotext_to_request(parsed)
    assert (req.steps, req.sampler, req.cfg_scale, req.seed) == (20, "Euler a", 7.0, 965400086)
    assert (req.width, req.height) == (512, 512)


def test_parses_v19_infotext_with_schedule_type_quotes_and_lora_hashes() -> None:
    parsed = parse_infotext(A1111_V19_SAMPLE)
    assert parsed.prompt == (
        "masterpiece, best quality, 1girl, silver hair, kimono,\n"
        "cherry blossoms, night, lanterns <lora:add_detail:0.6> <lora:kimono_style_v2:0.8>"
    )
    assert parsed.negative_prompt == "(worst quality, low quality:1.4), watermark,\neasynegative"
    assert parsed.params["Hires prompt"] == "detailed face, sharp eyes"
    assert parsed.params["Hires upscaler"] == "R-ESRGAN 4x+"
    assert parsed.lora_hashes == {"add_detail": "7c6bad76eb54", "kimono_style_v2": "1b0a3e5c9f21"}
    assert parsed.params["Version"] == "v1.10.1"

    req = infotext_to_request(parsed)
    assert req.sampler == "DPM++ 2M Karras"  # Sampler + Schedule type folded
    assert (req.width, req.height, req.steps, req.cfg_scale) == (512, 768, 28, 6.5)
    assert req.seed == 3141592653 and req.strength == 0.75  # 0.45 is the hires pass's
    assert req.hires is not None and (req.hires.scale, req.hires.denoising) == (2, 0.45)
    assert req.hires.upscaler == "R-ESRGAN 4x+"
    assert "<lora:kimono_style_v2:0.8>" in req.prompt and req.loras == []
    assert req.model is None
    assert infotext_to_request(parsed, with_model=True).model == "dreamshaper_8"


def test_schedule_type_automatic_and_legacy_combined_names() -> None:
    auto = parse_infotext("a\nSteps: 5, Sampler: Euler a, Schedule type: Automatic, Seed: 1")
    assert infotext_to_request(auto).sampler == "Euler a"
    old = parse_infotext("a\nSteps: 5, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1")
    assert infotext_to_request(old).sampler == "DPM++ 2M Karras"
    both = parse_infotext("a\nSteps: 5, Sampler: DPM++ 2M Karras, Schedule type: Karras, Seed: 1")
    assert infotext_to_request(both).sampler == "DPM++ 2M Karras"


def test_missing_negative_and_prompt_only_text() -> None:
    parsed = parse_infotext("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5")
    assert parsed.negative_prompt == ""
    assert infotext_to_request(parsed).negative_prompt == ""

    prompt_only = parse_infotext("just a prompt, with commas")
    assert not prompt_only.has_settings
    assert infotext_to_request(prompt_only).prompt == "just a prompt, with commas"


def test_unsupported_sampler_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest, match=r"DPM\+\+ 3M \(Karras\)"):
        infotext_to_request(parse_infotext(A1111_DPM3M_SAMPLE))


@pytest.mark.parametrize(
    "text",
    ["", "   \n  ", "\x00\x01\x02binary", "x" * (MAX_INFOTEXT_CHARS + 1)],
)
def test_garbage_text_raises_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_infotext(text)


@pytest.mark.parametrize(
    ("settings", "hint"),
    [
        ("Steps: many, Sampler: Euler, Seed: 1", "not a number"),
        ("Steps: 20, Sampler: Euler, Size: big", "WIDTHxHEIGHT"),
        ("Steps: 500, Sampler: Euler, Seed: 1", "steps"),
        ("Steps: 20, Sampler: Euler, Size: 40x512", "greater than or equal to 64"),
        ("Steps: 20, Sampler: Euler, Clip skip: 13", "clip_skip"),
    ],
)
def test_bad_values_teach_instead_of_crashing(settings: str, hint: str) -> None:
    with pytest.raises(InvalidRequest, match=hint):
        infotext_to_request(parse_infotext(f"a cat\n{settings}"))


def test_size_not_a_multiple_of_8_is_snapped_to_the_nearest_and_said() -> None:
    reuse = reuse_infotext(parse_infotext("a cat\nSteps: 20, Sampler: Euler, Size: 540x961"))
    assert (reuse.request.width, reuse.request.height) == (536, 960)  # a half goes down
    assert reuse.snapped == ((540, 961), (536, 960))
    (note,) = reuse_notes(reuse, "en")
    assert "540x961" in note and "536x960" in note
    assert "536x960" in reuse_notes(reuse, "ja")[0]
    fine = reuse_infotext(parse_infotext("a cat\nSteps: 20, Sampler: Euler, Size: 512x768"))
    assert fine.snapped is None and reuse_notes(fine, "en") == []


def test_clip_skip_is_reused_written_back_and_one_when_absent() -> None:
    parsed = parse_infotext(A1111_V19_SAMPLE)
    assert infotext_to_request(parsed).clip_skip == 2
    assert infotext_to_request(parse_infotext(A1111_DOCSTRING_SAMPLE)).clip_skip == 1
    two = _gen(clip_skip=2)
    assert "Clip skip: 2" in format_infotext(two)
    assert "Clip skip" not in format_infotext(_gen(clip_skip=1))
    assert infotext_to_request(parse_infotext(format_infotext(two))).clip_skip == 2


def test_settings_egaki_ignores_are_listed_with_syntax_it_reads_as_words() -> None:
    reuse = reuse_infotext(parse_infotext(A1111_V19_SAMPLE))
    assert reuse.ignored == ["Model", "Hires prompt"]  # hires fix itself is honoured
    assert reuse_infotext(parse_infotext(A1111_V19_SAMPLE), with_model=True).ignored == [
        "Hires prompt"]
    assert reuse.unsupported == []  # weights, LoRA tags and embeddings are all honoured
    text = ("a [cat:dog:0.5] AND a fox\nNegative prompt: [ugly|bad]\n"
            "Steps: 20, Sampler: Euler, Emphasis: No norm, ENSD: 31337, Size: 512x512")
    odd = reuse_infotext(parse_infotext(text))
    assert odd.ignored == ["Emphasis", "ENSD"]
    assert [u.text for u in odd.unsupported] == ["[cat:dog:0.5]", "AND", "[ugly|bad]"]
    ignored, syntax = reuse_notes(odd, "en")
    assert "Emphasis, ENSD" in ignored and "[cat:dog:0.5], AND, [ugly|bad]" in syntax
    assert "Emphasis: Original" not in text and reuse_infotext(parse_infotext(
        "a\nSteps: 2, Sampler: Euler, Emphasis: Original")).ignored == []


def test_unreadable_and_plain_files_give_none(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png at all")
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    assert read_png_metadata(junk) is None
    assert read_png_metadata(plain) is None
    assert read_png_parameters(plain) is None


def _png_with(tmp_path: Path, **chunks: str) -> Path:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    path = tmp_path / "meta.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def test_recognises_comfyui_prompt_and_workflow_chunks(tmp_path: Path) -> None:
    graph = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 8566257,
                "steps": 20,
                "cfg": 8,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1,
                "positive": ["6", 0],
                "negative": ["7", 0],
                "model": ["4", 0],
                "latent_image": ["5", 0],
            },
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a man", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad hands", "clip": ["4", 1]}},
    }
    workflow = {"last_node_id": 9, "nodes": [{"id": 3, "type": "KSampler"}], "links": []}
    path = _png_with(tmp_path, prompt=json.dumps(graph), workflow=json.dumps(workflow))

    meta = read_png_metadata(path)
    assert meta is not None and meta.source == "comfyui"
    assert meta.data is not None and meta.data["workflow"]["last_node_id"] == 9
    summary = comfyui_summary(meta.data["prompt"])
    assert summary["positive"] == "a man" and summary["negative"] == "bad hands"
    assert summary["seed"] == 8566257
    assert read_png_parameters(path) is None  # not A1111 text


def test_recognises_fooocus_json_parameters(tmp_path: Path) -> None:
    data = {
        "prompt": "a fox",
        "negative_prompt": "",
        "resolution": "(1024, 1024)",
        "guidance_scale": 4,
        "sampler": "dpmpp_2m_sde_gpu",
        "seed": "123",
        "version": "Fooocus v2.5.5",
    }
    path = _png_with(tmp_path, parameters=json.dumps(data), fooocus_scheme="fooocus")
    meta = read_png_metadata(path)
    assert meta is not None and meta.source == "fooocus"
    assert meta.data == data and meta.parsed is None
    assert read_png_parameters(path) is None


def test_fooocus_in_a1111_scheme_is_parsed_as_text(tmp_path: Path) -> None:
    path = _png_with(tmp_path, parameters=A1111_DOCSTRING_SAMPLE, fooocus_scheme="a1111")
    meta = read_png_metadata(path)
    assert meta is not None and meta.source == "fooocus" and meta.parsed is not None
    assert read_png_parameters(path) == A1111_DOCSTRING_SAMPLE


def test_a1111_png_from_a_pil_image_object() -> None:
    im = Image.new("RGB", (8, 8))
    im.info["parameters"] = A1111_V19_SAMPLE
    meta = read_png_metadata(im)
    assert meta is not None and meta.source == "a1111"
    assert meta.parsed is not None and meta.parsed.size == (512, 768)


def test_dynamic_prompt_braces_are_not_mistaken_for_json(tmp_path: Path) -> None:
    text = "{red|blue} car\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1"
    meta = read_png_metadata(_png_with(tmp_path, parameters=text))
    assert meta is not None and meta.source == "a1111"
    assert meta.parsed is not None and meta.parsed.prompt == "{red|blue} car"
