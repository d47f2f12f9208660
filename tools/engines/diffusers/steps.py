"""The pieces of one diffusers job that need no engine state: what step 3 prepares and
step 4 yields (:class:`Prepared`, :class:`Denoised`), the pipeline's call arguments,
the checks between steps, and step 5 (:func:`finish`: one result per image)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tools.core.engine import GeneratedImage
from tools.core.errors import GenerationCancelled, InvalidRequest
from tools.core.request import ImageRequest
from tools.engines.diffusers.lora import ResolvedLora
from tools.engines.diffusers.models import lora_hash, model_hash
from tools.engines.diffusers.pipeline_cache import LoadedModel
from tools.engines.diffusers.plan import Plan

StepEnd = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


def check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled.of("engine_diffusers_stopped")


@dataclass
class Prepared:
    """Step 3's outcome: the pipeline set up for one job and what the later steps need."""

    pipe: Any
    seeds: list[int]  # one per image: seed, seed+1, … (wrapped to valid A1111 seeds)
    extra: dict[str, str]  # A1111 ``extra_generation_params`` for the infotext
    tiny: Any | None  # TAESD decoding the result (fast/tiny mode), else the full VAE does
    preview_vae: Any | None  # TAESD for step previews, when available
    control: dict[str, Any] = field(default_factory=dict)  # ControlNet __call__ arguments


@dataclass
class Denoised:
    """Step 4's outcome: the decoded images and what the run cost."""

    images: list[Image.Image]
    elapsed: float
    peak: str


def finish(loaded: LoadedModel, plan: Plan, prepared: Prepared, denoised: Denoised,
           cache_dir: Path) -> list[GeneratedImage]:
    """Step 5: inpaint compositing, the model hash, one result per image."""
    req, images = plan.request, denoised.images
    if req.mode == "inpaint" and plan.init is not None and plan.mask is not None:
        images = [Image.composite(im, plan.init, plan.mask) for im in images]
    if loaded.hash is None:
        loaded.hash = model_hash(loaded.source, cache_dir)
    return [
        GeneratedImage(
            image=image,
            request=req.model_copy(update={"seed": seed, "batch_size": 1}),
            seed=seed,
            model_name=loaded.source.name,
            model_hash=loaded.hash,
            duration_s=denoised.elapsed,
            extra=dict(prepared.extra),
            peak_memory=denoised.peak,
        )
        for image, seed in zip(images, prepared.seeds, strict=True)
    ]


def lora_hashes(loras: list[ResolvedLora], cache_dir: Path) -> dict[str, str]:
    """A1111 ``extra_generation_params`` for the PNG infotext (e.g. "Lora hashes")."""
    extra: dict[str, str] = {}
    hashes = [
        f"{lo.name.replace(':', '').replace(',', '')}: {h}"
        for lo in loras
        if (h := lora_hash(lo.path, cache_dir))
    ]
    if hashes:
        extra["Lora hashes"] = ", ".join(hashes)
    return extra


def check_mode(loaded: LoadedModel, req: ImageRequest) -> None:
    """An inpainting checkpoint can only inpaint: say so before any work."""
    if loaded.is_inpaint_model and req.mode != "inpaint":
        raise InvalidRequest.of("engine_diffusers_inpaint_only", model=loaded.source.name)


def pipe_kwargs(plan: Plan, prepared: Prepared, step_end: StepEnd) -> dict[str, Any]:
    """The pipeline's ``__call__`` arguments for ``plan``'s mode."""
    import torch

    req, mode = plan.request, plan.request.mode
    kwargs: dict[str, Any] = {
        "prompt": plan.prompt,
        "negative_prompt": req.negative_prompt or None,
        "num_inference_steps": req.steps,
        "guidance_scale": req.cfg_scale,
        "num_images_per_prompt": req.batch_size,
        "generator": [torch.Generator("cpu").manual_seed(s) for s in prepared.seeds],
        "callback_on_step_end": step_end,
        # With TAESD the pipeline stops at the latents; _denoise decodes them.
        "output_type": "latent" if prepared.tiny is not None else "pil",
    }
    if mode != "img2img":  # img2img takes its size from the (resized) init image
        kwargs.update(width=req.width, height=req.height)
    if mode != "txt2img":
        kwargs.update(image=plan.init, strength=req.strength)
    if mode == "inpaint":
        kwargs["mask_image"] = plan.mask
    kwargs.update(prepared.control)
    return kwargs
