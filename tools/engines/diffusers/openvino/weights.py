"""Torch weights that OpenVINO replaced: released after the compile, reloaded on demand.

Once OpenVINO serves the UNet and the VAE decoder, their torch copies only matter for the
fallbacks (LoRA adapters, odd latent sizes, tiled decodes, a failed OpenVINO route).
Keeping them resident doubled the memory of the CPU path (SD1.5: 3.4 GB of fp32 UNet
beside OpenVINO's copy). :class:`TorchWeights` moves such a module to the ``meta``
device (no storage) and, when a fallback needs it, puts the weights back as a
copy-on-write memory map of a safetensors file: only the pages a call touches are read,
and they are file-backed (the OS can drop them again under pressure).

The file is the model's own (a diffusers folder whose weights match the module as
loaded, key for key and dtype for dtype) or, when they don't match (a single-file
checkpoint, an fp16 file loaded as fp32), a copy saved once next to the OpenVINO IR.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from tools.engines.memory import release_heap

log = logging.getLogger(__name__)

_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """(tensor name → {dtype, shape, data_offsets}, where the data starts) of a safetensors
    file, reading only its JSON header."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return header, 8 + size


def mmap_state_dict(path: Path, prefix: str = "") -> dict[str, Any]:
    """The tensors of ``path`` whose names start with ``prefix`` (stripped), as views of
    one private (copy-on-write) memory map: nothing is read until a tensor is used."""
    import numpy as np
    import torch

    header, start = read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode="c", offset=start)
    raw = torch.from_numpy(data)
    out: dict[str, Any] = {}
    for name, info in header.items():
        if not name.startswith(prefix):
            continue
        begin, end = info["data_offsets"]
        dtype = getattr(torch, _DTYPES[info["dtype"]])
        chunk = raw[begin:end]
        out[name[len(prefix):]] = (chunk.view(dtype) if end > begin
                                   else torch.empty(0, dtype=dtype)).reshape(info["shape"])
    return out


def matches(module: Any, path: Path, prefix: str = "") -> bool:
    """True when ``path`` holds exactly ``module``'s state (names, shapes and dtypes)."""
    try:
        header, _ = read_header(path)
    except (OSError, ValueError):
        return False
    state = module.state_dict()
    names = {k[len(prefix):]: v for k, v in header.items() if k.startswith(prefix)}
    if set(names) != set(state):
        return False
    return all(
        _DTYPES.get(names[k]["dtype"]) == str(t.dtype).removeprefix("torch.")
        and list(names[k]["shape"]) == list(t.shape)
        for k, t in state.items()
    )


class TorchWeights:
    """One torch module whose weights can leave memory and come back (see above).

    ``candidates`` are (file, prefix) pairs that may already hold the weights (the model's
    own files); ``copy`` is where a copy is saved when none matches.
    """

    def __init__(self, module: Any, name: str, candidates: list[tuple[Path, str]],
                 copy: Path, keep: tuple[str, ...] = ()) -> None:
        self.module, self.name = module, name
        self.candidates, self.copy = candidates, copy
        # state-dict name prefixes that stay in torch (e.g. the text encoder's token
        # table): mapped from the file at the first release, never moved to meta
        self.keep = keep
        self._mapped_kept = False
        self.source: tuple[Path, str] | None = None
        self.resident = True
        self._lock = threading.Lock()

    def release(self) -> bool:
        """Drop the weights (after finding or saving a file to reload them from)."""
        with self._lock:
            if not self.resident:
                return True
            if self.source is None:
                self.source = self._find_or_save()
                if self.source is None:
                    return False
            if self.keep:
                self._release_all_but_kept()
            else:
                self.module.to("meta")
            self.resident = False
        release_heap()
        log.info("released the torch %s (OpenVINO serves it; reloads on demand)", self.name)
        return True

    def ensure(self) -> None:
        """Put the weights back (memory-mapped) if they were released."""
        with self._lock:
            if self.resident or self.source is None:
                return
            path, prefix = self.source
            state = {k: v for k, v in mmap_state_dict(path, prefix).items()
                     if not k.startswith(self.keep or ("\0",))}
            result = self.module.load_state_dict(state, strict=not self.keep, assign=True)
            missing = [k for k in result.missing_keys if not k.startswith(self.keep)]
            if missing or result.unexpected_keys:  # e.g. adapters went in while released
                raise RuntimeError(f"the torch {self.name} can't be reloaded: missing "
                                   f"{missing[:3]}, unexpected {result.unexpected_keys[:3]}")
            self.resident = True
        log.info("reloaded the torch %s from %s (a fallback needs it)", self.name, path.name)

    def _release_all_but_kept(self) -> None:
        """Move every parameter and persistent buffer to meta except the kept ones
        (buffers outside the state dict, e.g. CLIP's position ids, stay: ``ensure``
        could not restore them). At the first release the kept ones become views of the
        file's memory map: the pages a call touches are read, nothing else."""
        import torch

        assert self.source is not None
        state = self.module.state_dict(keep_vars=True)
        for name, tensor in state.items():
            if name.startswith(self.keep):
                continue
            owner, _, leaf = name.rpartition(".")
            holder = self.module.get_submodule(owner)
            empty = torch.empty_like(tensor, device="meta")
            if leaf in holder._parameters:
                holder._parameters[leaf] = torch.nn.Parameter(
                    empty, requires_grad=tensor.requires_grad)
            else:
                holder._buffers[leaf] = empty
        if not self._mapped_kept:
            path, prefix = self.source
            kept = {k: v for k, v in mmap_state_dict(path, prefix).items()
                    if k.startswith(self.keep) and k in state and v.shape == state[k].shape}
            self.module.load_state_dict(kept, strict=False, assign=True)
            self._mapped_kept = True

    def _find_or_save(self) -> tuple[Path, str] | None:
        for path, prefix in self.candidates:
            if path.is_file() and matches(self.module, path, prefix):
                return path, prefix
        if self.copy.is_file() and matches(self.module, self.copy):
            return self.copy, ""
        try:
            from safetensors.torch import save_file

            self.copy.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.copy.with_suffix(".tmp")
            state = {k: v.contiguous() for k, v in self.module.state_dict().items()}
            save_file(state, str(tmp))
            tmp.replace(self.copy)
        except Exception as err:  # disk full, read-only cache: keep the weights resident
            log.warning("keeping the torch %s resident: no copy saved (%s: %s)", self.name,
                        type(err).__name__, err)
            return None
        return self.copy, ""
