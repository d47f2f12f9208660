"""Inpaint only the masked area, at the model's own resolution (A1111 "Inpaint area: only
masked" with padding; Fooocus and InvokeAI do the same).

Pure image math on PIL images, then one hook for the engine:

1. :func:`masked_box` — the mask's bounding box plus ``padding`` px, inside the picture;
2. :func:`working_size` — the model's native pixel count at the box's aspect ratio, sides
   multiples of 64 (the OpenVINO and compiled paths take those shapes);
3. :func:`grow_to_aspect` — the box grown to exactly that aspect ratio (A1111's
   ``expand_crop_region``), so the crop scales without distortion;
4. :func:`blend_back` — the inpainted crop scaled back and blended into the full-size
   original through a feathered mask. Pixels outside the mask grown by the feather stay
   byte-identical: the blend's alpha is zero there by construction.

:func:`crop_plan` applies 1-3 to a diffusers :class:`~..plan.Plan`; :meth:`Crop.paste`
applies 4 to its results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from PIL import Image, ImageChops, ImageFilter

from tools.core.engine import GeneratedImage

if TYPE_CHECKING:  # the pure math needs no engine (the A1111 engine uses it too)
    from tools.engines.diffusers.plan import Plan

Box = tuple[int, int, int, int]  # left, top, right, bottom (right/bottom exclusive)
MULTIPLE = 64
AUTO_ABOVE = 1.5  # "auto" crops pictures with more than 1.5x the native square's pixels


def native_side(pipe: object) -> int:
    """The model's native side in pixels: UNet sample size x VAE scale (512 SD1.x, 1024 SDXL)."""
    unet = getattr(pipe, "unet", None)
    sample = int(getattr(getattr(unet, "config", None), "sample_size", 64) or 64)
    return sample * int(getattr(pipe, "vae_scale_factor", 8) or 8)


def masked_box(mask: Image.Image, padding: int) -> Box | None:
    """The bounding box of the mask's non-black pixels plus ``padding``; None when empty."""
    box = mask.convert("L").point(lambda v: 255 if v else 0).getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    w, h = mask.size
    return (max(0, left - padding), max(0, top - padding),
            min(w, right + padding), min(h, bottom + padding))


def working_size(aspect: float, native: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """About ``native``² pixels at ``aspect`` (w/h), sides multiples of ``multiple``."""
    width = math.sqrt(native * native * aspect)
    height = width / aspect
    return (max(multiple, round(width / multiple) * multiple),
            max(multiple, round(height / multiple) * multiple))


def grow_to_aspect(box: Box, aspect: float, size: tuple[int, int]) -> Box:
    """``box`` grown (never shrunk) to ``aspect`` (w/h), centred, kept inside ``size``
    when it fits; when the picture is too small in one direction the box takes all of it."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if width / height < aspect:
        want_w, want_h = min(size[0], round(height * aspect)), height
    else:
        want_w, want_h = width, min(size[1], round(width / aspect))
    xs, ys = _span(left, right, want_w, size[0]), _span(top, bottom, want_h, size[1])
    return xs[0], ys[0], xs[1], ys[1]


def _span(lo: int, hi: int, want: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown around its centre to ``want``, shifted to stay within [0, limit)."""
    extra = want - (hi - lo)
    lo -= extra // 2
    hi += extra - extra // 2
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > limit:
        lo, hi = max(0, lo - (hi - limit)), limit
    return lo, hi


def feather_for(box: Box, work: tuple[int, int]) -> int:
    """Feather width at full size: A1111's 4 px mask blur, more when the crop was enlarged."""
    scale = (box[2] - box[0]) / work[0]
    return max(4, math.ceil(4 * scale))


def blend_alpha(mask: Image.Image, feather: int) -> Image.Image:
    """1 inside the mask, fading to 0 over about ``feather`` px outside, exactly 0 beyond
    the mask grown by ``2 * feather`` (so those pixels are never touched)."""
    binary = mask.convert("L").point(lambda v: 255 if v else 0)
    grown = binary.filter(ImageFilter.MaxFilter(2 * feather + 1)) if feather else binary
    soft = ImageChops.lighter(binary, grown.filter(ImageFilter.GaussianBlur(feather / 2)))
    margin = binary.filter(ImageFilter.MaxFilter(4 * feather + 1)) if feather else binary
    return ImageChops.multiply(soft, margin)


def blend_back(original: Image.Image, painted: Image.Image, mask: Image.Image, box: Box,
               feather: int) -> Image.Image:
    """``painted`` (the crop at working size) scaled to ``box`` and blended into a copy of
    ``original`` through the feathered ``mask`` (full size)."""
    patch = painted.convert("RGB").resize((box[2] - box[0], box[3] - box[1]),
                                          Image.Resampling.LANCZOS)
    out = original.convert("RGB").copy()
    region = out.crop(box)
    alpha = blend_alpha(mask.crop(box), feather)
    out.paste(Image.composite(patch, region, alpha), box[:2])
    return out


@dataclass(frozen=True)
class Crop:
    """A plan's masked area: the crop ``box`` in the full picture, worked at ``size``."""

    full: Plan  # the plan as asked (full-size init and mask)
    plan: Plan  # the plan the pipeline runs (the crop at ``size``)
    box: Box
    size: tuple[int, int]

    def paste(self, results: list[GeneratedImage]) -> list[GeneratedImage]:
        """Each result blended into the full-size original, reported with the full request."""
        assert self.full.init is not None and self.full.mask is not None
        feather = feather_for(self.box, self.size)
        out = []
        for gen in results:
            image = blend_back(self.full.init, gen.image, self.full.mask, self.box, feather)
            request = self.full.request.model_copy(update={"seed": gen.seed, "batch_size": 1})
            extra = {**gen.extra, "Inpaint area": "Only masked",
                     "Masked area padding": str(self.full.request.inpaint_padding)}
            out.append(replace(gen, image=image, request=request, extra=extra))
        return out


def wants_crop(area: str, size: tuple[int, int], native: int) -> bool:
    """Whether to inpaint only the masked area: always for "masked", never for "whole";
    "auto" when the picture has more than :data:`AUTO_ABOVE` times the native square."""
    if area == "auto":
        return size[0] * size[1] > AUTO_ABOVE * native * native
    return area == "masked"


def crop_plan(plan: Plan, native: int, area: str | None = None) -> Crop | None:
    """The plan for the masked area at the native working size, or None to inpaint the
    whole picture (not inpainting, "whole", a small picture under "auto", an empty mask).

    ``area`` overrides the request's ``inpaint_area`` when the request leaves it "auto"."""
    req = plan.request
    if req.mode != "inpaint" or plan.init is None or plan.mask is None:
        return None
    if req.controls:  # a control map covers the whole picture, not the crop
        return None
    choice = req.inpaint_area if req.inpaint_area != "auto" else (area or "auto")
    if not wants_crop(choice, plan.init.size, native):
        return None
    box = masked_box(plan.mask, req.inpaint_padding)
    if box is None:
        return None
    size = working_size((box[2] - box[0]) / (box[3] - box[1]), native)
    box = grow_to_aspect(box, size[0] / size[1], plan.init.size)
    init = plan.init.crop(box).resize(size, Image.Resampling.LANCZOS)
    mask = plan.mask.crop(box).resize(size, Image.Resampling.BILINEAR)
    work = req.model_copy(update={"width": size[0], "height": size[1]})
    return Crop(full=plan, plan=replace(plan, request=work, init=init, mask=mask),
                box=box, size=size)
