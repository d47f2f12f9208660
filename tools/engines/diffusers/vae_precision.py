"""Decode SDXL without diffusers' fp32 VAE upcast, and tile decodes of large images.

SDXL's VAE overflows in fp16, so diffusers copies it to fp32 around every encode and
decode (``force_upcast``): slower, and at 1024² it is what pushes peak VRAM far above
ComfyUI's. bf16 has fp32's exponent range, so where the device computes bf16 the VAE is
kept in bf16 for good; latents are cast on the way in and diffusers casts results back.
A VAE without ``force_upcast`` (e.g. an fp16-fix VAE) is left alone.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class _CastInput:
    """``vae.encode`` / ``vae.decode`` that first casts its tensor to the VAE's dtype."""

    def __init__(self, vae: Any, method: str) -> None:
        self.vae, self.inner = vae, getattr(vae, method)

    def __call__(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return self.inner(x.to(self.vae.dtype), *args, **kwargs)


def bf16_supported(device: str) -> bool:
    import torch

    if device == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device == "cpu"  # slow but exact on any CPU (used by the CPU tests)


def keep_vae_in_bf16(vae: Any, device: str) -> bool:
    """Switch an fp16 ``force_upcast`` VAE to bf16 without upcasting; False if not done."""
    import torch

    if vae.dtype != torch.float16 or not getattr(vae.config, "force_upcast", False):
        return False
    if not bf16_supported(device):
        log.info("VAE stays fp16 with fp32 upcast: this device has no bf16")
        return False
    vae.to(torch.bfloat16)
    vae.register_to_config(force_upcast=False)
    for method in ("encode", "decode"):
        setattr(vae, method, _CastInput(vae, method))
    log.info("VAE kept in bf16 (no fp32 upcast per decode)")
    return True


def tile_large_decodes(vae: Any, width: int, height: int, above_px: int,
                       always: bool) -> None:
    """Decode in tiles when asked to, or when the image has more than ``above_px`` pixels."""
    want = always or (above_px > 0 and width * height > above_px)
    if want and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    elif not want and hasattr(vae, "disable_tiling"):
        vae.disable_tiling()
