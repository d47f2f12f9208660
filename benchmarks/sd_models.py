"""Full-size Stable Diffusion architectures with random weights, built offline.

Random weights cost exactly the compute of real ones, so speed and memory measured on
these hold for real checkpoints, on machines that cannot (or need not) download them.
Models are saved as diffusers folders so Egaki's own loader is measured, not a shortcut.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def byte_tokenizer() -> Any:
    """A CLIP tokenizer with a byte-level vocabulary: no download, valid ids for CLIP."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 49406
    vocab["<|endoftext|>"] = 49407
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _clip(hidden: int, layers: int, heads: int, inter: int, act: str, proj: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408, hidden_size=hidden, intermediate_size=inter,
        num_attention_heads=heads, num_hidden_layers=layers, max_position_embeddings=77,
        hidden_act=act, projection_dim=proj, bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407,
    )


def _vae(sample_size: int, scaling: float, force_upcast: bool) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=sample_size,
        scaling_factor=scaling, force_upcast=force_upcast,
    )


def _scheduler_kwargs() -> dict[str, Any]:
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "num_train_timesteps": 1000, "steps_offset": 1}


def build_sd15(path: Path) -> Path:
    """SD1.5: UNet 860M, CLIP ViT-L text encoder, KL VAE; default PNDM scheduler."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8,
    )
    pipe: Any = StableDiffusionPipeline(
        vae=_vae(512, 0.18215, False),
        text_encoder=CLIPTextModel(_clip(768, 12, 12, 3072, "quick_gelu", 768)),
        tokenizer=byte_tokenizer(), unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, **_scheduler_kwargs()),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _sd2_unet(sample_size: int = 64) -> Any:
    """The SD 2.x UNet (865M): linear projections, OpenCLIP-H cross-attention, 5/10/20 heads
    (diffusers' ``attention_head_dim`` holds the head count for this model)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
    )


def _save_with_name(pipe: Any, path: Path, name: str) -> Path:
    """Save ``pipe`` with ``_name_or_path`` = the hub id, as a real download records it."""
    import json

    pipe.save_pretrained(path, safe_serialization=True)
    index = path / "model_index.json"
    data = json.loads(index.read_text())
    data["_name_or_path"] = name
    index.write_text(json.dumps(data, indent=2))
    return path


def build_sd_turbo(path: Path) -> Path:
    """SD-Turbo (stabilityai/sd-turbo): the SD 2.1-base UNet, OpenCLIP ViT-H/14 text
    encoder (23 of its 24 layers, as diffusers ships it), SD VAE, Euler with trailing
    timesteps; ``model_index.json`` names the hub repo as a download does."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    pipe: Any = StableDiffusionPipeline(
        vae=_vae(768, 0.18215, False),
        text_encoder=CLIPTextModel(_clip(1024, 23, 16, 4096, "gelu", 512)),
        tokenizer=byte_tokenizer(), unet=_sd2_unet(),
        scheduler=EulerDiscreteScheduler(timestep_spacing="trailing", **_scheduler_kwargs()),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return _save_with_name(pipe, path, "stabilityai/sd-turbo")


def build_tiny(path: Path) -> Path:
    """A tiny SD1.5-shaped model (64² images in milliseconds) to check a benchmark runs;
    its numbers say nothing about real models."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=4, norm_num_groups=8,
    )
    vae = _tiny_vae()
    pipe: Any = StableDiffusionPipeline(
        vae=vae, text_encoder=CLIPTextModel(_clip(32, 2, 4, 37, "quick_gelu", 32)),
        tokenizer=byte_tokenizer(), unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, **_scheduler_kwargs()),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def _tiny_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=4, sample_size=64,
    )


def build_sdxl(path: Path) -> Path:
    """SDXL base: UNet 2.6B, CLIP-L + OpenCLIP bigG, KL VAE (fp32 upcast as shipped)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    pipe: Any = StableDiffusionXLPipeline(
        vae=_vae(1024, 0.13025, True),
        text_encoder=CLIPTextModel(_clip(768, 12, 12, 3072, "quick_gelu", 768)),
        text_encoder_2=CLIPTextModelWithProjection(_clip(1280, 32, 20, 5120, "gelu", 1280)),
        tokenizer=byte_tokenizer(), tokenizer_2=byte_tokenizer(), unet=unet,
        scheduler=EulerDiscreteScheduler(timestep_spacing="leading", **_scheduler_kwargs()),
    )
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_taesd(path: Path) -> Path:
    """TAESD at its real size (AutoencoderTiny defaults), random weights."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(3)
    AutoencoderTiny().save_pretrained(path)
    return path


LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                    "ff.net.2", "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv",
                    "upsamplers.0.conv", "time_emb_proj"]


def build_lcm_lora(model_dir: Path, path: Path, rank: int = 64) -> Path:
    """A random LoRA shaped like the LCM LoRA for ``model_dir``'s UNet (same layers, rank
    64), so fast mode pays what the real one costs; saved as ``path/*.safetensors``."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=LCM_LORA_TARGETS))
    layers = get_peft_model_state_dict(unet)
    for v in layers.values():
        v.data.mul_(0.01)  # small, like a trained LoRA's update
    path.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(path, unet_lora_layers=layers,
                                              safe_serialization=True)
    return path
