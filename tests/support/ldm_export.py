"""Write a diffusers SD1.x folder back as one LDM-layout ``.safetensors`` (test helper).

diffusers only converts LDM → diffusers (``diffusers/loaders/single_file_utils.py``); this is
the inverse of ``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint`` and
``convert_ldm_clip_checkpoint`` for the block layouts those functions read, written
generically over ``layers_per_block`` and the number of levels so tiny models work. Only
what the tiny fixtures need (SD1.x: conv ``proj_in``, one CLIP text encoder).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet_inner(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET.get(head, head)}.{tail}"


def unet_to_ldm(key: str, cfg: dict[str, Any]) -> str:
    """One diffusers UNet key → its LDM name (without the ``model.diffusion_model.`` prefix)."""
    per = cfg["layers_per_block"] + 1
    for new, old in _UNET_TOP.items():
        if key.startswith(new + "."):
            return old + key[len(new):]
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = per * b + j + 1
        return f"input_blocks.{idx}.0.{_resnet_inner(rest)}" if kind == "resnets" else (
            f"input_blocks.{idx}.1.{rest}"
        )
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{per * (int(m[1]) + 1)}.0.op.{m[2]}"
    if m := re.match(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_inner(m[2])}"
    if m := re.match(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = per * b + j
        return f"output_blocks.{idx}.0.{_resnet_inner(rest)}" if kind == "resnets" else (
            f"output_blocks.{idx}.1.{rest}"
        )
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        b = int(m[1])
        has_attn = "CrossAttn" in cfg["up_block_types"][b]
        return f"output_blocks.{per * b + per - 1}.{2 if has_attn else 1}.conv.{m[2]}"
    raise KeyError(f"no LDM name for UNet key {key}")


def vae_to_ldm(key: str, cfg: dict[str, Any]) -> str:
    """One diffusers AutoencoderKL key → its LDM name (without ``first_stage_model.``)."""
    n_up = len(cfg["up_block_types"])
    key = key.replace("conv_norm_out", "norm_out")
    if m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        return f"{m[1]}.mid.attn_1.{_VAE_ATTN[m[2]]}.{m[3]}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
    if m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        rest = m[3].replace("conv_shortcut", "nin_shortcut")
        return f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{rest}"
    if m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}"
    return key  # conv_in, conv_out, norm_out, quant_conv, post_quant_conv keep their names


def write_ldm_checkpoint(folder: Path, out: Path) -> Path:
    """Save the UNet, VAE and text encoder of diffusers ``folder`` as one LDM checkpoint."""
    from safetensors.torch import load_file, save_file

    def load(sub: str) -> tuple[dict[str, Any], dict[str, Any]]:
        cfg = json.loads((folder / sub / "config.json").read_text())
        name = "model" if sub == "text_encoder" else "diffusion_pytorch_model"
        return load_file(folder / sub / f"{name}.safetensors"), cfg

    sd: dict[str, Any] = {}
    unet, unet_cfg = load("unet")
    for k, v in unet.items():
        sd["model.diffusion_model." + unet_to_ldm(k, unet_cfg)] = v
    vae, vae_cfg = load("vae")
    for k, v in vae.items():
        ldm = vae_to_ldm(k, vae_cfg)
        # LDM's VAE attention uses 1x1 convs where diffusers uses Linear layers.
        if ".mid.attn_1." in ldm and ldm.endswith("weight") and v.ndim == 2:
            v = v[:, :, None, None]
        sd["first_stage_model." + ldm] = v.contiguous()
    te, _ = load("text_encoder")
    for k, v in te.items():
        # transformers >= 5.6 saves CLIPTextModel without the ``text_model.`` level.
        name = k if k.startswith("text_model.") else "text_model." + k
        sd["cond_stage_model.transformer." + name] = v
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, out)
    return out
