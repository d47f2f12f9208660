"""The masked-area inpaint's image math, its A1111 passthrough, and time estimates."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.core.events import TimeEstimate
from tools.core.request import HiresFix, ImageRequest
from tools.engines.diffusers.passes.inpaint_area import (
    blend_back,
    grow_to_aspect,
    masked_box,
    wants_crop,
    working_size,
)
from tools.engines.diffusers.passes.timing import StepTimes
from tools.engines.remote.a1111 import A1111Engine


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def test_working_sizes_keep_the_native_pixels_in_multiples_of_64() -> None:
    assert working_size(1.0, 512) == (512, 512)
    assert working_size(1.5, 512) == (640, 448)
    w, h = working_size(4 / 3, 1024)
    assert w % 64 == 0 and h % 64 == 0 and 0.85 < w * h / 1024**2 < 1.15
    assert working_size(20.0, 64) == (256, 64)


def test_box_is_padded_clipped_and_grown_to_the_working_aspect() -> None:
    mask = box_mask((1600, 1200), (10, 500, 110, 580))
    assert masked_box(mask, 32) == (0, 468, 142, 612)
    assert masked_box(Image.new("L", (64, 64)), 32) is None
    grown = grow_to_aspect((0, 468, 142, 612), 1.0, (1600, 1200))
    assert grown[0] == 0 and grown[2] - grown[0] == grown[3] - grown[1] == 144
    assert grow_to_aspect((0, 0, 100, 50), 4.0, (120, 50)) == (0, 0, 120, 50)  # all there is


def test_auto_crops_only_pictures_larger_than_the_native_size() -> None:
    assert wants_crop("auto", (1080, 720), 512) and not wants_crop("auto", (512, 768), 512)
    assert wants_crop("masked", (512, 512), 512) and not wants_crop("whole", (4000, 3000), 512)


def test_blend_changes_the_mask_and_a_feathered_margin_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    mask = box_mask((400, 300), (150, 100, 250, 180))
    box = (118, 68, 282, 212)
    out = blend_back(original, Image.new("RGB", (64, 64), (255, 0, 255)), mask, box, 4)
    diff = np.abs(np.asarray(out, int) - np.asarray(original, int)).max(axis=2)
    assert (diff[100:180, 150:250] > 0).mean() > 0.95  # inside: the painted crop
    near = np.zeros_like(diff, dtype=bool)
    near[100 - 8:180 + 8, 150 - 8:250 + 8] = True  # the margin: 2 x feather
    assert diff[~near].max() == 0  # byte-identical beyond it
    assert 0 < diff[100 - 3, 200] < diff[110, 200]  # fading, not a hard edge


def png_b64(path: Path) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(path.read_text())))


def test_a1111_payload_asks_for_only_masked_with_padding_at_the_native_size(
    tmp_path: Path,
) -> None:
    Image.new("RGB", (1600, 1200)).save(tmp_path / "photo.png")
    box_mask((1600, 1200), (600, 500, 900, 580)).save(tmp_path / "mask.png")
    req = ImageRequest(prompt="hat", width=1600, height=1200, init_image=tmp_path / "photo.png",
                       mask_image=tmp_path / "mask.png", inpaint_padding=40, seed=1)
    payload = A1111Engine("http://127.0.0.1:9").build_payload(req)
    assert payload["inpaint_full_res"] is True and payload["inpaint_full_res_padding"] == 40
    assert (payload["width"], payload["height"]) == (768, 320)  # 380x160 crop, ~512² px
    whole = A1111Engine("http://127.0.0.1:9").build_payload(
        req.model_copy(update={"inpaint_area": "whole"}))
    assert whole["inpaint_full_res"] is False and whole["width"] == 1600


def test_a1111_payload_carries_the_hires_fix() -> None:
    req = ImageRequest(prompt="x", seed=1, hires=HiresFix(scale=1.5, upscaler="R-ESRGAN 4x+",
                                                          steps=8, denoising=0.4))
    payload = A1111Engine("http://127.0.0.1:9").build_payload(req)
    assert payload["enable_hr"] is True and payload["hr_scale"] == 1.5
    assert payload["hr_upscaler"] == "R-ESRGAN 4x+" and payload["hr_second_pass_steps"] == 8
    assert payload["denoising_strength"] == 0.4 and payload["width"] == 512
    assert "enable_hr" not in A1111Engine("http://x").build_payload(ImageRequest(prompt="x"))


def test_time_estimate_scales_measured_steps_and_is_announced_past_a_minute(
    tmp_path: Path,
) -> None:
    times = StepTimes(tmp_path / "step_times.json")
    assert times.estimate("cpu:openvino:sd15", 512 * 512, 25) is None
    times.record("cpu:openvino:sd15", 512 * 512, 25, 40.0)  # 1.6 s a step at 512²
    again = StepTimes(tmp_path / "step_times.json")  # persisted for the next session
    assert again.estimate("cpu:openvino:sd15", 1024 * 1024, 25) == pytest.approx(160.0)
    heard: list[object] = []
    big = ImageRequest(prompt="x", width=1024, height=1024, steps=25)
    done = again.announce("cpu:openvino:sd15", big, heard.append)
    assert heard == [TimeEstimate(pytest.approx(160.0), 1024, 1024, 25)]
    again.announce("cpu:openvino:sd15", ImageRequest(prompt="x", steps=25), heard.append)
    assert len(heard) == 1  # 40 s: not worth a message
    done(100.0)
    assert again.estimate("cpu:openvino:sd15", 1024 * 1024, 25) == pytest.approx(100.0)
