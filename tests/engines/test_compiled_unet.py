"""The compiled UNet path, on CPU with the tiny model: same pixels, cache, safe fallback."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tools.core.request import ImageRequest
from tools.engines.diffusers.compiled import (
    CompiledUnet,
    common_shapes,
    dummy_inputs,
    use_inductor_cache,
)
from tools.engines.diffusers.engine import DiffusersEngine

pytestmark = pytest.mark.slow
SHAPE = (2, 64, 64)


@pytest.fixture(scope="module")
def engine_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiling engine's data dir, made first: its inductor cache is the module's,
    so the engine test reuses the kernels the direct tests compiled (gcc is the slow part)."""
    return tmp_path_factory.mktemp("compiling-engine")


@pytest.fixture(scope="module")
def inductor_cache(engine_data: Path, tiny_models: TinyModels) -> Path:
    path = make_tiny_settings(engine_data, tiny_models).cache_dir / "inductor"
    use_inductor_cache(path)
    return path


@pytest.fixture(scope="module")
def unet(tiny_models: TinyModels) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_models.sd15_dir / "unet").eval()


@pytest.fixture(scope="module")
def warmed(unet: Any, inductor_cache: Path) -> CompiledUnet:
    compiled = CompiledUnet(unet, mode="default", warm_calls=1)
    compiled.warm([SHAPE], background=False)
    return compiled


def test_common_shapes_double_the_batch_for_guidance() -> None:
    assert common_shapes("sd15")[0] == (2, 512, 512)
    assert (2, 1024, 1024) in common_shapes("sdxl")
    assert common_shapes("sd15", ["768x512"], cfg=False) == [(1, 512, 768)]


def test_compiled_matches_eager_for_warmed_shape(warmed: CompiledUnet, unet: Any) -> None:
    import torch

    assert warmed.failed is None and len(warmed.ready) == 1
    sample, t, kwargs = dummy_inputs(unet, SHAPE)
    with torch.inference_mode():
        eager = warmed.eager(sample, t, **kwargs)[0]
        calls = {"compiled": 0}
        real = warmed.compiled

        def spy(*a: Any, **k: Any) -> Any:
            calls["compiled"] += 1
            return real(*a, **k)

        warmed.compiled = spy
        try:
            routed = unet(sample, t, **kwargs)[0]  # through unet.forward = route
        finally:
            warmed.compiled = real
    assert calls["compiled"] == 1
    assert torch.allclose(eager, routed, atol=1e-4)


def test_unwarmed_shape_runs_eager_without_compiling(warmed: CompiledUnet, unet: Any) -> None:
    import torch

    sample, t, kwargs = dummy_inputs(unet, (1, 64, 64))
    real_compiled = warmed.compiled
    warmed.compiled = lambda *a, **k: pytest.fail("must not compile an unwarmed shape")  # type: ignore[assignment]
    try:
        with torch.inference_mode():
            out = unet(sample, t, **kwargs)[0]
    finally:
        warmed.compiled = real_compiled
    assert out.shape == sample.shape


def test_long_prompt_at_a_warmed_size_runs_eager_without_compiling(
    warmed: CompiledUnet, unet: Any
) -> None:
    """A 154-position prompt (two chunks) must never recompile inside a request."""
    import torch

    sample, t, kwargs = dummy_inputs(unet, SHAPE, positions=154)
    assert kwargs["encoder_hidden_states"].shape[1] == 154
    real_compiled = warmed.compiled
    warmed.compiled = lambda *a, **k: pytest.fail("must not compile a new prompt length")  # type: ignore[assignment]
    try:
        with torch.inference_mode():
            out = unet(sample, t, **kwargs)[0]
    finally:
        warmed.compiled = real_compiled
    assert out.shape == sample.shape
    assert warmed.key(sample, kwargs["encoder_hidden_states"]) not in warmed.ready


def test_inductor_cache_dir_is_written(inductor_cache: Path, warmed: CompiledUnet) -> None:
    files = [p for p in inductor_cache.rglob("*") if p.is_file()]
    assert files, "compiling left nothing in the cache dir"


def test_run_time_failure_falls_back_to_eager_with_reason(
    unet: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    fresh = UNet2DConditionModel.from_config(unet.config).eval()
    compiled = CompiledUnet(fresh, mode="default")
    sample, t, kwargs = dummy_inputs(fresh, SHAPE)
    compiled.ready.add(compiled.key(sample))

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("inductor exploded")

    compiled.compiled = boom
    with caplog.at_level(logging.WARNING), torch.inference_mode():
        out = fresh(sample, t, **kwargs)[0]
        again = fresh(sample, t, **kwargs)[0]
    assert out.shape == sample.shape and torch.allclose(out, again)
    assert compiled.failed and "inductor exploded" in compiled.failed
    assert "using the eager UNet" in caplog.text


def test_engine_with_compile_on_gives_eager_pixels(
    tiny_models: TinyModels, tmp_path: Path, engine_data: Path, inductor_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    req = ImageRequest(prompt="a lighthouse", width=64, height=64, steps=3, seed=7,
                       sampler="Euler")
    eager = DiffusersEngine(make_tiny_settings(tmp_path / "a", tiny_models, compile_unet="off"))
    base = np.asarray(eager.generate(req)[0].image, dtype=np.int16)
    eager.unload()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    settings = make_tiny_settings(engine_data, tiny_models, compile_unet="on",
                                  compile_mode="default", compile_sizes=["64x64"])
    engine = DiffusersEngine(settings)
    first = np.asarray(engine.generate(req)[0].image, dtype=np.int16)  # never blocked: eager
    loaded = engine.cache.current
    assert loaded is not None and loaded.compiled is not None
    loaded.compiled.wait(300)
    assert loaded.compiled.failed is None and loaded.compiled.ready
    second = np.asarray(engine.generate(req)[0].image, dtype=np.int16)  # compiled now
    assert np.abs(first - base).max() <= 1
    assert np.abs(second - base).max() <= 2
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(inductor_cache), "cache not in data dir"
    assert any(inductor_cache.rglob("*.py")), "no artefacts under data dir"
    engine.unload()

    # A restart: fresh dynamo state, same data dir -> the compiled graph comes from disk.
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    hits = counters["inductor"]["fxgraph_cache_hit"]
    again = DiffusersEngine(settings)
    again.generate(req)
    assert again.cache.current is not None and again.cache.current.compiled is not None
    again.cache.current.compiled.wait(300)
    assert counters["inductor"]["fxgraph_cache_hit"] > hits
    again.unload()
