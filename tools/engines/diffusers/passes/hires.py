"""A1111's hires fix: a first pass at the requested (native) size, an upscale, and a
second img2img pass at the target size with its own steps and denoising strength.

1. first pass — txt2img at ``width`` x ``height``, as without hires fix;
2. upscale — ``Latent*``: the first image's latents (VAE-encoded) interpolated to the
   target (A1111's latent modes; ``antialiased``/``bicubic``/``nearest`` as named);
   ``Lanczos``/``Nearest``: the picture resized; any other name: that upscaler model from
   the upscalers folder (:mod:`tools.engines.upscalers`), tiled;
3. second pass — img2img at the target size, one image per first-pass image with its
   seed, ``hires.steps`` (0 = the first pass's) at ``hires.denoising``.

The result carries the request as asked (first-pass size plus ``hires``), the time of
both passes and the larger peak memory, so the infotext and the ledger record both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.request import LATENT_UPSCALERS, HiresFix
from tools.engines.diffusers.plan import Plan
from tools.engines.upscalers.folder import find_upscaler, list_upscalers

RunPass = Callable[[Plan], list[GeneratedImage]]
FIRST_PASS = Path("hires-first-pass.png")  # names the second pass's init; never opened
_PIL = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST,
        "None": Image.Resampling.LANCZOS}
_LATENT_MODES = {"Latent": ("bilinear", False), "Latent (antialiased)": ("bilinear", True),
                 "Latent (bicubic)": ("bicubic", False),
                 "Latent (bicubic antialiased)": ("bicubic", True),
                 "Latent (nearest)": ("nearest", False),
                 "Latent (nearest-exact)": ("nearest-exact", False)}


def check_hires(hires: HiresFix, steps: int, upscalers_dir: Path | None) -> Path | None:
    """Reject a hires fix that cannot run, before any weights load; returns the upscaler
    model's file when one is named."""
    second = hires.steps or steps
    if int(second * hires.denoising) < 1:
        raise InvalidRequest.of("engine_diffusers_no_denoising_step",
                                strength=hires.denoising, steps=second)
    if hires.upscaler in LATENT_UPSCALERS or hires.upscaler in _PIL:
        return None
    found = find_upscaler(upscalers_dir, hires.upscaler)
    if found is None:
        names = [f.name for f in list_upscalers(upscalers_dir)][:8]
        raise InvalidRequest.of("hires_unknown_upscaler", name=hires.upscaler,
                                known=", ".join(["Latent", "Lanczos", *names]))
    return found.path


def latent_upscale(pipe: Any, image: Image.Image, size: tuple[int, int], mode: str) -> Any:
    """``image``'s latents, scaled to ``size`` (pixels) with A1111's latent ``mode``."""
    import torch

    method, antialias = _LATENT_MODES[mode]
    vae = pipe.vae
    dtype = vae.dtype
    # An fp16 SDXL VAE overflows: encode in fp32 as diffusers' own img2img does.
    upcast = dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        pixels = pipe.image_processor.preprocess(image).to(vae.device, vae.dtype)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
    finally:
        if upcast:
            vae.to(dtype)
    factor = int(pipe.vae_scale_factor)
    kwargs = {"antialias": antialias} if method in ("bilinear", "bicubic") else {}
    return torch.nn.functional.interpolate(
        latents, size=(size[1] // factor, size[0] // factor), mode=method, **kwargs
    )


def run_hires(plan: Plan, run: RunPass, pipe_for_img2img: Callable[[], Any],
              upscale_with: Callable[[Path, Image.Image, float], Image.Image],
              upscalers_dir: Path | None) -> list[GeneratedImage]:
    """Steps 1-3 above; ``run`` runs one plan through the engine's steps 3-5."""
    req = plan.request
    hires = req.hires
    assert hires is not None
    model_file = check_hires(hires, req.steps, upscalers_dir)
    target = hires.target(req.width, req.height)
    first = run(replace(plan, request=req.model_copy(update={"hires": None})))
    out = []
    for gen in first:
        if hires.upscaler in LATENT_UPSCALERS:
            init: Any = latent_upscale(pipe_for_img2img(), gen.image, target, hires.upscaler)
        elif model_file is not None:
            init = upscale_with(model_file, gen.image, hires.scale).resize(
                target, Image.Resampling.LANCZOS)
        else:
            init = gen.image.resize(target, _PIL[hires.upscaler])
        second_req = req.model_copy(update={
            "hires": None, "init_image": FIRST_PASS, "strength": hires.denoising,
            "steps": hires.steps or req.steps, "width": target[0], "height": target[1],
            "seed": gen.seed, "batch_size": 1})
        [done] = run(replace(plan, request=second_req, init=init, mask=None))
        out.append(replace(
            done, request=req.model_copy(update={"seed": gen.seed, "batch_size": 1}),
            duration_s=gen.duration_s / len(first) + done.duration_s,
            extra={**gen.extra, **done.extra},
            peak_memory=_larger(gen.peak_memory, done.peak_memory)))
    return out


def _larger(a: str, b: str) -> str:
    """The larger of two peak reports ("peak 3.2 GiB VRAM"), by their number."""

    def value(text: str) -> float:
        for word in text.split():
            try:
                return float(word)
            except ValueError:
                continue
        return 0.0

    return a if value(a) >= value(b) else b
