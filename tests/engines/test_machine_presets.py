"""Quick / Balanced / Full chosen from one measured UNet step, and said why."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tools.core.request import ImageRequest
from tools.engines.diffusers.fastmodels import machine
from tools.engines.diffusers.fastmodels.machine import StepTimes, choose, explain


def test_a_fast_machine_starts_on_full_a_middling_one_on_balanced_a_slow_one_on_quick() -> None:
    gpu_like = choose(StepTimes(512, 0.03, 0.05))
    amx = choose(StepTimes(512, 0.45, 0.85))  # ~19 s full: an AMX Xeon, 2 cores
    epyc = choose(StepTimes(512, 1.0, 2.1))  # ~46 s full, ~19 s balanced
    assert (gpu_like.preset, amx.preset, epyc.preset) == ("full", "full", "quick")
    laptop = choose(StepTimes(512, 0.6, 1.2))  # 26 s full, 11 s balanced
    assert laptop.preset == "balanced"
    assert round(laptop.full_s) == 26 and laptop.quick_s < laptop.balanced_s < laptop.full_s


def test_the_choice_is_explained_in_the_persons_language() -> None:
    choice = choose(StepTimes(512, 0.25, 1.8, quick_steps=4))
    en = explain(choice, "en")
    assert en.startswith("This computer makes a full-quality picture in about 40 s; "
                         "quick previews take about 1.1 s") and "Quick" in en
    assert "40秒" in explain(choice, "ja")


def test_measurements_are_cached_per_model_and_size_and_the_latest_is_used(
    tmp_path: Path
) -> None:
    key = machine.cache_key(("folder", "/m/sd15", "1"), 512, "openvino")
    assert machine.load(tmp_path, key) is None and machine.latest(tmp_path) is None
    machine.save(tmp_path, key, StepTimes(512, 0.5, 0.9, 1))
    other = machine.cache_key(("folder", "/m/xl", "1"), 1024, "openvino")
    machine.save(tmp_path, other, StepTimes(1024, 2.0, 3.9, 4))
    assert machine.load(tmp_path, key) == StepTimes(512, 0.5, 0.9, 1)
    assert machine.latest(tmp_path) == StepTimes(1024, 2.0, 3.9, 4)


def test_measure_times_one_unet_call_with_and_without_cfg_batch() -> None:
    calls: list[tuple[int, ...]] = []

    class Unet:
        class config:
            in_channels, cross_attention_dim = 4, 8

        def __call__(self, sample: torch.Tensor, *a: object, **k: object) -> None:
            calls.append(tuple(sample.shape))

    times = machine.measure(Unet(), 512, quick_steps=1, repeat=2)
    assert calls == [(1, 4, 64, 64)] * 3 + [(2, 4, 64, 64)] * 3  # one warm-up each
    assert times.size == 512 and times.quick_steps == 1 and times.single_s >= 0


@pytest.mark.slow
def test_the_first_cpu_picture_measures_the_machine_and_tells_the_engines_listener(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    from tools.engines.diffusers.engine import DiffusersEngine

    settings = make_tiny_settings(tmp_path / "data", tiny_models, measure_machine=True)
    engine = DiffusersEngine(settings, preview_every=0)
    measured = threading.Event()
    engine.on_measured = measured.set
    assert machine.latest(settings.data_dir) is None
    engine.generate(ImageRequest(prompt="a cat", width=64, height=64, steps=2, seed=1))
    assert measured.wait(120), "the measurement never reported"
    times = machine.latest(settings.data_dir)
    assert times is not None and times.size == 512 and times.cfg_s > 0
    assert not engine.measure_presets  # once per engine
