"""Hires fix and inpaint-area fields: validated up front, written and read back as A1111
infotext, set from the settings panel."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from assistant.studio.hires import hires_overrides, inpaint_pixels
from assistant.studio.panel import read_panel
from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.request import MAX_PIXELS, HiresFix, ImageRequest, parse_request
from tools.infotext.text import format_infotext, parse_infotext, reuse_infotext


def gen(req: ImageRequest, extra: dict[str, str] | None = None) -> GeneratedImage:
    w, h = req.output_size
    return GeneratedImage(Image.new("RGB", (w, h)), req, req.seed or 1, extra=extra or {})


def test_hires_target_is_the_scaled_size_in_multiples_of_8() -> None:
    req = ImageRequest(prompt="x", width=512, height=768, hires=HiresFix(scale=1.5))
    assert req.output_size == (768, 1152)
    assert ImageRequest(prompt="x", width=512, height=512).output_size == (512, 512)


@pytest.mark.parametrize(("data", "words"), [
    ({"width": 1024, "height": 1536, "hires": {"scale": 2}}, "at most 1.33"),
    ({"hires": {"scale": 5}}, "less than or equal to 4"),
    ({"hires": {"upscaler": "../evil"}}, "no paths"),
    ({"hires": {"denoising": 0}}, "greater than 0"),
    ({"hires": {"bogus": 1}}, "Extra inputs"),
    ({"init_image": "a.png", "hires": {}}, "text-to-image"),
    ({"inpaint_area": "half"}, "'auto', 'masked' or 'whole'"),
    ({"inpaint_padding": 999}, "less than or equal to 256"),
])
def test_bad_hires_and_inpaint_fields_are_refused_with_a_reason(
    data: dict[str, object], words: str
) -> None:
    with pytest.raises(InvalidRequest, match=words.replace("(", r"\(")):
        parse_request({"prompt": "x", **data})


def test_hires_infotext_is_written_as_a1111_writes_it_and_read_back() -> None:
    hires = HiresFix(scale=2, upscaler="4x-UltraSharp", steps=12, denoising=0.45)
    req = ImageRequest(prompt="a castle", width=512, height=512, seed=7, hires=hires)
    text = format_infotext(gen(req))
    for part in ("Size: 512x512", "Denoising strength: 0.45", "Hires upscale: 2",
                 "Hires steps: 12", "Hires upscaler: 4x-UltraSharp"):
        assert part in text
    back = reuse_infotext(parse_infotext(text))
    assert back.request.hires == hires and back.request.strength == 0.75
    assert back.request.output_size == (1024, 1024)
    assert not [k for k in back.ignored if k.startswith(("Hires", "Denoising"))]


def test_hires_steps_zero_is_left_out_and_a1111_text_without_it_reads_as_zero() -> None:
    req = ImageRequest(prompt="x", seed=1, hires=HiresFix(upscaler="Latent (nearest)"))
    text = format_infotext(gen(req))
    assert "Hires steps" not in text and 'Hires upscaler: "Latent (nearest)"' not in text
    assert reuse_infotext(parse_infotext(text)).request.hires == req.hires
    a1111 = ("x\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, "
             "Denoising strength: 0.7, Hires upscale: 1.5, Hires upscaler: Latent")
    read = reuse_infotext(parse_infotext(a1111)).request
    assert read.hires == HiresFix(scale=1.5, upscaler="Latent", steps=0, denoising=0.7)


def test_inpaint_area_fields_round_trip_as_descriptions(tmp_path: Path) -> None:
    req = ImageRequest(prompt="hat", seed=3, init_image=tmp_path / "a.png",
                       mask_image=tmp_path / "m.png", strength=0.9)
    text = format_infotext(gen(req, {"Inpaint area": "Only masked",
                                     "Masked area padding": "32"}))
    parsed = parse_infotext(text)
    assert parsed.params["Inpaint area"] == "Only masked"
    assert parsed.params["Masked area padding"] == "32"
    assert "Inpaint area" not in reuse_infotext(parsed).ignored


def test_panel_turns_hires_and_inpaint_area_into_overrides() -> None:
    choice = read_panel({"hires_scale": "2", "hires_upscaler": "4x-UltraSharp",
                         "hires_steps": "10", "hires_denoising": "0.4",
                         "inpaint_area": "whole"}, "sd15")
    assert choice.overrides["hires"] == {"scale": 2.0, "upscaler": "4x-UltraSharp",
                                         "steps": 10, "denoising": 0.4}
    assert choice.overrides["inpaint_area"] == "whole"
    assert parse_request({"prompt": "x", **choice.overrides}).hires is not None
    assert hires_overrides({"hires_scale": "off", "inpaint_area": "auto"}) == {}


def test_inpaint_budget_is_the_whole_picture_unless_whole_picture_inpainting() -> None:
    assert inpaint_pixels(786_432, None, "auto") == MAX_PIXELS
    assert inpaint_pixels(786_432, "whole", "auto") == 786_432
    assert inpaint_pixels(786_432, None, "whole") == 786_432
    assert inpaint_pixels(786_432, "masked", "whole") == MAX_PIXELS
