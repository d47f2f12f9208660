"""SDXL's VAE without the fp32 upcast (bf16 instead), and automatic tiled decoding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_pipelines import TinyModels
from tools.engines.diffusers.pipeline_cache import dtype_kwargs
from tools.engines.diffusers.vae_precision import keep_vae_in_bf16, tile_large_decodes

pytestmark = pytest.mark.slow


def _pipes(tiny_models: TinyModels) -> tuple[Any, Any]:
    import torch
    from diffusers import AutoPipelineForText2Image

    def load(dtype: Any) -> Any:
        pipe = AutoPipelineForText2Image.from_pretrained(tiny_models.sdxl_dir,
                                                         **dtype_kwargs(dtype))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return load(torch.float32), load(torch.float16)


def _run(pipe: Any, mode: str, init: Image.Image, mask: Image.Image) -> np.ndarray:
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

    kw: dict[str, Any] = {"prompt": "a lighthouse", "num_inference_steps": 2,
                          "generator": torch.Generator("cpu").manual_seed(3)}
    if mode == "txt2img":
        out = pipe(width=64, height=64, **kw)
    elif mode == "img2img":
        out = AutoPipelineForImage2Image.from_pipe(pipe)(image=init, strength=0.8, **kw)
    else:
        out = AutoPipelineForInpainting.from_pipe(pipe)(image=init, mask_image=mask,
                                                        strength=1.0, width=64, height=64, **kw)
    return np.asarray(out.images[0], dtype=np.int16)


def test_fp16_sdxl_vae_runs_in_bf16_without_upcast_in_every_mode(tiny_models: TinyModels
                                                                  ) -> None:
    import torch

    ref, half = _pipes(tiny_models)
    assert half.vae.config.force_upcast  # the SDXL VAE config asks for the upcast
    upcasts: list[Any] = []
    real_to = half.vae.to

    def spy_to(*a: Any, **k: Any) -> Any:
        upcasts.extend(x for x in (*a, k.get("dtype")) if x is torch.float32)
        return real_to(*a, **k)

    assert keep_vae_in_bf16(half.vae, "cpu")
    half.vae.to = spy_to
    init = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    mask = Image.new("L", (64, 64), 255)
    for mode in ("txt2img", "img2img", "inpaint"):
        want, got = _run(ref, mode, init, mask), _run(half, mode, init, mask)
        assert half.vae.dtype == torch.bfloat16 and not upcasts, mode
        assert np.abs(want - got).mean() < 6, mode
    assert not keep_vae_in_bf16(ref.vae, "cpu")  # fp32 VAEs are left alone


def test_large_images_decode_in_tiles(tiny_models: TinyModels) -> None:
    ref, _ = _pipes(tiny_models)
    tile_large_decodes(ref.vae, 2048, 2048, 1536 * 1536, always=False)
    assert ref.vae.use_tiling
    tile_large_decodes(ref.vae, 1024, 1024, 1536 * 1536, always=False)
    assert not ref.vae.use_tiling
    tile_large_decodes(ref.vae, 512, 512, 0, always=True)
    assert ref.vae.use_tiling
