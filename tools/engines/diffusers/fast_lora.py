"""The LoRA that makes fast mode look right on models not distilled for few steps.

The LCM sampler at 1–8 steps without CFG only draws clean pictures with an LCM-, Turbo- or
similar distilled model. For an ordinary SD1.5/SDXL checkpoint, fast mode adds the
best few-step LoRA in the LoRA folder (Hyper-SD, TCD or LCM, see
:mod:`tools.engines.diffusers.fastmodels`) or else the family's LCM LoRA
(``EGAKI_FAST_LORA=auto``), or the LoRA the setting names (a file, a
folder holding one, or a Hugging Face id), downloaded once with progress. Distilled
models (an LCM UNet, or a name saying lcm/turbo/lightning/hyper/tcd/dmd/sdxs) need none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tools.core.errors import ModelMissing
from tools.core.settings import Settings
from tools.engines.diffusers.fastmodels.families import best_adapter, detect_model
from tools.engines.diffusers.hub import DownloadCallback, cached_snapshot, ensure_snapshot
from tools.engines.diffusers.lora import ResolvedLora

FAST_LORA = {"sd15": "latent-consistency/lcm-lora-sdv1-5",
             "sdxl": "latent-consistency/lcm-lora-sdxl"}
_DISTILLED = re.compile(r"lcm|turbo|lightning|hyper|tcd|dmd|sdxs", re.IGNORECASE)
NAME = "fast-lcm"


def is_distilled(unet: Any, model_name: str, path: Path | None = None) -> bool:
    """True when the model already draws in a few steps without a LoRA: by its UNet, its
    name, or (given its folder) what the plan's few-step detection reads there, e.g. a
    renamed SD-Turbo download whose ``model_index.json`` still names it."""
    return bool(getattr(unet.config, "time_cond_proj_dim", None)) or bool(
        _DISTILLED.search(model_name)) or detect_model(path, model_name) is not None


def _first_weights(folder: Path) -> Path | None:
    files = sorted(folder.rglob("*.safetensors"))
    return files[0] if files else None


def resolve_fast_lora(settings: Settings, family: str,
                      on_download: DownloadCallback | None = None) -> ResolvedLora | None:
    """The fast-mode LoRA for ``family``, fetched if needed; None when switched off."""
    ref = settings.fast_lora.strip()
    if ref.lower() in ("", "off", "none"):
        return None
    if ref.lower() == "auto":
        # the best few-step LoRA already in the LoRA folder (Hyper-SD, TCD, LCM), else LCM's
        best = best_adapter(settings.lora_dir, family)
        if best is not None:
            return ResolvedLora(name=NAME, path=best[0], weight=1.0)
        ref = FAST_LORA.get(family, FAST_LORA["sd15"])
    local = Path(ref).expanduser()
    if local.is_file():
        return ResolvedLora(name=NAME, path=local, weight=1.0)
    if local.is_dir() and (found := _first_weights(local)) is not None:
        return ResolvedLora(name=NAME, path=found, weight=1.0)
    # the cache first: a fast request must not ask the hub for updates every time
    folder = cached_snapshot(ref, settings, ["*.safetensors"])
    try:
        folder = folder or ensure_snapshot(ref, settings, on_download,
                                           allow_patterns=["*.safetensors"],
                                           ignore_patterns=[], what="LoRA")
    except ModelMissing as err:
        raise ModelMissing.of("fast_lora_needed", model=ref, ref=ref, reason=err) from err
    found = _first_weights(folder)
    if found is None:
        raise ModelMissing.of("fast_lora_no_file", model=ref, ref=ref)
    return ResolvedLora(name=NAME, path=found, weight=1.0)
