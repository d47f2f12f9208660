"""The hires-fix and inpaint-area fields of an A1111 infotext, written and read back.

A1111 writes, for a txt2img with hires fix (``modules/processing.py``)::

    Size: 512x512, Denoising strength: 0.5, Hires upscale: 2, Hires steps: 10,
    Hires upscaler: Latent

``Size`` is the *first* pass's size; ``Denoising strength`` is the second pass's;
``Hires steps`` is left out when 0 (as many as the first pass). An inpaint of only the
masked area adds ``Inpaint area: Only masked`` and ``Masked area padding: 32``. Egaki's
"Upscale ×2" (img2img from a picture enlarged by an upscaler model) adds its own
``Init upscaler: 4x-UltraSharp``; A1111 ignores keys it does not know.
"""

from __future__ import annotations

from tools.core.errors import InvalidRequest
from tools.core.request import ImageRequest

HIRES_KEYS = frozenset({"Hires upscale", "Hires upscaler", "Hires steps"})
INPAINT_KEYS = frozenset({"Inpaint area", "Masked area padding"})


def _num(value: float) -> str:
    return f"{value:g}"


def hires_params(req: ImageRequest) -> dict[str, object | None]:
    """The fields a hires-fix request adds (and the two it changes), and the upscaler
    that enlarged an init image ("Upscale ×2"); {} without either."""
    hires = req.hires
    if hires is None:
        return {"Init upscaler": req.init_upscaler} if req.init_upscaler else {}
    return {
        "Size": f"{req.width}x{req.height}",
        "Denoising strength": _num(hires.denoising),
        "Hires upscale": _num(hires.scale),
        "Hires steps": hires.steps or None,
        "Hires upscaler": hires.upscaler,
    }


def hires_from_params(params: dict[str, str]) -> dict[str, object]:
    """``{"hires": {...}}`` for request data when the infotext has ``Hires upscale``
    (``Denoising strength`` then belongs to the second pass); {} otherwise."""
    if "Hires upscale" not in params:
        return {}
    hires: dict[str, object] = {"upscaler": params.get("Hires upscaler", "Latent").strip()}
    for key, name, kind in (("Hires upscale", "scale", float), ("Hires steps", "steps", int),
                            ("Denoising strength", "denoising", float)):
        raw = params.get(key)
        if raw is None:
            continue
        try:
            hires[name] = kind(raw)
        except ValueError:
            raise InvalidRequest.of("infotext_not_a_number", key=key, value=raw) from None
    return {"hires": hires}
