"""A tiny random-weight ESRGAN (old RRDB layout, 8 filters, 1 block) saved as ``.pth``,
built offline with spandrel's own architecture class: the shape real 4x-UltraSharp /
Real-ESRGAN files have, small enough to run in milliseconds."""

from __future__ import annotations

from pathlib import Path


def build_tiny_esrgan(path: Path, scale: int = 2, seed: int = 0) -> Path:
    import torch

    from tools.engines.upscalers.tiled import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path
