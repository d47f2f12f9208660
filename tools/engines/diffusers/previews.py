"""The tiny autoencoder (TAESD) and step previews.

TAESD decodes SD latents about 100x faster than the full VAE at slightly lower quality:
fast mode uses it for final images and, when it is available, it also renders step
previews. Without it, previews use a fixed linear map from the four latent channels to
RGB (the "approx cheap" preview of A1111/ComfyUI) — blurry but free.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PIL import Image

from tools.core.settings import Settings
from tools.engines.diffusers.models import ModelFamily

log = logging.getLogger(__name__)

DEFAULT_TAESD = "madebyollin/taesd"
TAESD_FOR_SDXL = "madebyollin/taesdxl"

# Latent channel → RGB weights (from ComfyUI's latent_formats.py).
_RGB_FACTORS: dict[str, list[list[float]]] = {
    "sd15": [
        [0.3512, 0.2297, 0.3227],
        [0.3250, 0.4974, 0.2350],
        [-0.2829, 0.1762, 0.2721],
        [-0.2120, -0.2616, -0.7177],
    ],
    "sdxl": [
        [0.3920, 0.4054, 0.4549],
        [-0.2634, -0.0196, 0.0653],
        [0.0568, 0.1687, -0.0755],
        [-0.3112, -0.2359, -0.2076],
    ],
}


def tiny_vae_ref(settings: Settings, family: ModelFamily) -> str:
    """The TAESD to use: the setting, swapped for TAESDXL when the default meets SDXL."""
    ref = settings.tiny_vae_model.strip()
    return TAESD_FOR_SDXL if family == "sdxl" and ref == DEFAULT_TAESD else ref


def load_tiny_vae(
    settings: Settings, family: ModelFamily, device: str, dtype: Any
) -> tuple[Any | None, str]:
    """(AutoencoderTiny, "") or (None, why not). Never raises: callers fall back."""
    from diffusers import AutoencoderTiny

    ref = tiny_vae_ref(settings, family)
    if not ref:
        return None, "no tiny VAE is configured"
    local = Path(ref).expanduser()
    try:
        if local.is_dir():
            vae = AutoencoderTiny.from_pretrained(local, local_files_only=True, torch_dtype=dtype)
        else:
            vae = AutoencoderTiny.from_pretrained(
                ref, cache_dir=settings.hf_cache_dir, local_files_only=settings.offline,
                torch_dtype=dtype,
            )
    except Exception as err:
        where = "not in the local cache (offline mode)" if settings.offline else "not loadable"
        return None, f"tiny VAE {ref} is {where}: {type(err).__name__}"
    return vae.to(device).eval(), ""


def _to_image(rgb: Any) -> Image.Image:
    """(3, H, W) in [-1, 1] → PIL."""
    arr = ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
    return Image.fromarray(arr.cpu().numpy())


def approx_preview(latents: Any, family: ModelFamily) -> Image.Image:
    """A cheap preview of the first latent of a batch (1/8 of the image size)."""
    import torch

    weights = torch.tensor(_RGB_FACTORS[family], dtype=torch.float32)
    lat = latents[0].detach().float().cpu()
    return _to_image(torch.einsum("chw,cr->rhw", lat, weights))


def tiny_preview(latents: Any, tiny_vae: Any) -> Image.Image:
    """A TAESD-decoded preview of the first latent of a batch (full image size)."""
    import torch

    param = next(tiny_vae.parameters())
    with torch.no_grad():
        sample = tiny_vae.decode(latents[:1].to(param.device, param.dtype)).sample[0]
    return _to_image(sample)


def tiny_decode(latents: Any, tiny_vae: Any, image_processor: Any) -> list[Image.Image]:
    """Final images from a pipeline's ``output_type="latent"`` result, decoded by TAESD.

    Decoding outside the pipeline (instead of swapping ``pipe.vae``) leaves the pipeline,
    its CPU-offload hooks and the img2img encoder untouched.
    """
    import torch

    param = next(tiny_vae.parameters())
    scale = float(getattr(tiny_vae.config, "scaling_factor", 1.0))
    with torch.no_grad():
        images = tiny_vae.decode(latents.to(param.device, param.dtype) / scale).sample
    return list(image_processor.postprocess(images.float(), output_type="pil"))


def make_preview(latents: Any, family: ModelFamily, tiny_vae: Any | None) -> Image.Image | None:
    """Best available preview; None if even the cheap one fails (previews are optional)."""
    try:
        if tiny_vae is not None:
            return tiny_preview(latents, tiny_vae)
        if latents.shape[1] == 4:
            return approx_preview(latents, family)
    except Exception:
        log.exception("step preview failed")
    return None
