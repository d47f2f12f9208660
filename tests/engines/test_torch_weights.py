"""Torch weights released to the meta device and mapped back from a safetensors file."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from tools.engines.diffusers.openvino.weights import TorchWeights, matches, mmap_state_dict


def small() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))


def test_released_weights_leave_memory_and_come_back_from_the_models_own_file(
    tmp_path: Path
) -> None:
    module = small()
    x = torch.randn(3, 4)
    want = module(x)
    own = tmp_path / "model.safetensors"
    save_file({f"decoder.{k}": v for k, v in module.state_dict().items()} | {
        "encoder.w": torch.zeros(2)}, str(own))
    weights = TorchWeights(module, "decoder", [(own, "decoder.")], tmp_path / "copy.safetensors")
    assert weights.release() and not weights.resident
    assert module[0].weight.device.type == "meta"
    assert not (tmp_path / "copy.safetensors").exists()  # the model's own file served
    weights.ensure()
    assert torch.equal(module(x), want)


def test_a_copy_is_saved_when_the_files_weights_differ_from_the_module_as_loaded(
    tmp_path: Path
) -> None:
    module = small()
    half = tmp_path / "fp16.safetensors"
    save_file({k: v.half() for k, v in module.state_dict().items()}, str(half))
    assert not matches(module, half)  # fp16 on disk, fp32 in memory
    copy = tmp_path / "cache" / "torch.safetensors"
    weights = TorchWeights(module, "UNet", [(half, "")], copy)
    x = torch.randn(2, 4)
    want = module(x)
    assert weights.release() and copy.is_file()
    weights.ensure()
    assert torch.equal(module(x), want)
    # reloaded weights are a private map: changing them never writes the file
    with torch.no_grad():
        module[0].weight.add_(1.0)
    assert torch.equal(mmap_state_dict(copy)["0.weight"], small()[0].weight)
