"""Hires fix and upscalers as the chat sees them: the panel's hires and inpaint-area
values as request overrides, the pixel budget of an inpaint, and the "Upscale ×2"
button's upscaler (the best model present, or Lanczos, said which; the engine runs it
inside the queued job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.core.messages import msg
from tools.core.request import MAX_PIXELS
from tools.engines.upscalers.folder import best_upscaler

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


def upscale_with(upscalers_dir: Path | None, lang: str) -> tuple[str | None, str]:
    """The "Upscale ×2" button's upscaler and what to tell the person: the best upscaler
    model present (the engine enlarges the picture with it inside the job, see
    ``ImageRequest.init_upscaler``), or None (it enlarges with Lanczos) and where to put
    a model."""
    best = best_upscaler(upscalers_dir)
    if best is None:
        return None, msg("upscale_without_model", lang)
    return best.name, msg("upscale_with_model", lang, name=best.name)
