"""Pytest plugin: tiny random-weight Stable Diffusion models built offline, once per session.

Nothing here touches the Hugging Face hub. Each builder seeds torch, makes a model from a
config (shapes chosen so 64x64 images run in milliseconds), and saves it the way users
have them on disk:

* ``sd15_dir`` / ``sdxl_dir`` — diffusers folders (``model_index.json``);
* ``checkpoint`` — the SD1.5 model as one ``.safetensors`` in the original LDM key layout
  (A1111 ``models/Stable-diffusion/sub/tiny-sd.safetensors``), see :mod:`tests.support.ldm_export`;
* ``hf_cache`` — a hub cache holding the *configs* of ``stable-diffusion-v1-5`` (what
  ``from_single_file`` needs offline) and a full snapshot of ``egaki-test/tiny-sd``;
* ``lora_dir`` — a kohya/A1111-format LoRA for the tiny UNet and text encoder, with a
  trigger-word sidecar;
* ``taesd_dir`` — a tiny ``AutoencoderTiny`` (TAESD) folder.

The tokenizer is byte-level BPE with no merges (256 byte tokens, their ``</w>`` forms and
the two CLIP specials), so it needs no downloaded vocabulary.
"""

from __future__ import annotations

import json
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.core.settings import Settings

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
TINY_HUB_REPO = "egaki-test/tiny-sd"
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
TRIGGER = "tinystyle"


@dataclass(frozen=True)
class TinyModels:
    """Paths of everything the session built."""

    root: Path
    sd15_dir: Path
    sdxl_dir: Path
    inpaint_dir: Path
    models_dir: Path
    checkpoint: Path
    lora_dir: Path
    lora: Path
    taesd_dir: Path
    hf_cache: Path


# --- components ------------------------------------------------------------------------


def _tokenizer() -> Any:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_config(**extra: Any) -> Any:
    from transformers import CLIPTextConfig

    # 514 tokens; ids 512/513 are start/end of text as in the tokenizer above.
    return CLIPTextConfig(
        vocab_size=520, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=512,
        eos_token_id=513, pad_token_id=513, hidden_act="quick_gelu", **extra,
    )


def _vae() -> Any:
    from diffusers import AutoencoderKL

    # Four levels like the real VAE, so latents are 1/8 of the image as in SD.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=4, sample_size=64,
    )


def _scheduler_kwargs() -> dict[str, Any]:
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "steps_offset": 1}


def build_sd15(path: Path, in_channels: int = 4) -> Path:
    """A tiny SD1.5-shaped pipeline saved as a diffusers folder."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=2, norm_num_groups=4,
    )
    torch.manual_seed(1)
    vae = _vae()
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(_text_config())
    pipe: Any = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=_tokenizer(), unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, **_scheduler_kwargs()),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def build_sdxl(path: Path) -> Path:
    """A tiny SDXL-shaped pipeline (two text encoders, text_time embedding)."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
        norm_num_groups=4,
    )
    torch.manual_seed(1)
    vae = _vae()
    torch.manual_seed(2)
    te1 = CLIPTextModel(_text_config())
    te2 = CLIPTextModelWithProjection(_text_config(projection_dim=32))
    pipe: Any = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=_tokenizer(),
        tokenizer_2=_tokenizer(), unet=unet,
        scheduler=EulerDiscreteScheduler(timestep_spacing="leading", **_scheduler_kwargs()),
    )
    pipe.save_pretrained(path)
    return path


