"""Which few-step recipe a request gets: the model's own, or the best adapter at hand.

A model distilled for few steps (SD-Turbo, SDXS, DMD2, an LCM model…) is always sampled
its way. An ordinary model in fast mode gets the best few-step LoRA in the LoRA folder
(:func:`~tools.engines.diffusers.fastmodels.families.best_adapter`) or, when there is
none, the family's LCM LoRA (downloaded once), each at its fewest clean steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.core.settings import Settings
from tools.engines.diffusers.fastmodels.families import (
    FAMILIES,
    FewStep,
    best_adapter,
    detect_adapter,
    detect_model,
)
from tools.engines.diffusers.models import ModelSource, detect_family

log = logging.getLogger(__name__)

MAX_STEPS = 8  # a few-step request asking for more gets the recipe's own count
MAX_CFG = 1.5  # a few-step request asking for more gets the recipe's CFG


@dataclass(frozen=True)
class Recipe:
    """How to sample one request: the family, and whether the model itself is distilled
    (``adapter`` is then None) or a LoRA adds the few-step skill (its file, if local)."""

    family: FewStep
    distilled: bool
    adapter: Path | None = None


def model_recipe(source: ModelSource) -> Recipe | None:
    """The recipe of a distilled model; None for an ordinary one."""
    found = detect_model(source.path, source.name)
    return Recipe(found, True) if found is not None else None


def fast_recipe(settings: Settings, source: ModelSource) -> Recipe:
    """The recipe fast mode uses for ``source`` (see the module docstring)."""
    own = model_recipe(source)
    if own is not None:
        return own
    ref = settings.fast_lora.strip()
    if ref.lower() in ("", "off", "none"):
        return Recipe(FAMILIES["lcm-lora"], False)
    if ref.lower() != "auto":
        local = Path(ref).expanduser()
        kind = detect_adapter(local) if local.is_file() else None
        return Recipe(kind or FAMILIES["lcm-lora"], False, local if local.is_file() else None)
    try:
        family = detect_family(source)
    except Exception as err:  # an unreadable model fails later, with its own message
        log.debug("family unknown for the fast adapter: %s", err)
        family = "sd15"
    best = best_adapter(settings.lora_dir, family)
    if best is not None:
        return Recipe(best[1], False, best[0])
    return Recipe(FAMILIES["lcm-lora"], False)


def overrides(recipe: Recipe, steps: int, cfg: float, wanted_steps: int = 0
              ) -> dict[str, Any]:
    """Request fields for ``recipe``: its sampler, the request's steps and CFG where they
    already fit a few-step model, else the recipe's (``wanted_steps`` > 0 overrides its
    step count, e.g. a preset or the fast-steps setting)."""
    family = recipe.family
    return {
        "sampler": family.sampler,
        "steps": steps if steps <= MAX_STEPS else (wanted_steps or family.steps),
        "cfg_scale": cfg if cfg <= MAX_CFG else family.cfg,
    }
