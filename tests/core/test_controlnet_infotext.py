"""ControlNet units in the A1111 infotext: written as the extension writes them, read back."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from tools.core.engine import GeneratedImage
from tools.core.request import ControlUnit, ImageRequest
from tools.infotext.controlnet import ControlSettings, parse_controlnet, parse_unit
from tools.infotext.text import format_infotext, parse_infotext, reuse_infotext, reuse_notes

A1111_LINE = (
    'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, '
    'ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, '
    'Resize Mode: Crop and Resize, Low Vram: False, Processor Res: 512, Threshold A: 100, '
    'Threshold B: 200, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, '
    'Control Mode: Balanced", ControlNet 1: "Module: openpose_full, Model: '
    'control_v11p_sd15_openpose [cab727d4], Weight: 0.55, Guidance Start: 0.1, '
    'Guidance End: 0.75", Version: v1.10.1'
)


def gen(*units: ControlUnit, extra: dict[str, str] | None = None) -> GeneratedImage:
    req = ImageRequest(prompt="a dancer", seed=5, controls=list(units))
    return GeneratedImage(image=Image.new("RGB", (512, 512)), request=req, seed=5,
                          extra=extra or {})


def test_a1111_controlnet_entries_are_read() -> None:
    parsed = parse_infotext("a dancer\n" + A1111_LINE)
    assert parse_controlnet(parsed.params) == [
        ControlSettings("canny", "control_v11p_sd15_canny", "d14c016b", 1.0, 0.0, 1.0),
        ControlSettings("openpose_full", "control_v11p_sd15_openpose", "cab727d4", 0.55, 0.1,
                        0.75),
    ]


def test_written_units_round_trip(tmp_path: Path) -> None:
    units = [ControlUnit(image=tmp_path / "a.png", module="canny", model="my_canny"),
             ControlUnit(image=tmp_path / "b.png", module="depth_anything_v2", weight=0.4,
                         guidance_start=0.2, guidance_end=0.9)]
    text = format_infotext(gen(*units))
    assert 'ControlNet 0: "Module: canny, Model: my_canny, Weight: 1, ' in text
    back = parse_controlnet(parse_infotext(text).params)
    assert [(u.module, u.model, u.weight, u.guidance_start, u.guidance_end) for u in back] == [
        ("canny", "my_canny", 1.0, 0.0, 1.0), ("depth_anything_v2", "", 0.4, 0.2, 0.9)]


def test_engine_label_with_hash_wins_over_the_request(tmp_path: Path) -> None:
    unit = ControlUnit(image=tmp_path / "a.png", module="canny")
    label = "Module: canny, Model: control_v11p_sd15_canny [0123abcd], Weight: 1"
    text = format_infotext(gen(unit, extra={"ControlNet 0": label}))
    assert parse_unit(parse_infotext(text).params["ControlNet 0"]) == ControlSettings(
        "canny", "control_v11p_sd15_canny", "0123abcd")


def test_reuse_tells_about_controlnet_instead_of_ignoring_it() -> None:
    reuse = reuse_infotext(parse_infotext("a dancer\n" + A1111_LINE))
    assert not any(k.startswith("ControlNet") for k in reuse.ignored)
    notes = " ".join(reuse_notes(reuse, "en"))
    assert "canny → control_v11p_sd15_canny" in notes and "openpose_full" in notes


def test_guidance_start_must_be_before_end(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="guidance start"):
        ControlUnit(image=tmp_path / "a.png", guidance_start=0.8, guidance_end=0.2)


def test_an_uploaded_png_shows_its_controlnet_units(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    from tools.core.settings import Settings
    from vision.uploads import load_upload

    info = PngInfo()
    info.add_text("parameters", "a dancer\n" + A1111_LINE)
    path = tmp_path / "a1111.png"
    Image.new("RGB", (64, 64)).save(path, pnginfo=info)
    upload = load_upload(path, Settings(_env_file=None, data_dir=tmp_path / "data"))
    meta = upload.metadata
    assert meta is not None and meta.reuse is not None
    assert "ControlNet 1" in meta.params  # listed with the other settings
    assert [u.module for u in meta.reuse.controls] == ["canny", "openpose_full"]
    assert any("control_v11p_sd15_openpose" in n for n in reuse_notes(meta.reuse, "ja"))
