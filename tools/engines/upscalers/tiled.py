"""Load an upscaler with ``spandrel`` and upscale a picture in overlapping tiles.

Tiles of ``tile`` px overlap by ``overlap`` px; each output tile is weighted by a ramp
that fades over the overlap, so seams vanish and memory stays flat however large the
picture (one tile's activations at a time). ``tile=0`` runs the whole picture at once.

``spandrel`` imports ``torchvision`` for two restoration architectures (LaMa,
RestoreFormer) that Egaki never uses. When no working torchvision is installed (PyPI's
Linux torchvision is built for CUDA torch and fails to load with the CPU build), a tiny
stand-in serves that one import and is removed again at once, so nothing else sees it.
"""

from __future__ import annotations

import enum
import functools
import sys
import types
from pathlib import Path
from typing import Any

from PIL import Image

from tools.core.errors import EngineError, InvalidRequest
from tools.core.imports import HEAVY_IMPORTS

TILE = 256
OVERLAP = 32
_STUBS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _stand_in() -> dict[str, types.ModuleType]:
    """Modules that satisfy spandrel's import-time use of torchvision (never called)."""

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not installed")

    functional = types.ModuleType(_STUBS[2])
    functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = functional.normalize = unavailable  # type: ignore[attr-defined]
    transforms = types.ModuleType(_STUBS[1])
    transforms.functional = functional  # type: ignore[attr-defined]
    root = types.ModuleType(_STUBS[0])
    root.transforms = transforms  # type: ignore[attr-defined]
    return dict(zip(_STUBS, (root, transforms, functional), strict=True))


def import_spandrel() -> Any:
    """``spandrel``, imported once under the heavy-import lock (see the module doc)."""
    with HEAVY_IMPORTS:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        try:
            import torchvision.transforms.functional  # noqa: F401
        except Exception:  # missing, or built for another torch (RuntimeError at import)
            for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
                del sys.modules[name]
            stubs = _stand_in()
            sys.modules.update(stubs)
            try:
                import spandrel
            finally:
                for name, module in stubs.items():
                    if sys.modules.get(name) is module:
                        del sys.modules[name]
            return spandrel
        import spandrel

        return spandrel


class Upscaler:
    """One loaded upscaler model: ``upscale(image, scale)`` gives ``scale`` x the size."""

    def __init__(self, path: Path, device: str = "cpu", *, tile: int = TILE,
                 overlap: int = OVERLAP) -> None:
        spandrel = import_spandrel()
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            model = spandrel.ModelLoader(device=device).load_from_file(path)
        except Exception as err:
            raise InvalidRequest.of("upscaler_unreadable", name=path.stem,
                                    error=type(err).__name__) from err
        if not isinstance(model, spandrel.ImageModelDescriptor):
            raise InvalidRequest.of("upscaler_not_image_model", name=path.stem)
        self.name = path.stem
        self.model = model.eval()
        self.scale = int(model.scale)
        self.device = device
        self.tile = tile
        self.overlap = overlap

    def upscale(self, image: Image.Image, scale: float | None = None) -> Image.Image:
        """``image`` upscaled by the model, then resized to ``scale`` x (default: the
        model's own factor) with Lanczos."""
        import numpy as np
        import torch

        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(self.device)
        try:
            y = self.run_tiled(x)
        except torch.OutOfMemoryError as err:
            raise EngineError.of("engine_diffusers_out_of_memory") from err
        out = (y[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round()
        result = Image.fromarray(out.astype(np.uint8))
        if scale is not None and scale != self.scale:
            size = (round(image.width * scale), round(image.height * scale))
            result = result.resize(size, Image.Resampling.LANCZOS)
        return result

    def run_tiled(self, x: Any) -> Any:
        """The model over ``x`` (1, 3, H, W) in overlapping tiles, blended with ramps."""
        import torch

        _, _, h, w = x.shape
        s, tile, overlap = self.scale, self.tile, self.overlap
        if not tile or (h <= tile and w <= tile):
            return self.model(x)
        out = torch.zeros((1, 3, h * s, w * s), dtype=x.dtype, device=x.device)
        weight = torch.zeros((1, 1, h * s, w * s), dtype=x.dtype, device=x.device)
        for top in _starts(h, tile, overlap):
            for left in _starts(w, tile, overlap):
                th, tw = min(tile, h - top), min(tile, w - left)
                piece = self.model(x[:, :, top:top + th, left:left + tw])
                ramp = _ramp(th * s, tw * s, overlap * s, top > 0, left > 0,
                             top + th < h, left + tw < w, x)
                out[:, :, top * s:(top + th) * s, left * s:(left + tw) * s] += piece * ramp
                weight[:, :, top * s:(top + th) * s, left * s:(left + tw) * s] += ramp
        return out / weight


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``length`` with at least ``overlap`` between neighbours."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = [*range(0, length - tile, step), length - tile]
    return sorted(set(starts))


def _ramp(h: int, w: int, fade: int, top: bool, left: bool, bottom: bool, right: bool,
          like: Any) -> Any:
    """Weights 1 in the middle, fading linearly over ``fade`` px on sides with a neighbour."""
    import torch

    def axis(n: int, start: bool, end: bool) -> Any:
        r = torch.ones(n, dtype=like.dtype, device=like.device)
        k = min(fade, n // 2)
        if k:
            edge = torch.linspace(1.0 / (k + 1), k / (k + 1), k, dtype=like.dtype,
                                  device=like.device)
            if start:
                r[:k] = edge
            if end:
                r[n - k:] = edge.flip(0)
        return r

    return (axis(h, top, bottom)[:, None] * axis(w, left, right)[None, :])[None, None]


@functools.lru_cache(maxsize=1)
def _cached(path: Path, mtime: float, device: str) -> Upscaler:
    return Upscaler(path, device)


def load_upscaler(path: Path, device: str = "auto") -> Upscaler:
    """The upscaler at ``path``, kept loaded while the same file is asked for again (a
    hires batch upscales every image with it); one model at a time."""
    return _cached(path, path.stat().st_mtime, device)

