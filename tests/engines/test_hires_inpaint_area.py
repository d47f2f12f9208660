"""Inpainting only the masked area at the model's own size, and the two-pass hires fix,
on the tiny SD1.5 pipeline (native 64 px: UNet sample 8 x VAE factor 8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tests.support.tiny_upscaler import build_tiny_esrgan
from tools.core.errors import InvalidRequest
from tools.core.request import HiresFix, ImageRequest
from tools.engines.diffusers.engine import DiffusersEngine
from tools.infotext.text import format_infotext, parse_infotext, reuse_infotext

pytestmark = pytest.mark.slow
BOX = (700, 500, 800, 580)  # the masked rectangle in a 1600x1200 photo


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> DiffusersEngine:
    data = tmp_path_factory.mktemp("hires-data")
    build_tiny_esrgan(data / "upscalers" / "ESRGAN" / "tiny-2x.pth")
    settings = make_tiny_settings(data, tiny_models, upscalers_dir=data / "upscalers")
    eng = DiffusersEngine(settings, preview_every=0)
    eng.generate(ImageRequest(prompt="warm up", width=64, height=64, steps=1, seed=1))
    return eng


@pytest.fixture
def unet_sizes(engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The latent (height, width) of every UNet call: what size the pipeline really ran."""
    assert engine.cache.current is not None
    unet = engine.cache.current.pipe.unet
    seen: list[Any] = []
    forward = unet.forward

    def spy(sample: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(tuple(sample.shape[-2:]))
        return forward(sample, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", spy)
    yield seen


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1600x1200 'photo' (gradients and noise) and a mask over a small box in it."""
    root = tmp_path_factory.mktemp("photo")
    yy, xx = np.mgrid[0:1200, 0:1600]
    rng = np.random.default_rng(3)
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1) + rng.integers(0, 20, (1200, 1600, 3))
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(root / "photo.png")
    mask = np.zeros((1200, 1600), dtype=np.uint8)
    left, top, right, bottom = BOX
    mask[top:bottom, left:right] = 255
    Image.fromarray(mask).save(root / "mask.png")
    return root / "photo.png", root / "mask.png"


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_large_photo_inpaints_only_the_box_at_the_native_size(
    engine: DiffusersEngine, unet_sizes: list[Any], photo: tuple[Path, Path]
) -> None:
    init, mask = photo
    [g] = engine.generate(ImageRequest(prompt="a red hat", width=1600, height=1200, steps=2,
                                       seed=5, strength=1.0, init_image=init, mask_image=mask))
    assert g.image.size == (1600, 1200)
    assert unet_sizes and set(unet_sizes) == {(8, 8)}  # 64x64: the native working size
    diff = np.abs(px(g.image) - px(Image.open(init))).max(axis=2)
    left, top, right, bottom = BOX
    pad = g.request.inpaint_padding
    outside = np.ones_like(diff, dtype=bool)
    outside[top - pad:bottom + pad, left - pad:right + pad] = False
    assert diff[outside].max() == 0  # byte-identical beyond the blended margin
    assert diff[top:bottom, left:right].mean() > 10  # the box itself was repainted
    assert g.extra["Inpaint area"] == "Only masked" and g.request.width == 1600


def test_whole_picture_inpaint_is_still_selectable(
    engine: DiffusersEngine, unet_sizes: list[Any], photo: tuple[Path, Path]
) -> None:
    init, mask = photo
    [g] = engine.generate(ImageRequest(prompt="a red hat", width=160, height=120, steps=2,
                                       seed=5, strength=1.0, init_image=init, mask_image=mask,
                                       inpaint_area="whole"))
    assert g.image.size == (160, 120) and set(unet_sizes) == {(15, 20)}
    assert "Inpaint area" not in g.extra


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos", "tiny-2x"])
def test_hires_fix_runs_two_passes_and_makes_the_target_size(
    engine: DiffusersEngine, unet_sizes: list[Any], upscaler: str
) -> None:
    hires = HiresFix(scale=2, upscaler=upscaler, steps=2, denoising=0.6)
    [g] = engine.generate(ImageRequest(prompt="a castle", width=64, height=64, steps=2, seed=9,
                                       cfg_scale=1.0, hires=hires))
    assert g.image.size == (128, 128)
    assert unet_sizes[:2] == [(8, 8), (8, 8)] and set(unet_sizes[2:]) == {(16, 16)}
    assert g.request.hires == hires and (g.request.width, g.request.height) == (64, 64)
    text = format_infotext(g)
    assert "Size: 64x64" in text and "Hires upscale: 2" in text
    assert f"Hires upscaler: {upscaler}" in text and "Denoising strength: 0.6" in text
    again = reuse_infotext(parse_infotext(text))
    assert again.request.hires == hires and again.request.strength == 0.75
    assert not [k for k in again.ignored if k.startswith(("Hires", "Denoising"))]


def test_unknown_hires_upscaler_is_refused_before_any_work(engine: DiffusersEngine) -> None:
    with pytest.raises(InvalidRequest, match="tiny-2x"):
        engine.generate(ImageRequest(prompt="x", width=64, height=64, steps=2,
                                     hires=HiresFix(upscaler="4x-Missing")))


def test_a_job_measured_to_take_minutes_is_announced_before_it_runs(
    engine: DiffusersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tools.core.events import TimeEstimate

    heard: list[object] = []
    monkeypatch.setattr(engine, "on_download", heard.append)
    engine.step_times.record("cpu:torch:sd15", 64 * 64, 1, 30.0)  # pretend: 30 s a step
    engine.generate(ImageRequest(prompt="x", width=64, height=128, steps=2, seed=1))
    estimates = [e for e in heard if isinstance(e, TimeEstimate)]
    assert estimates == [TimeEstimate(pytest.approx(120.0), 64, 128, 2)]
    assert engine.step_times.estimate("cpu:torch:sd15", 64 * 128, 2) < 60  # measured now
