"""A distilled one-step model (SD-Turbo) found by its files and run with its own recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tools.core.request import ImageRequest
from tools.engines.diffusers.engine import DiffusersEngine


def renamed_turbo(root: Path, models: TinyModels) -> Path:
    """A tiny SD-shaped folder saved the way an SD-Turbo download is (its hub id in
    ``model_index.json``, Euler with trailing timesteps) under a name that says nothing."""
    folder = root / "my-fast-model"
    shutil.copytree(models.sd15_dir, folder)
    index = folder / "model_index.json"
    index.write_text(json.dumps(json.loads(index.read_text())
                                | {"_name_or_path": "stabilityai/sd-turbo"}))
    sched = folder / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps(json.loads(sched.read_text())
                                | {"_class_name": "EulerDiscreteScheduler",
                                   "timestep_spacing": "trailing"}))
    return folder


@pytest.mark.slow
def test_a_renamed_sd_turbo_runs_one_step_without_cfg_or_the_fast_lora(
    tmp_path: Path, tiny_models: TinyModels
) -> None:
    # a local few-step LoRA is configured: an undistilled model in fast mode would get it
    settings = make_tiny_settings(tmp_path / "data", tiny_models,
                                  image_model=str(renamed_turbo(tmp_path, tiny_models)),
                                  fast_lora=str(tiny_models.lora))
    engine = DiffusersEngine(settings, preview_every=0)
    [fast] = engine.generate(ImageRequest(prompt="a fox", width=64, height=64, steps=25,
                                          cfg_scale=7.0, seed=3, fast=True))
    assert (fast.request.sampler, fast.request.steps, fast.request.cfg_scale) == (
        "Euler a", 1, 1.0)
    assert "Lora hashes" not in fast.extra and fast.extra["VAE"] == "tiny-taesd"
    loaded = engine.cache.current
    assert loaded is not None
    assert loaded.pipe.scheduler.config.timestep_spacing == "trailing"
    # the same one step again gives the same picture (nothing left over between calls)
    [again] = engine.generate(fast.request)
    assert again.image.tobytes() == fast.image.tobytes()
