"""The OpenVINO CPU path on tiny pipelines: same pictures as torch, cached, never failing.

Each engine here converts the tiny UNet and VAE once per data dir (a few seconds), so
tests share one data dir where they don't need a fresh cache.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.app_process import guarded_env
from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tools.core.request import ImageRequest
from tools.engines.diffusers.engine import DiffusersEngine
from tools.engines.diffusers.openvino import pipeline as openvino_pipeline
from tools.engines.diffusers.openvino import runtime as openvino_runtime

pytestmark = pytest.mark.slow


def req(**kw: Any) -> ImageRequest:
    base: dict[str, Any] = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64,
                            "steps": 3, "seed": 7, "sampler": "Euler"}
    return ImageRequest(**{**base, **kw})


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def routes(engine: DiffusersEngine) -> dict[str, Any]:
    loaded = engine.cache.current
    assert loaded is not None and loaded.openvino is not None, "OpenVINO was not used"
    # the UNet's route is "forward", the VAE's "decode"; text encoders by their name
    names = {id(loaded.pipe.text_encoder): "text_encoder",
             id(getattr(loaded.pipe, "text_encoder_2", None)): "text_encoder_2"}
    return {names.get(id(r.module), r.method): r for r in loaded.openvino.routes}


@pytest.fixture(scope="module")
def ov_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov-data")


@pytest.fixture(scope="module")
def torch_engine(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
                 ) -> DiffusersEngine:
    data = tmp_path_factory.mktemp("torch-data")
    return DiffusersEngine(make_tiny_settings(data, tiny_models, cpu_runtime="torch"),
                           preview_every=0)


@pytest.fixture(scope="module")
def ov_engine(tiny_models: TinyModels, ov_data: Path) -> DiffusersEngine:
    settings = make_tiny_settings(ov_data, tiny_models, cpu_runtime="openvino",
                                  openvino_precision="f32")
    return DiffusersEngine(settings, preview_every=0)


def test_openvino_gives_the_torch_picture_and_honours_size_steps_seed(
    ov_engine: DiffusersEngine, torch_engine: DiffusersEngine
) -> None:
    for kw in ({}, {"width": 96, "height": 64, "steps": 4}, {"seed": 8, "batch_size": 2}):
        want = torch_engine.generate(req(**kw))
        got = ov_engine.generate(req(**kw))
        assert [g.image.size for g in got] == [w.image.size for w in want]
        assert [g.seed for g in got] == [w.seed for w in want]
        for g, w in zip(got, want, strict=True):
            assert np.abs(px(g.image) - px(w.image)).max() <= 3, kw
    r = routes(ov_engine)
    before = r["forward"].calls
    again = ov_engine.generate(req(steps=5))[0]
    assert r["forward"].calls - before == 5  # one OpenVINO UNet call per step (CFG batched)
    assert r["decode"].calls >= 4 and r["forward"].failed is None
    assert again.peak_memory.startswith("peak ") and "RAM" in again.peak_memory
    # latents the traced graph can't take (72 px → 9, odd) run torch, not a failure
    odd = ov_engine.generate(req(height=72))[0]
    assert odd.image.size == (64, 72) and r["forward"].failed is None
    other_seed = ov_engine.generate(req(seed=99, steps=5))[0]
    assert not np.array_equal(px(again.image), px(other_seed.image))
    assert np.array_equal(px(again.image), px(ov_engine.generate(req(steps=5))[0].image))


def test_openvino_holds_each_weight_once_and_torch_comes_back_for_fallbacks(
    ov_engine: DiffusersEngine, torch_engine: DiffusersEngine
) -> None:
    ov_engine.generate(req())
    loaded = ov_engine.cache.current
    assert loaded is not None and loaded.openvino is not None
    weights, unet, vae = loaded.openvino.weights, loaded.pipe.unet, loaded.pipe.vae
    assert not weights["unet"].resident and unet.conv_in.weight.device.type == "meta"
    assert vae.decoder.conv_in.weight.device.type == "meta"
    assert vae.encoder.conv_in.weight.device.type == "cpu"  # img2img still encodes in torch
    # the folder's own weights match the UNet as loaded: reloaded from there, no copy
    assert weights["unet"].source is not None and weights["unet"].source[0].parent.name == "unet"
    # a shape the traced graph can't take: torch runs it with the weights mapped back
    odd = ov_engine.generate(req(height=72))[0]
    assert weights["unet"].resident and unet.conv_in.weight.device.type == "cpu"
    want = torch_engine.generate(req(height=72))[0]
    assert np.abs(px(odd.image) - px(want.image)).max() <= 3
    ov_engine.generate(req())  # OpenVINO serves again: torch's copy goes again
    assert not weights["unet"].resident and unet.conv_in.weight.device.type == "meta"


def test_converted_models_are_cached_under_the_data_dir_and_reused(
    ov_engine: DiffusersEngine, ov_data: Path, tiny_models: TinyModels,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    ov_engine.generate(req())
    irs = sorted(p.name for p in (ov_data / "cache" / "openvino").rglob("*.xml"))
    assert irs == ["decoder.xml", "text_encoder.xml", "unet.xml"]
    ov_engine.unload()

    def no_conversion(*a: Any, **k: Any) -> None:
        raise AssertionError("converted again instead of using the cache")

    monkeypatch.setattr(openvino_pipeline, "convert", no_conversion)
    restarted = DiffusersEngine(
        make_tiny_settings(ov_data, tiny_models, cpu_runtime="openvino",
                           openvino_precision="f32"), preview_every=0)
    restarted.generate(req())
    assert routes(restarted)["forward"].calls == 3
    restarted.unload()


def test_bf16_stays_close_to_torch(
    tiny_models: TinyModels, ov_data: Path, torch_engine: DiffusersEngine
) -> None:
    if openvino_runtime.pick_precision("auto") != "bf16":
        pytest.skip("this CPU has no native bf16; f32 is what auto picks here")
    engine = DiffusersEngine(make_tiny_settings(ov_data, tiny_models, cpu_runtime="auto"),
                             preview_every=0)
    got = px(engine.generate(req())[0].image)
    want = px(torch_engine.generate(req())[0].image)
    assert routes(engine)["forward"].model.precision == "bf16"
    assert np.abs(got - want).mean() < 4 and np.abs(got - want).max() < 40
    engine.unload()


def test_img2img_inpaint_and_fast_mode_run_on_openvino(
    ov_engine: DiffusersEngine, torch_engine: DiffusersEngine, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    init = tmp_path / "init.png"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(init)
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[:, 32:] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    for kw in ({"init_image": init, "strength": 0.7},
               {"init_image": init, "mask_image": mask_path, "strength": 1.0},
               {"fast": True, "steps": 2}):
        want = torch_engine.generate(req(**kw))[0]
        got = ov_engine.generate(req(**kw))[0]
        assert got.request.mode == want.request.mode
        diff = np.abs(px(got.image) - px(want.image))
        if kw.get("fast"):  # LCM LoRA fused, stored as fp16: the tiny random net amplifies
            assert diff.mean() < 1.5 and diff.max() <= 24, kw  # that rounding a little
        else:
            assert diff.max() <= 3, kw
        if "mask_image" in kw:  # outside the mask the original stays untouched
            assert np.array_equal(px(got.image)[:, :32], np.asarray(Image.open(init))[:, :32])
    decoders = [r for r in ov_engine.cache.current.openvino.routes if r.method == "decode"]
    assert len(decoders) == 2 and all(d.calls for d in decoders)  # full VAE and TAESD


def test_inpainting_and_sdxl_models_convert_with_their_own_inputs(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (120, 40, 200)).save(init)
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    cases = [(tiny_models.inpaint_dir, {"init_image": init, "mask_image": mask,
                                        "strength": 1.0}),
             (tiny_models.sdxl_dir, {"width": 64, "height": 96})]
    for model, kw in cases:
        pics = []
        for runtime in ("torch", "openvino"):
            settings = make_tiny_settings(tmp_path / runtime / model.name, tiny_models,
                                          image_model=str(model), cpu_runtime=runtime,
                                          openvino_precision="f32")
            engine = DiffusersEngine(settings, preview_every=0)
            pics.append(px(engine.generate(req(**kw))[0].image))
            if runtime == "openvino":
                assert routes(engine)["forward"].calls == 3, model.name
            engine.unload()
        assert np.abs(pics[0] - pics[1]).max() <= 3, model.name


def test_fast_mode_lcm_lora_gets_its_own_fused_openvino_unet(
    ov_engine: DiffusersEngine, torch_engine: DiffusersEngine
) -> None:
    want = torch_engine.generate(req(fast=True, steps=2))[0]  # torch: the adapter is live
    got = ov_engine.generate(req(fast=True, steps=2))[0]
    accel = ov_engine.cache.current.openvino  # type: ignore[union-attr]
    r = routes(ov_engine)["forward"]
    fused = [k for k in accel.unet_models if k.startswith("lora:")]
    assert len(fused) == 1 and r.model is accel.unet_models[fused[0]] and not r.paused
    assert got.extra["Lora hashes"] == want.extra["Lora hashes"]
    diff = np.abs(px(got.image) - px(want.image))  # fused weights stored as fp16
    assert diff.mean() < 1.5 and diff.max() <= 24
    before = r.calls
    ov_engine.generate(req(fast=True, steps=2))
    assert r.calls == before + 2  # OpenVINO served the fast steps
    plain = ov_engine.generate(req())[0]  # and the base model is back for full quality
    assert r.model is accel.unet_models["base"]
    assert np.abs(px(plain.image) - px(torch_engine.generate(req())[0].image)).max() <= 3


def test_lora_requests_run_the_torch_unet(
    ov_engine: DiffusersEngine, torch_engine: DiffusersEngine
) -> None:
    prompt = "a red cat <lora:tiny-style:0.9>"
    want = torch_engine.generate(req(prompt=prompt))[0]
    ov_engine.generate(req())
    r = routes(ov_engine)
    before = r["forward"].calls
    got = ov_engine.generate(req(prompt=prompt))[0]
    assert r["forward"].calls == before  # adapters live in torch: OpenVINO stood aside
    assert np.abs(px(got.image) - px(want.image)).max() <= 3
    plain = ov_engine.generate(req())[0]  # and is back for the next plain request
    assert r["forward"].calls == before + 3 and not r["forward"].paused
    assert not np.array_equal(px(plain.image), px(got.image))


def test_conversion_failure_falls_back_to_torch_with_reason(
    tiny_models: TinyModels, tmp_path: Path, torch_engine: DiffusersEngine,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError("unsupported operation aten::frobnicate")

    monkeypatch.setattr(openvino_pipeline, "convert", broken)
    settings = make_tiny_settings(tmp_path / "data", tiny_models, cpu_runtime="openvino")
    engine = DiffusersEngine(settings, preview_every=0)
    with caplog.at_level(logging.WARNING):
        got = engine.generate(req())[0]
    assert np.array_equal(px(got.image), px(torch_engine.generate(req())[0].image))
    assert engine.cache.current is not None and engine.cache.current.openvino is None
    assert "aten::frobnicate" in caplog.text
    # the reason is remembered: the next start doesn't spend minutes failing again
    markers = list((settings.cache_dir / "openvino").rglob("failed.txt"))
    assert markers and "frobnicate" in markers[0].read_text()
    engine.unload()


def test_a_unet_that_does_not_convert_leaves_the_text_encoder_route_alone(
    tiny_models: TinyModels, tmp_path: Path, torch_engine: DiffusersEngine,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the UNet fails to convert: its requests (fast mode's LoRA too) run on torch,
    and the text encoder's route, also a ``forward``, is never taken for the UNet's."""
    real_convert = openvino_pipeline.convert

    def unet_breaks(module: Any, example: Any, specs: Any, ir: Path) -> None:
        if ir.name == "unet.xml":
            raise RuntimeError("unsupported operation aten::frobnicate")
        real_convert(module, example, specs, ir)

    monkeypatch.setattr(openvino_pipeline, "convert", unet_breaks)
    engine = DiffusersEngine(make_tiny_settings(tmp_path / "data", tiny_models,
                                                cpu_runtime="openvino",
                                                openvino_precision="f32"), preview_every=0)
    got = engine.generate(req())[0]
    want = torch_engine.generate(req())[0]
    assert np.abs(px(got.image) - px(want.image)).max() <= 3
    engine.generate(req(fast=True, steps=2))
    accel = engine.cache.current.openvino  # type: ignore[union-attr]
    assert "unet" not in accel.served_by and list(accel.unet_models) == []
    te = routes(engine)["text_encoder"]
    assert te.failed is None and not te.paused and te.calls >= 2
    engine.unload()


