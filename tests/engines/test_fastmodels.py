"""Few-step families told from files alone, and the recipe a request gets from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.core.settings import Settings
from tools.engines.diffusers.fastmodels.families import (
    best_adapter,
    detect_adapter,
    detect_model,
)
from tools.engines.diffusers.fastmodels.profile import fast_recipe, overrides
from tools.engines.diffusers.models import ModelSource


def safetensors(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A valid, empty safetensors file (header only) with ``metadata``."""
    header = json.dumps({"__metadata__": metadata or {}}).encode()
    header += b" " * (-len(header) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    return path


def folder(root: Path, name: str, *, index: dict[str, str] | None = None,
           unet: dict[str, object] | None = None, scheduler: str = "PNDMScheduler") -> Path:
    path = root / name
    (path / "unet").mkdir(parents=True)
    (path / "scheduler").mkdir()
    (path / "model_index.json").write_text(json.dumps(
        {"_class_name": "StableDiffusionPipeline", **(index or {})}))
    (path / "unet" / "config.json").write_text(json.dumps(unet or {}))
    (path / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": scheduler}))
    return path


@pytest.mark.parametrize(("name", "key", "sampler", "steps"), [
    ("stabilityai/sd-turbo", "sd-turbo", "Euler a", 1),
    ("sd_xl_turbo_1.0_fp16", "sd-turbo", "Euler a", 1),
    ("IDKiro/sdxs-512-0.9", "sdxs", "LCM", 1),
    ("dmd2_sdxl_4step_unet", "dmd2", "LCM", 4),
    ("sdxl_lightning_2step", "lightning", "Euler", 2),
    ("dreamshaper-8-lcm", "lcm", "LCM", 4),
])
def test_distilled_models_are_known_by_name_with_their_sampler_and_steps(
    name: str, key: str, sampler: str, steps: int
) -> None:
    found = detect_model(None, name)
    assert found is not None and (found.key, found.sampler, found.steps) == (key, sampler, steps)
    assert found.cfg == 1.0  # distilled without CFG: the negative prompt is skipped


def test_an_lcm_unet_or_scheduler_in_the_folder_marks_a_model_renamed_by_its_owner(
    tmp_path: Path
) -> None:
    plain = folder(tmp_path, "my-model")
    assert detect_model(plain, "my-model") is None
    by_unet = folder(tmp_path, "a", unet={"time_cond_proj_dim": 256})
    by_scheduler = folder(tmp_path, "b", scheduler="LCMScheduler")
    by_index = folder(tmp_path, "c", index={"_name_or_path": "stabilityai/sd-turbo"})
    assert [detect_model(p, p.name).key for p in (by_unet, by_scheduler, by_index)  # type: ignore[union-attr]
            ] == ["lcm", "lcm", "sd-turbo"]


def test_few_step_loras_are_known_by_name_or_metadata_and_styles_are_not(tmp_path: Path) -> None:
    hyper1 = detect_adapter(safetensors(tmp_path / "Hyper-SD15-1step-lora.safetensors"))
    hyper2 = detect_adapter(safetensors(tmp_path / "Hyper-SD15-2steps-lora.safetensors"))
    tcd = detect_adapter(safetensors(tmp_path / "TCD-SD15-LoRA.safetensors"))
    renamed = detect_adapter(safetensors(tmp_path / "speedup.safetensors",
                                         {"ss_output_name": "lcm-lora-sdv1-5"}))
    assert hyper1 is not None and (hyper1.sampler, hyper1.steps) == ("TCD", 1)
    assert hyper2 is not None and (hyper2.sampler, hyper2.steps) == ("DDIM", 2)
    assert hyper2.scheduler == {"timestep_spacing": "trailing"}
    assert tcd is not None and (tcd.sampler, tcd.steps) == ("TCD", 4)
    assert renamed is not None and renamed.key == "lcm-lora"
    assert detect_adapter(safetensors(tmp_path / "turbo-style-anime.safetensors")) is None
    assert detect_adapter(safetensors(tmp_path / "watercolor.safetensors")) is None


def test_fast_mode_picks_the_best_adapter_for_the_model_family(tmp_path: Path) -> None:
    loras = tmp_path / "loras"
    assert best_adapter(loras, "sd15") is None
    safetensors(loras / "lcm-lora-sdv1-5.safetensors")
    safetensors(loras / "TCD-SD15-LoRA.safetensors")
    safetensors(loras / "Hyper-SDXL-1step-lora.safetensors")
    best = best_adapter(loras, "sd15")
    assert best is not None and best[1].key == "tcd"  # TCD beats LCM; the Hyper-SD is SDXL
    xl = best_adapter(loras, "sdxl")
    assert xl is not None and (xl[0].name, xl[1].steps) == ("Hyper-SDXL-1step-lora.safetensors", 1)


def test_recipe_gives_the_distilled_models_own_or_the_adapters_fewest_clean_steps(
    tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "d",  # type: ignore[call-arg]
                        lora_dir=tmp_path / "loras")
    turbo = folder(tmp_path, "sd-turbo")
    recipe = fast_recipe(settings, ModelSource("folder", str(turbo), turbo.name, turbo))
    assert recipe.distilled and overrides(recipe, 20, 7.0) == {
        "sampler": "Euler a", "steps": 1, "cfg_scale": 1.0}
    plain = folder(tmp_path, "plain")
    source = ModelSource("folder", str(plain), plain.name, plain)
    lcm = fast_recipe(settings, source)
    assert not lcm.distilled and lcm.adapter is None and overrides(lcm, 20, 7.0)["steps"] == 4
    safetensors(tmp_path / "loras" / "Hyper-SD15-1step-lora.safetensors")
    hyper = fast_recipe(settings, source)
    assert hyper.adapter is not None and overrides(hyper, 20, 7.0) == {
        "sampler": "TCD", "steps": 1, "cfg_scale": 1.0}
    # a fast request's own few steps and low CFG stay; a preset may ask for more steps
    assert overrides(hyper, 3, 1.2) == {"sampler": "TCD", "steps": 3, "cfg_scale": 1.2}
    assert overrides(hyper, 20, 7.0, wanted_steps=6)["steps"] == 6
