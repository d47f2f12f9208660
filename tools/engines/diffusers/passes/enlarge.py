"""The "Upscale ×2" button's first step, inside the job: the init image enlarged to the
request's size by ``request.init_upscaler`` before the img2img pass.

An upscaler model (a file stem in the upscalers folder, :mod:`tools.engines.upscalers`)
runs tiled on the engine's device under the engine's run lock, so it never fights a
running job for the cores or the GPU, waits its turn in the queue like any picture and
is dropped by a cancel before it starts; ``Lanczos``/``Nearest`` resize the picture (as
img2img does anyway). The name stays on the request, so the infotext ("Init upscaler")
and the ledger's record say how the init was made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PIL import Image

from tools.core.errors import InvalidRequest
from tools.engines.diffusers.plan import Plan
from tools.engines.upscalers.folder import find_upscaler, list_upscalers

PIXEL_UPSCALERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}


def check_init_upscaler(name: str | None, upscalers_dir: Path | None) -> Path | None:
    """The model file ``name`` stands for (None for none or a pixel resize); an unknown
    name is a clear error before any weights load."""
    if name is None or name in PIXEL_UPSCALERS:
        return None
    found = find_upscaler(upscalers_dir, name)
    if found is None:
        names = [f.name for f in list_upscalers(upscalers_dir)][:8]
        raise InvalidRequest.of("hires_unknown_upscaler", name=name,
                                known=", ".join(["Lanczos", "Nearest", *names]))
    return found.path


def enlarge_init(plan: Plan, upscale_with: Callable[[Path, Image.Image, float], Image.Image],
                 upscalers_dir: Path | None) -> Plan:
    """``plan`` with its init image made by the request's upscaler from the original
    picture (unchanged without one)."""
    req = plan.request
    model = check_init_upscaler(req.init_upscaler, upscalers_dir)
    if req.init_upscaler is None or req.init_image is None:
        return plan
    with Image.open(req.init_image) as im:
        source = im.convert("RGB")
    size = (req.width, req.height)
    if model is None:
        return replace(plan, init=source.resize(size, PIXEL_UPSCALERS[req.init_upscaler]))
    scale = max(req.width / source.width, req.height / source.height)
    big = upscale_with(model, source, scale)
    if big.size != size:  # a 4× model, or sides that are not multiples of 8
        big = big.resize(size, Image.Resampling.LANCZOS)
    return replace(plan, init=big)
