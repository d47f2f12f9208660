"""Hires fix and upscalers as the chat sees them: the panel's hires and inpaint-area
values as request overrides, the pixel budget of an inpaint, and the "Upscale ×2"
button's first step (the best upscaler model present, or Lanczos, said which)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from tools.core.messages import msg
from tools.core.request import MAX_PIXELS
from tools.engines.upscalers.folder import best_upscaler
from tools.engines.upscalers.tiled import upscale_file

HIRES_SCALES = ["off", "1.5", "2"]
HIRES_STEPS = ["0", "10", "15", "20"]
HIRES_DENOISING = ["0.3", "0.4", "0.5", "0.6", "0.7"]
INPAINT_AREAS = ["auto", "masked", "whole"]


def hires_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """The panel's hires fix and inpaint area as request fields ({} when off/auto)."""
    out: dict[str, Any] = {}
    scale = str(values.get("hires_scale", "off"))
    if scale in HIRES_SCALES[1:]:
        out["hires"] = {
            "scale": float(scale),
            "upscaler": str(values.get("hires_upscaler") or "Latent").strip() or "Latent",
            "steps": int(float(values.get("hires_steps") or 0)),
            "denoising": float(values.get("hires_denoising") or 0.5),
        }
    if values.get("inpaint_area") in INPAINT_AREAS[1:]:
        out["inpaint_area"] = values["inpaint_area"]
    return out


def inpaint_pixels(whole_budget: int, panel_area: str | None, setting: str) -> int:
    """The pixel budget of an inpaint request: the picture's own size (up to the engine's
    limit) when the engine inpaints only the masked area, else ``whole_budget``."""
    area = panel_area if panel_area in INPAINT_AREAS[1:] else setting
    return whole_budget if area == "whole" else MAX_PIXELS


async def upscaled_init(source: Path, scale: float, upscalers_dir: Path | None,
                        lang: str) -> tuple[Path, str]:
    """The "Upscale ×2" button's init image and what to tell the person: the picture
    enlarged by the best upscaler model present (a temporary PNG), or ``source`` itself
    (the engine then enlarges it with Lanczos) when there is none."""
    best = best_upscaler(upscalers_dir)
    if best is None:
        return source, msg("upscale_without_model", lang)
    with tempfile.NamedTemporaryFile(prefix="egaki-upscaled-", suffix=".png", delete=False) as f:
        dest = Path(f.name)
    await asyncio.to_thread(upscale_file, best.path, source, dest, scale, "auto")
    return dest, msg("upscale_with_model", lang, name=best.name)
