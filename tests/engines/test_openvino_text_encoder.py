"""The text encoders on OpenVINO (tiny SD1.5 and SDXL): torch's embeddings, torch's copy
released, textual inversion and LoRAs still honoured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.tiny_pipelines import TinyModels
from tools.core.request import LoraRef
from tools.engines.diffusers.lora import LoraSet, resolve_loras
from tools.engines.diffusers.openvino.pipeline import OpenVinoPipeline
from tools.engines.diffusers.prompts.encoding import encode
from tools.engines.diffusers.prompts.textual_inversion import EmbeddingRegistry

pytestmark = pytest.mark.slow

CASES = [  # (prompt, options): plain, clip skip 2, weighted, two chunks
    ("a lighthouse at dusk", {}),
    ("a lighthouse at dusk", {"clip_skip": 2}),
    ("a (lighthouse:1.4) at [dusk]", {}),
    (" ".join(["stormy sea"] * 50), {}),
]


def with_norm_bias(folder: Path, target: Path) -> Path:
    """A copy of a tiny model whose text encoders' final norm has a bias, as a real CLIP's
    has (with none, emphasis's mean rescale divides by ~0 and amplifies rounding)."""
    import shutil

    import transformers

    shutil.copytree(folder, target)
    for part in ("text_encoder", "text_encoder_2"):
        if (target / part).is_dir():
            config = transformers.AutoConfig.from_pretrained(target / part)
            kind = getattr(transformers, config.architectures[0])  # keeps CLIP-G's projection
            te = kind.from_pretrained(target / part)
            getattr(te, "text_model", te).final_layer_norm.bias.data.fill_(0.3)
            te.save_pretrained(target / part)
    return target


def load(folder: Path) -> Any:
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(folder)


def routed(folder: Path, root: Path) -> tuple[Any, OpenVinoPipeline]:
    pipe = load(folder)
    accel = OpenVinoPipeline(root=root, precision="f32", identity=(str(folder),))
    accel.add_text_encoders(pipe, folder)
    accel.release_torch()
    return pipe, accel


def close(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got.keys() == want.keys()
    for key, tensor in want.items():  # IR weights are stored as fp16
        assert got[key].shape == tensor.shape, key
        assert torch.allclose(got[key], tensor, atol=5e-3, rtol=1e-2), (
            key, float((got[key] - tensor).abs().max()))


@pytest.fixture(scope="module")
def sd15(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Any, Any, OpenVinoPipeline]:
    root = tmp_path_factory.mktemp("ov-te")
    folder = with_norm_bias(tiny_models.sd15_dir, root / "sd15")
    pipe, accel = routed(folder, root / "ir")
    return load(folder), pipe, accel


def test_openvino_text_encoder_gives_torchs_embeddings_with_torchs_copy_released(
    sd15: tuple[Any, Any, OpenVinoPipeline]
) -> None:
    torch_pipe, pipe, accel = sd15
    route = accel.served_by["text_encoder"]
    te = pipe.text_encoder
    assert not accel.weights["text_encoder"].resident
    assert te.encoder.layers[0].mlp.fc1.weight.device.type == "meta"
    # kept in torch: the token table (mapped from the model's file), the final norm
    assert te.get_input_embeddings().weight.device.type == "cpu"
    assert te.final_layer_norm.weight.device.type == "cpu"
    for prompt, options in CASES:
        before = route.calls
        got = encode(pipe, prompt, "blurry", **options)
        want = encode(torch_pipe, prompt, "blurry", **options)
        assert got.chunks == want.chunks
        close(got.kwargs, want.kwargs)
        assert route.calls == before + 2, prompt  # cond and uncond, all chunks at once
    # diffusers' own encode_prompt (clip skip through hidden_states) reads it the same way
    for skip in (None,):  # (diffusers' clip_skip reads text_model: gone in transformers 5)
        got_pair = pipe.encode_prompt("a fox", "cpu", 1, True, "ugly", clip_skip=skip)
        want_pair = torch_pipe.encode_prompt("a fox", "cpu", 1, True, "ugly", clip_skip=skip)
        for g, w in zip(got_pair, want_pair, strict=True):
            assert torch.allclose(g, w, atol=5e-3, rtol=1e-2)


def test_textual_inversion_vectors_reach_openvino_through_the_torch_token_table(
    sd15: tuple[Any, Any, OpenVinoPipeline], tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    torch_pipe, pipe, accel = sd15
    folder = tmp_path / "embeddings"
    folder.mkdir()
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(3))},
              str(folder / "glowstyle.safetensors"))
    prompt = "a lighthouse, glowstyle"
    got = encode(pipe, prompt, "", embeddings=EmbeddingRegistry(folder))
    want = encode(torch_pipe, prompt, "", embeddings=EmbeddingRegistry(folder))
    assert got.embeddings == want.embeddings == ["glowstyle"]
    close(got.kwargs, want.kwargs)
    plain = encode(pipe, "a lighthouse, glow style", "").kwargs["prompt_embeds"]
    assert not torch.allclose(plain, got.kwargs["prompt_embeds"], atol=1e-2)
    assert not accel.weights["text_encoder"].resident  # no torch fallback was needed


def test_a_text_encoder_lora_runs_torch_with_the_weights_mapped_back(
    sd15: tuple[Any, Any, OpenVinoPipeline], tiny_models: TinyModels
) -> None:
    torch_pipe, pipe, accel = sd15
    loras = resolve_loras([LoraRef(name="tiny-style", weight=0.9)], tiny_models.lora_dir)
    route, weights = accel.served_by["text_encoder"], accel.weights["text_encoder"]
    torch_set, ov_set = LoraSet(), LoraSet()
    torch_set.apply(torch_pipe, loras)
    want = encode(torch_pipe, "a red cat", "").kwargs
    torch_set.clear(torch_pipe)
    accel.need_torch(loras)  # what OpenVinoPipeline.prepare does before applying them
    assert weights.resident
    ov_set.apply(pipe, loras)
    before = route.calls
    got = encode(pipe, "a red cat", "").kwargs
    assert route.calls == before  # adapters live in torch: OpenVINO stood aside
    close(got, want)
    ov_set.clear(pipe)
    accel.release_torch()
    assert not weights.resident
    assert pipe.text_encoder.encoder.layers[0].mlp.fc1.weight.device.type == "meta"
    close(encode(pipe, "a red cat", "").kwargs, encode(torch_pipe, "a red cat", "").kwargs)
    assert route.calls == before + 2  # served again: cond and uncond


def test_sdxl_both_text_encoders_and_the_pooled_embedding_on_openvino(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    folder = with_norm_bias(tiny_models.sdxl_dir, tmp_path / "sdxl")
    torch_pipe = load(folder)
    pipe, accel = routed(folder, tmp_path / "ir")
    assert set(accel.served_by) == {"text_encoder", "text_encoder_2"}
    assert pipe.text_encoder_2.text_projection.weight.device.type == "cpu"
    for prompt, options in CASES[:1] + CASES[2:]:
        close(encode(pipe, prompt, "blurry", **options).kwargs,
              encode(torch_pipe, prompt, "blurry", **options).kwargs)
    assert all(accel.served_by[p].calls == 6 for p in accel.served_by)
    got = pipe.encode_prompt("a fox", device="cpu", negative_prompt="ugly")
    want = torch_pipe.encode_prompt("a fox", device="cpu", negative_prompt="ugly")
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=5e-3, rtol=1e-2)