def test_run_time_failure_falls_back_to_torch_for_good(
    ov_engine: DiffusersEngine, torch_engine: DiffusersEngine,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ov_engine.generate(req())
    r = routes(ov_engine)["forward"]

    def boom(*a: Any) -> Any:
        raise RuntimeError("CPU plugin exploded")

    monkeypatch.setattr(openvino_runtime.OvModel, "__call__", boom)
    with caplog.at_level(logging.WARNING):
        got = ov_engine.generate(req())[0]
    assert r.failed and "exploded" in r.failed and "using torch" in caplog.text
    want = px(torch_engine.generate(req())[0].image)
    assert np.abs(px(got.image) - want).max() <= 3
    calls = r.calls
    ov_engine.generate(req())
    assert r.calls == calls  # for good: no retry on every step
    ov_engine.unload()  # the next test gets a fresh model with working routes


def test_gpu_or_torch_setting_never_converts(tiny_models: TinyModels, tmp_path: Path) -> None:
    engine = DiffusersEngine(make_tiny_settings(tmp_path / "d", tiny_models, cpu_runtime="torch"),
                             preview_every=0)
    engine.generate(req())
    assert engine.cache.current is not None and engine.cache.current.openvino is None
    assert not (tmp_path / "d" / "cache" / "openvino").exists()


def test_openvino_telemetry_is_blocked(tmp_path: Path) -> None:
    """OpenVINO's pip package sends usage events to Google Analytics unless told not to.

    The control run (plain ``import openvino``) shows the socket guard catches them, so
    the guarded run through :func:`import_openvino` proves nothing is sent.
    """
    convert = ("import torch\n"
               "ov.convert_model(torch.nn.Linear(2, 2), example_input=torch.randn(1, 2))\n")
    plain = "import openvino as ov, openvino.tools.ovc\n" + convert
    ours = ("from tools.engines.diffusers.openvino.runtime import import_openvino\n"
            "ov = import_openvino()\n"
            "import openvino.tools.ovc, nncf\n" + convert)
    logs = []
    for name, code in (("plain", plain), ("egaki", ours)):
        log = tmp_path / f"{name}.log"
        home = tmp_path / f"home-{name}"
        home.mkdir()
        env = {**os.environ, "HOME": str(home), "CI": "", **guarded_env(log)}
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300,
                       capture_output=True)
        logs.append(log.read_text() if log.exists() else "")
    assert "google-analytics" in logs[0], "control: the guard should see OpenVINO telemetry"
    assert logs[1] == ""