def build_taesd(path: Path) -> Path:
    """A tiny TAESD (``AutoencoderTiny``) with the same 1/8 latent scale."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(3)
    tiny: Any = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
    )
    tiny.save_pretrained(path)
    return path


def build_kohya_lora(sd15_dir: Path, out: Path, rank: int = 2) -> Path:
    """A non-zero A1111/kohya LoRA (``lora_unet_*``/``lora_te_*`` keys) for the tiny SD1.5."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(sd15_dir, subfolder="unet")
    gen = torch.Generator().manual_seed(4)
    tensors: dict[str, torch.Tensor] = {}

    def add(prefix: str, module: torch.nn.Linear) -> None:
        tensors[f"{prefix}.lora_down.weight"] = torch.randn(
            rank, module.in_features, generator=gen
        )
        tensors[f"{prefix}.lora_up.weight"] = torch.randn(
            module.out_features, rank, generator=gen
        )
        tensors[f"{prefix}.alpha"] = torch.tensor(float(rank))

    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and ".attn" in name and "to_" in name:
            add("lora_unet_" + name.replace(".", "_"), module)
    # Real kohya LoRAs cover every attention and MLP Linear of the text encoder too (and
    # diffusers relies on ``out_proj`` being present to recognise the format).
    text_encoder = CLIPTextModel.from_pretrained(sd15_dir, subfolder="text_encoder")
    for name, module in text_encoder.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in name:
            name = name if name.startswith("text_model.") else "text_model." + name
            add("lora_te_" + name.replace(".", "_"), module)
    save_file(tensors, out)
    return out


def make_hf_cache(cache: Path, repo_id: str, src: Path, *, configs_only: bool) -> Path:
    """Lay ``src`` out as a hub cache snapshot of ``repo_id`` (what a past download leaves)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / FAKE_COMMIT
    for f in src.rglob("*"):
        if f.is_file() and not (configs_only and f.suffix in (".safetensors", ".bin")):
            dest = snap / f.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(FAKE_COMMIT)
    return snap


def build_all(root: Path) -> TinyModels:
    from tests.support.ldm_export import write_ldm_checkpoint

    sd15 = build_sd15(root / "tiny-sd15")
    sdxl = build_sdxl(root / "tiny-sdxl")
    inpaint = build_sd15(root / "tiny-sd15-inpainting", in_channels=9)
    models_dir = root / "Stable-diffusion"
    checkpoint = write_ldm_checkpoint(sd15, models_dir / "sub" / "tiny-sd.safetensors")
    lora_dir = root / "Lora"
    lora_dir.mkdir()
    lora = build_kohya_lora(sd15, lora_dir / "tiny-style.safetensors")
    (lora_dir / "tiny-style.json").write_text(
        json.dumps({"activation text": TRIGGER, "preferred weight": 0.8})
    )
    hf_cache = root / "hf-cache"
    make_hf_cache(hf_cache, SD15_REPO, sd15, configs_only=True)
    make_hf_cache(hf_cache, TINY_HUB_REPO, sd15, configs_only=False)
    # fast mode's LCM LoRA, as a past download left it (the tiny style LoRA stands in)
    lcm = root / "lcm-lora"
    lcm.mkdir()
    shutil.copyfile(lora, lcm / "pytorch_lora_weights.safetensors")
    make_hf_cache(hf_cache, "latent-consistency/lcm-lora-sdv1-5", lcm, configs_only=False)
    taesd = build_taesd(root / "tiny-taesd")
    return TinyModels(
        root=root, sd15_dir=sd15, sdxl_dir=sdxl, inpaint_dir=inpaint, models_dir=models_dir,
        checkpoint=checkpoint, lora_dir=lora_dir, lora=lora, taesd_dir=taesd, hf_cache=hf_cache,
    )


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Build every tiny model once per test session (a few seconds on 2 CPU cores)."""
    return build_all(tmp_path_factory.mktemp("tiny-models"))


def make_tiny_settings(data_dir: Path, models: TinyModels, **overrides: Any) -> Settings:
    """Offline settings pointing at the tiny SD1.5 folder, LoRAs, TAESD and hub cache."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "offline": True,
        "image_model": str(models.sd15_dir),
        "models_dir": models.models_dir,
        "lora_dir": models.lora_dir,
        "tiny_vae_model": str(models.taesd_dir),
        "hf_cache_dir": models.hf_cache,
        "cpu_runtime": "torch",  # OpenVINO has its own tests (it converts once per data dir)
        "measure_machine": False,  # no background UNet timing between test requests
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def tiny_settings(tmp_path: Path, tiny_models: TinyModels) -> Settings:
    """:func:`make_tiny_settings` with a fresh data dir."""
    return make_tiny_settings(tmp_path / "data", tiny_models)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail any socket connect to a non-loopback address; returns the attempts seen."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in (
            "127.0.0.1", "::1", "localhost",
        ):
            attempts.append(address)
            raise OSError(f"network disabled in tests: tried to connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return attempts
