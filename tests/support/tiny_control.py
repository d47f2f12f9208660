"""Pytest plugin: tiny random-weight ControlNets for the tiny SD1.5 and SDXL UNets.

Built offline once per session with ``ControlNetModel.from_unet``; its zero-initialised
output convolutions get random weights so a control image really changes the result (a
fresh ControlNet adds nothing). Saved the ways people have them in an A1111
``models/ControlNet`` folder:

* ``tiny_sd15_canny/`` — a diffusers folder (found for "canny" by its name);
* ``control_tiny_sd15_depth.safetensors`` — one file, loaded with ``from_single_file`` and
  the config of ``lllyasviel/control_v11p_sd15_canny`` from the tiny hub cache;
* ``tiny_xl_canny/`` — for the tiny SDXL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.tiny_pipelines import TinyModels, make_hf_cache

SD15_CONFIG_REPO = "lllyasviel/control_v11p_sd15_canny"


@dataclass(frozen=True)
class TinyControlNets:
    folder: Path  # the A1111-style ControlNet folder
    sd15_canny: Path
    sd15_depth_file: Path
    sdxl_canny: Path


def build_controlnet(model_dir: Path, out: Path, seed: int) -> Any:
    """A tiny ControlNet from ``model_dir``'s UNet with non-zero output convolutions."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 8))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        zeroed = [*net.controlnet_down_blocks, net.controlnet_mid_block,
                  net.controlnet_cond_embedding.conv_out]
        for conv in zeroed:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * 0.5)
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=gen) * 0.1)
    net.save_pretrained(out)
    return net


def build_all_controlnets(models: TinyModels, root: Path) -> TinyControlNets:
    from safetensors.torch import save_file

    folder = root / "ControlNet"
    canny = folder / "tiny_sd15_canny"
    build_controlnet(models.sd15_dir, canny, seed=10)
    depth_net = build_controlnet(models.sd15_dir, root / "depth-src", seed=11)
    depth_file = folder / "control_tiny_sd15_depth.safetensors"
    save_file({k: v.contiguous() for k, v in depth_net.state_dict().items()}, depth_file)
    make_hf_cache(models.hf_cache, SD15_CONFIG_REPO, root / "depth-src", configs_only=True)
    sdxl = folder / "tiny_xl_canny"
    build_controlnet(models.sdxl_dir, sdxl, seed=12)
    return TinyControlNets(folder, canny, depth_file, sdxl)


@pytest.fixture(scope="session")
def tiny_controlnets(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
                     ) -> TinyControlNets:
    """The tiny ControlNets, built once per session (about a second)."""
    return build_all_controlnets(tiny_models, tmp_path_factory.mktemp("tiny-control"))
