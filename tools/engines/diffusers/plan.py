"""Step 1 of a diffusers job: plan it before any weights are touched.

:func:`plan_request` gives the request a concrete seed and clip skip, moves
``<lora:…>`` tags into ``loras`` and resolves their files, adds trigger words, applies
fast mode and few-step models (their sampler, steps and CFG), checks that
img2img/inpaint would run at least one step, opens the init image and mask at the
target size and resolves the model.
Everything it rejects is rejected in seconds, with a message that says what to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from tools.core.errors import EngineError, InvalidRequest
from tools.core.request import ImageRequest
from tools.core.samplers import SAMPLERS, build_scheduler
from tools.core.settings import Settings
from tools.engines.diffusers.fastmodels.profile import (
    fast_recipe,
    model_recipe,
    overrides,
)
from tools.engines.diffusers.lora import (
    ResolvedLora,
    add_trigger_words,
    extract_lora_tags,
    merge_loras,
    resolve_loras,
)
from tools.engines.diffusers.models import ModelSource


@dataclass
class Plan:
    """A validated job: everything decided before any weights are touched."""

    request: ImageRequest  # what to report: concrete seed, tags moved into ``loras``
    prompt: str  # what the text encoder sees (trigger words added)
    loras: list[ResolvedLora]
    source: ModelSource
    init: Image.Image | None
    mask: Image.Image | None
    tiny_decoder: bool
    scheduler: dict[str, Any] = field(default_factory=dict)  # a few-step recipe's config


def plan_request(
    request: ImageRequest,
    settings: Settings,
    resolve_model: Callable[[str | None], ModelSource],
) -> Plan:
    """Validate ``request`` and decide everything that needs no weights (see above)."""
    req = request.with_seed()
    prompt, tag_refs = extract_lora_tags(req.prompt)
    refs = merge_loras(req.loras, tag_refs)
    loras = resolve_loras(refs, settings.lora_dir)
    # Report the prompt the text encoder saw (trigger words in, tags out): pasted into
    # A1111 it gives the same result, and re-running it here adds no words twice.
    used = add_trigger_words(prompt, loras)
    update: dict[str, Any] = {"prompt": used or req.prompt, "loras": refs,
                              "clip_skip": req.clip_skip or settings.clip_skip}
    fast = req.fast or settings.fast_mode
    source = resolve_model(req.model)
    scheduler = _few_steps(req, settings, source, fast, update)
    req = req.model_copy(update=update)
    if req.mode != "txt2img" and int(req.steps * req.strength) < 1:
        raise InvalidRequest.of(
            "engine_diffusers_no_denoising_step", strength=req.strength, steps=req.steps
        )
    size = (req.width, req.height)
    return Plan(
        request=req,
        prompt=used,
        loras=loras,
        source=source,
        init=open_image(req.init_image, "RGB", size) if req.init_image else None,
        mask=open_image(req.mask_image, "L", size) if req.mask_image else None,
        tiny_decoder=fast or settings.decoder == "tiny",
        scheduler=scheduler,
    )


def _few_steps(req: ImageRequest, settings: Settings, source: ModelSource, fast: bool,
               update: dict[str, Any]) -> dict[str, Any]:
    """Fast mode, or a model distilled for few steps: the recipe's sampler, steps and CFG
    (see :mod:`tools.engines.diffusers.fastmodels`), keeping what already fits. Returns
    the scheduler config the recipe needs (e.g. trailing timesteps for Turbo)."""
    if fast:
        recipe = fast_recipe(settings, source)
        update.update(overrides(recipe, req.steps, req.cfg_scale, settings.fast_steps),
                      fast=True)
        return dict(recipe.family.scheduler)
    own = model_recipe(source)
    if own is None or req.steps <= 8:  # a few-step request already fits
        return {}
    update.update(overrides(own, req.steps, req.cfg_scale, own.family.balanced_steps))
    return dict(own.family.scheduler)


def open_image(path: Path, mode: str, size: tuple[int, int]) -> Image.Image:
    """Open, convert and resize an init image or mask (A1111 resizes to the target size)."""
    try:
        with Image.open(path) as raw:
            im = raw.convert(mode)
    except (OSError, UnidentifiedImageError) as err:
        raise InvalidRequest.of(
            "engine_diffusers_image_unreadable", name=path.name, error=type(err).__name__
        ) from err
    if im.size != size:
        smooth = Image.Resampling.LANCZOS if mode == "RGB" else Image.Resampling.BILINEAR
        im = im.resize(size, smooth)
    return im


def scheduler_for(sampler: str, base: dict[str, Any], seeds: list[int],
                  extra: dict[str, Any]) -> Any:
    """The scheduler for ``sampler`` from the model's own config, with the few-step
    recipe's ``extra`` settings on top."""
    config = dict(base) | extra
    if SAMPLERS[sampler].scheduler == "DPMSolverSDEScheduler":
        # Its Brownian-tree noise is seeded from config, not from the generators; one
        # seed per image keeps each image reproducible on its own.
        config["noise_sampler_seed"] = seeds if len(seeds) > 1 else seeds[0]
    try:
        return build_scheduler(sampler, config)
    except Exception as err:
        raise EngineError.of(
            "engine_diffusers_sampler_unusable", sampler=sampler, error=str(err)
        ) from err
