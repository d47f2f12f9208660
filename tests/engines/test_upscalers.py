"""Upscaler models from a folder (A1111 layout), loaded by spandrel, run in tiles."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_upscaler import build_tiny_esrgan
from tools.core.errors import InvalidRequest
from tools.engines.upscalers.folder import best_upscaler, find_upscaler, list_upscalers
from tools.engines.upscalers.tiled import Upscaler, _starts


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("a1111-models")
    return build_tiny_esrgan(root / "ESRGAN" / "tiny-esrgan-2x.pth", scale=2)


def noisy(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_folder_finds_a1111_subfolders_and_ranks_known_good_models(tmp_path: Path) -> None:
    for rel in ("ESRGAN/some-model.pth", "RealESRGAN/RealESRGAN_x4plus.pth",
                "4x-UltraSharp.safetensors", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = [f.name for f in list_upscalers(tmp_path)]
    assert names == ["4x-UltraSharp", "RealESRGAN_x4plus", "some-model"]
    best = best_upscaler(tmp_path)
    assert best is not None and best.name == "4x-UltraSharp"
    found = find_upscaler(tmp_path, "realesrgan_X4PLUS")
    assert found is not None and found.path.parent.name == "RealESRGAN"
    a1111 = find_upscaler(tmp_path, "R-ESRGAN 4x+")  # as A1111's infotexts name it
    assert a1111 is not None and a1111.name == "RealESRGAN_x4plus"
    assert best_upscaler(tmp_path / "missing") is None and best_upscaler(None) is None


@pytest.mark.slow
def test_tiny_esrgan_loads_from_the_folder_and_tiled_matches_untiled(esrgan: Path) -> None:
    found = find_upscaler(esrgan.parent.parent, "tiny-esrgan-2x")
    assert found is not None
    tiled = Upscaler(found.path, "cpu", tile=24, overlap=8)
    assert tiled.scale == 2
    image = noisy(40, 36)  # 2 x 2 tiles of 24 with overlap
    a = np.asarray(tiled.upscale(image), dtype=np.int16)
    whole = Upscaler(found.path, "cpu", tile=0)
    b = np.asarray(whole.upscale(image), dtype=np.int16)
    assert a.shape == (72, 80, 3)
    diff = np.abs(a - b)
    assert diff.max() <= 4 and diff.mean() < 0.5  # seams blended away
    assert tiled.upscale(image, 1.5).size == (60, 54)  # other factors via Lanczos


@pytest.mark.slow
def test_spandrel_import_leaves_no_torchvision_stand_in(esrgan: Path) -> None:
    Upscaler(esrgan, "cpu")
    stub = sys.modules.get("torchvision")
    assert stub is None or getattr(stub, "__file__", None) is not None


def test_tiles_cover_every_pixel_with_overlap() -> None:
    assert _starts(100, 32, 8) == [0, 24, 48, 68]
    assert _starts(20, 32, 8) == [0]


@pytest.mark.slow
def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a model")
    with pytest.raises(InvalidRequest, match="could not be loaded"):
        Upscaler(bad, "cpu")


def test_upscale_button_uses_the_best_model_present_and_says_which(tmp_path: Path) -> None:
    from assistant.studio.hires import upscale_with

    (tmp_path / "ESRGAN").mkdir()
    for name in ("some-model.pth", "4x-UltraSharp.pth"):
        (tmp_path / "ESRGAN" / name).write_bytes(b"x")
    name, said = upscale_with(tmp_path, "en")
    assert name == "4x-UltraSharp" and "4x-UltraSharp" in said
    none, said = upscale_with(tmp_path / "none", "ja")
    assert none is None and "Lanczos" in said and "EGAKI_UPSCALERS_DIR" in said
