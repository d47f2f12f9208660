"""ControlNet in the diffusers engine, on the tiny pipelines and tiny ControlNets (CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_control import TinyControlNets
from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tools.core.errors import InvalidRequest, ModelMissing
from tools.core.request import ControlUnit, ImageRequest
from tools.engines.diffusers.engine import DiffusersEngine
from tools.infotext.controlnet import parse_controlnet
from tools.infotext.text import format_infotext, parse_infotext

pytestmark = pytest.mark.slow


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels, tiny_controlnets: TinyControlNets,
           tmp_path_factory: pytest.TempPathFactory) -> DiffusersEngine:
    data = tmp_path_factory.mktemp("control-engine")
    settings = make_tiny_settings(data, tiny_models, controlnet_dir=tiny_controlnets.folder)
    return DiffusersEngine(settings, preview_every=0)


@pytest.fixture(scope="module")
def maps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different control maps, an init image and a mask."""
    root = tmp_path_factory.mktemp("maps")
    a = np.zeros((64, 64, 3), dtype=np.uint8)
    a[16:48, 16:48] = 255
    b = np.zeros((64, 64, 3), dtype=np.uint8)
    b[:, ::8] = 255
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, 32:] = 255
    init = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    paths = {"a": a, "b": b, "mask": mask, "init": init}
    for name, arr in paths.items():
        Image.fromarray(arr).save(root / f"{name}.png")
    return {name: root / f"{name}.png" for name in paths}


def req(**kw: Any) -> ImageRequest:
    base: dict[str, Any] = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 2,
                            "seed": 42}
    return ImageRequest(**{**base, **kw})


def canny(image: Path, **kw: Any) -> ControlUnit:
    return ControlUnit(image=image, module="canny", **kw)


def test_control_image_reaches_the_unet(engine: DiffusersEngine, maps: dict[str, Path]) -> None:
    plain = engine.generate(req())[0].image
    with_a = engine.generate(req(controls=[canny(maps["a"])]))[0].image
    with_b = engine.generate(req(controls=[canny(maps["b"])]))[0].image
    again = engine.generate(req(controls=[canny(maps["a"])]))[0].image
    assert np.abs(px(with_a) - px(plain)).max() > 0
    assert np.abs(px(with_a) - px(with_b)).max() > 0
    assert np.array_equal(px(with_a), px(again))  # same seed and control: same picture


def test_weight_zero_is_the_plain_picture(engine: DiffusersEngine, maps: dict[str, Path]) -> None:
    plain = engine.generate(req())[0].image
    off = engine.generate(req(controls=[canny(maps["a"], weight=0.0)]))[0].image
    assert np.abs(px(off) - px(plain)).max() <= 1


def test_two_controlnets_with_weights_and_a_single_file(
    engine: DiffusersEngine, maps: dict[str, Path], tiny_controlnets: TinyControlNets
) -> None:
    depth = ControlUnit(image=maps["b"], module="depth", weight=0.5, guidance_end=0.5)
    one = engine.generate(req(controls=[canny(maps["a"])]))[0]
    both = engine.generate(req(controls=[canny(maps["a"]), depth]))[0]
    assert np.abs(px(both.image) - px(one.image)).max() > 0
    units = parse_controlnet(parse_infotext(format_infotext(both)).params)
    assert [(u.module, u.model, u.weight, u.guidance_end) for u in units] == [
        ("canny", "tiny_sd15_canny", 1.0, 1.0),
        ("depth", "control_tiny_sd15_depth", 0.5, 0.5),
    ]
    assert all(len(u.model_hash) == 8 for u in units)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_run_under_control(
    engine: DiffusersEngine, maps: dict[str, Path], mode: str
) -> None:
    extra: dict[str, Any] = {"init_image": maps["init"], "strength": 1.0}
    if mode == "inpaint":
        extra["mask_image"] = maps["mask"]
    plain = engine.generate(req(**extra))[0].image
    ruled = engine.generate(req(controls=[canny(maps["a"])], **extra))[0]
    assert ruled.request.mode == mode and ruled.image.size == (64, 64)
    assert np.abs(px(ruled.image) - px(plain)).max() > 0
    if mode == "inpaint":  # outside the mask the original stays
        assert np.array_equal(px(ruled.image)[:, :32], px(Image.open(maps["init"]))[:, :32])


def test_sdxl_controlnet(tiny_models: TinyModels, tiny_controlnets: TinyControlNets,
                         maps: dict[str, Path], tmp_path: Path) -> None:
    settings = make_tiny_settings(tmp_path, tiny_models, image_model=str(tiny_models.sdxl_dir),
                                  controlnet_dir=tiny_controlnets.folder)
    engine = DiffusersEngine(settings, preview_every=0)
    out = engine.generate(req(controls=[canny(maps["a"])]))[0]
    assert "tiny_xl_canny" in out.extra["ControlNet 0"]


def test_family_mismatch_and_missing_model_are_explained(
    engine: DiffusersEngine, maps: dict[str, Path]
) -> None:
    with pytest.raises(InvalidRequest) as err:
        engine.generate(req(controls=[canny(maps["a"], model="tiny_xl_canny")]))
    assert "sdxl" in err.value.localized("en")
    with pytest.raises(ModelMissing) as missing:
        engine.generate(req(controls=[canny(maps["a"], model="nope_canny")]))
    assert "tiny_sd15_canny" in missing.value.localized("en")
    with pytest.raises(ModelMissing) as offline:  # no local openpose: the hub, offline
        engine.generate(req(controls=[ControlUnit(image=maps["a"], module="openpose")]))
    assert "control_v11p_sd15_openpose" in offline.value.localized("en")
