"""LoRAs the A1111 way: ``<lora:name:weight>`` tags, a LoRA folder, and trigger words.

* :func:`extract_lora_tags` pulls tags out of a prompt → (clean prompt, ``[LoraRef]``).
* :func:`resolve_loras` finds each name *inside* ``lora_dir`` only (no paths, no symlinks
  leading out) and reads trigger words from a sidecar (``name.txt``, or A1111's
  ``name.json`` with ``"activation text"``).
* :class:`LoraSet` applies them to a pipeline with diffusers ``load_lora_weights`` +
  ``set_adapters``, and unloads everything when the next request wants a different set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tools.core.errors import InvalidRequest
from tools.core.request import LoraRef, format_validation_error
from tools.engines.diffusers.models import LORA_EXTS, suggest

log = logging.getLogger(__name__)

# <lora:name>, <lora:name:0.8>, <lora:name:0.8:0.5> (A1111 te:unet; the first weight is used)
_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)


@dataclass(frozen=True)
class ResolvedLora:
    """A LoRA found on disk, with its weight and any trigger words."""

    name: str
    path: Path
    weight: float
    triggers: str = ""

    @property
    def adapter_name(self) -> str:
        # peft adapter names become module keys: no dots; unique per file.
        digest = hashlib.sha1(str(self.path).encode()).hexdigest()[:8]
        return f"lora_{re.sub(r'[^0-9A-Za-z_]', '_', self.name)[:40]}_{digest}"


def extract_lora_tags(prompt: str) -> tuple[str, list[LoraRef]]:
    """Remove ``<lora:…>`` tags from ``prompt``; return the cleaned prompt and the refs."""
    refs: list[LoraRef] = []
    for m in _TAG.finditer(prompt):
        name, weight = m.group(1).strip(), (m.group(2) or "").strip()
        try:
            refs.append(LoraRef(name=name, weight=float(weight) if weight else 1.0))
        except ValueError as err:
            text = (
                format_validation_error(err) if isinstance(err, ValidationError)
                else f"weight {weight!r} is not a number"
            )
            raise InvalidRequest.of("lora_tag_invalid", tag=m.group(0), detail=text) from err
    cleaned = _TAG.sub("", prompt)
    cleaned = re.sub(r"\s*,\s*(,\s*)+", ", ", cleaned)  # "a, <lora:x>, b" → "a, b"
    cleaned = re.sub(r"\s{2,}", " ", cleaned).strip().strip(",").strip()
    return cleaned, refs


def merge_loras(*groups: list[LoraRef]) -> list[LoraRef]:
    """One ref per name, later groups overriding earlier ones, first-seen order kept."""
    merged: dict[str, LoraRef] = {}
    for group in groups:
        for ref in group:
            merged[ref.name] = ref
    return list(merged.values())


def _candidates(lora_dir: Path) -> list[Path]:
    return [
        p for p in sorted(lora_dir.rglob("*")) if p.suffix.lower() in LORA_EXTS and p.is_file()
    ]


def resolve_lora(name: str, lora_dir: Path | None) -> Path:
    """The LoRA file called ``name`` (file stem, any subfolder) inside ``lora_dir``."""
    if lora_dir is None or not lora_dir.is_dir():
        raise InvalidRequest.of("lora_no_folder", name=name)
    if "/" in name or "\\" in name or ".." in name or name.startswith("."):
        raise InvalidRequest.of("lora_name_plain", name=name)
    root = lora_dir.resolve()
    files = _candidates(lora_dir)
    matches = [p for p in files if p.stem == name] or [
        p for p in files if p.stem.lower() == name.lower()
    ]
    if not matches:
        hint = suggest(name, sorted({p.stem for p in files}))
        raise InvalidRequest.of("lora_missing", name=name, folder=lora_dir, hint=hint)
    path = matches[0]
    if not path.resolve().is_relative_to(root):
        raise InvalidRequest.of("lora_outside_folder", name=name)
    return path


def trigger_words(path: Path) -> str:
    """Trigger words from ``name.txt`` or A1111's ``name.json`` ("activation text")."""
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            words = str(data.get("activation text", "")).strip() if isinstance(data, dict) else ""
            if words:
                return words
        except (OSError, ValueError) as err:
            log.warning("ignoring unreadable LoRA sidecar %s: %s", sidecar, err)
    txt = path.with_suffix(".txt")
    if txt.is_file():
        try:
            return " ".join(txt.read_text(encoding="utf-8").split())
        except OSError as err:
            log.warning("ignoring unreadable LoRA sidecar %s: %s", txt, err)
    return ""


def resolve_loras(refs: list[LoraRef], lora_dir: Path | None) -> list[ResolvedLora]:
    """Resolve every ref (raising :class:`InvalidRequest` on the first bad one)."""
    out = []
    for ref in refs:
        path = resolve_lora(ref.name, lora_dir)
        out.append(ResolvedLora(ref.name, path, ref.weight, trigger_words(path)))
    return out


def add_trigger_words(prompt: str, loras: list[ResolvedLora]) -> str:
    """Append each LoRA's trigger words unless the prompt already contains them."""
    extra = [
        lo.triggers for lo in loras if lo.triggers and lo.triggers.lower() not in prompt.lower()
    ]
    return ", ".join(part for part in [prompt, *extra] if part) if extra else prompt


def load_weights(path: Path) -> dict[str, Any]:
    """A LoRA state dict from disk (``.pt``/``.ckpt`` with ``weights_only``: no pickle code)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    sd = torch.load(path, map_location="cpu", weights_only=True)
    return dict(sd.get("state_dict", sd))


class LoraSet:
    """The adapters currently loaded into one pipeline's modules."""

    def __init__(self) -> None:
        self.loaded: dict[str, tuple[Path, int]] = {}  # adapter name → (path, mtime_ns)

    def apply(self, pipe: Any, loras: list[ResolvedLora]) -> None:
        """Make exactly ``loras`` active on ``pipe`` with their weights."""
        wanted = {lo.adapter_name: (lo.path, os.stat(lo.path).st_mtime_ns) for lo in loras}
        if wanted != self.loaded:
            self.clear(pipe)
            for lo in loras:
                try:
                    pipe.load_lora_weights(load_weights(lo.path), adapter_name=lo.adapter_name)
                except Exception as err:
                    self.clear(pipe)
                    first = str(err).splitlines()[0][:160] if str(err) else ""
                    raise InvalidRequest.of(
                        "lora_does_not_fit", name=lo.name, error=f"{type(err).__name__}: {first}"
                    ) from err
                self.loaded[lo.adapter_name] = wanted[lo.adapter_name]
        if loras:
            pipe.set_adapters([lo.adapter_name for lo in loras], [lo.weight for lo in loras])

    def clear(self, pipe: Any) -> None:
        """Unload every adapter (restoring the base weights)."""
        if self.loaded:
            pipe.unload_lora_weights()
            self.loaded.clear()
