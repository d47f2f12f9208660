"""The init image a remote engine sends, enlarged here when the request says how.

"Upscale ×2" asks for img2img at twice the size from a picture enlarged by an upscaler
model (``ImageRequest.init_upscaler``). AUTOMATIC1111's img2img API has no field for
that (its "SD upscale" script tiles the img2img itself, which is another result) and
the built-in ComfyUI workflow no node for it; the model is in *this* machine's upscalers
folder, which the server need not have. So the picture is enlarged here, on the CPU,
inside the queued job, and sent at the request's size, as any init image is.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tools.core.errors import EngineError, InvalidRequest
from tools.core.request import ImageRequest
from tools.engines.remote.http import load_input_image
from tools.engines.upscalers.folder import find_upscaler, list_upscalers


def init_picture(request: ImageRequest, upscalers_dir: Path | None) -> Image.Image:
    """``request``'s init image at its size: enlarged by its ``init_upscaler`` model, or
    resized (Lanczos; Nearest when asked)."""
    assert request.init_image is not None
    size = (request.width, request.height)
    name = request.init_upscaler
    if name is None or name == "Lanczos":
        return load_input_image(request.init_image, size)
    if name == "Nearest":
        return _open(request.init_image).resize(size, Image.Resampling.NEAREST)
    found = find_upscaler(upscalers_dir, name)
    if found is None:
        names = [f.name for f in list_upscalers(upscalers_dir)][:8]
        raise InvalidRequest.of("hires_unknown_upscaler", name=name,
                                known=", ".join(["Lanczos", "Nearest", *names]))
    from tools.engines.upscalers.tiled import load_upscaler  # torch only when used

    source = _open(request.init_image)
    scale = max(size[0] / source.width, size[1] / source.height)
    big = load_upscaler(found.path, "cpu").upscale(source, scale)
    return big if big.size == size else big.resize(size, Image.Resampling.LANCZOS)


def _open(path: Path) -> Image.Image:
    """The picture at ``path`` at its own size (a clear error when it can't be read)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as err:
        raise EngineError.of("engine_remote_input_unreadable", name=path.name, error=err) from err