def test_int8_unet_is_calibrated_once_per_unet_then_reused(
    tiny_models: TinyModels, tmp_path: Path, torch_engine: DiffusersEngine,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base UNet and fast mode's LoRA-fused UNet are each quantized once; a restart
    on the same data dir quantizes nothing."""
    from tools.engines.diffusers.openvino import int8 as openvino_int8

    seen: list[int] = []
    real_quantize = openvino_int8.quantize

    def counting(model: Any, samples: list[list[Any]], target: Path) -> None:
        seen.append(len(samples))
        real_quantize(model, samples, target)

    monkeypatch.setattr(openvino_int8, "quantize", counting)
    settings = make_tiny_settings(tmp_path / "data", tiny_models, cpu_runtime="openvino",
                                  openvino_precision="f32", openvino_int8=True)
    engine = DiffusersEngine(settings, preview_every=0)
    got = px(engine.generate(req())[0].image)
    unet = routes(engine)["forward"]
    assert seen == [16]  # calibration.yaml: an even spread of 16 of the inputs seen
    assert any(n.get_type_name() == "FakeQuantize" for n in unet.model.model.get_ops())
    want = px(torch_engine.generate(req())[0].image)
    assert got.shape == want.shape and np.abs(got - want).mean() < 40

    engine.generate(req(fast=True, steps=2))  # fast mode: its own fused UNet, quantized too
    assert seen == [16, 16]
    accel = engine.cache.current.openvino  # type: ignore[union-attr]
    fused = next(k for k in accel.unet_models if k.startswith("lora:"))
    for key in ("base", fused):
        assert any(n.get_type_name() == "FakeQuantize"
                   for n in accel.unet_models[key].model.get_ops()), key
    r = routes(engine)["forward"]
    assert r.model is accel.unet_models[fused] and r.failed is None
    engine.unload()

    def no_requantize(*a: Any, **k: Any) -> None:
        raise AssertionError("quantized again instead of using the cache")

    monkeypatch.setattr(openvino_int8, "quantize", no_requantize)
    again = DiffusersEngine(settings, preview_every=0)
    again.generate(req())
    unet = routes(again)["forward"]
    assert unet.calls == 3 and unet.failed is None
    assert any(n.get_type_name() == "FakeQuantize" for n in unet.model.model.get_ops())
    again.generate(req(fast=True, steps=2))
    assert routes(again)["forward"].failed is None
    again.unload()
