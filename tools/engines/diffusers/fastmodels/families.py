"""Models and adapters made for one to eight steps, told apart from files alone.

A few-step model only draws a clean picture with the sampler, step count and CFG it was
distilled for (SD-Turbo at 1 step without CFG; Hyper-SD's 1-step LoRA with TCD; the LCM
LoRA at 4–8 steps). :func:`detect_model` recognises the families from what is on disk
before any weights load — the name, ``model_index.json``, the scheduler config — and
:func:`detect_adapter` does the same for a LoRA file (its name and safetensors
metadata). Each :class:`FewStep` gives what its model card recommends; the README table
lists them with their licences.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FewStep:
    """One few-step family: how to sample it and what it is."""

    key: str
    title: str
    sampler: str  # an A1111 name from tools.core.samplers
    steps: int  # the fewest steps that give a clean picture (model card)
    cfg: float  # 1.0 = no CFG (diffusers skips the negative prompt)
    balanced_steps: int  # steps for the Balanced preset
    scheduler: dict[str, Any] = field(default_factory=dict)  # scheduler config overrides
    adapter: bool = False  # a LoRA added to an ordinary model, not a model of its own
    rank: int = 0  # preference among adapters found on disk (higher first)


_TRAILING = {"timestep_spacing": "trailing"}
LCM = FewStep("lcm", "LCM", "LCM", 4, 1.0, 8)
FAMILIES: dict[str, FewStep] = {f.key: f for f in (
    FewStep("sd-turbo", "SD-Turbo / SDXL-Turbo", "Euler a", 1, 1.0, 4, _TRAILING),
    FewStep("sdxs", "SDXS", "LCM", 1, 1.0, 1, _TRAILING),
    FewStep("hyper-sd-1", "Hyper-SD (1-step LoRA)", "TCD", 1, 1.0, 4, {}, True, 3),
    FewStep("hyper-sd", "Hyper-SD (2/4/8-step LoRA)", "DDIM", 4, 1.0, 8, _TRAILING, True, 2),
    FewStep("tcd", "TCD", "TCD", 4, 1.0, 8, {}, True, 1),
    FewStep("dmd2", "DMD2", "LCM", 4, 1.0, 4),
    FewStep("lightning", "SDXL-Lightning", "Euler", 4, 1.0, 8, _TRAILING),
    LCM,
    FewStep("lcm-lora", "LCM LoRA", "LCM", 4, 1.0, 8, {}, True, 0),
)}

# name patterns, most specific first; a name is the model folder/file or the LoRA file
_NAMES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"hyper[-_ ]?sd.*?(?<!\d)1[-_ ]?step", re.I), "hyper-sd-1"),
    (re.compile(r"hyper[-_ ]?sd", re.I), "hyper-sd"),
    (re.compile(r"sdxs", re.I), "sdxs"),
    (re.compile(r"turbo", re.I), "sd-turbo"),
    (re.compile(r"dmd2?(?![a-z])", re.I), "dmd2"),
    (re.compile(r"lightning", re.I), "lightning"),
    (re.compile(r"(?<![a-z])tcd", re.I), "tcd"),
    (re.compile(r"lcm", re.I), "lcm"),
]
_STEPS = re.compile(r"(?<!\d)(\d)[-_ ]?steps?", re.I)


def by_name(name: str) -> FewStep | None:
    """The family a file or folder name says, if any ("Hyper-SD15-1step-lora" → Hyper-SD
    1-step, "sd_xl_turbo_1.0" → Turbo)."""
    for pattern, key in _NAMES:
        if pattern.search(name):
            return FAMILIES[key]
    return None


def _steps_in_name(family: FewStep, name: str) -> FewStep:
    """A LoRA or model trained for n steps ("…-2steps-…", "…_4step_…") samples with n."""
    found = _STEPS.search(name)
    if found and family.key not in ("hyper-sd-1",):
        n = int(found.group(1))
        if 1 <= n <= 8:
            from dataclasses import replace

            return replace(family, steps=n, balanced_steps=max(n, family.balanced_steps))
    return family


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_model(path: Path | None, name: str) -> FewStep | None:
    """The few-step family of a model (None: an ordinary model, sampled as usual).

    Reads the name, then a diffusers folder's ``model_index.json`` (``_name_or_path``),
    its UNet config (``time_cond_proj_dim``: an LCM-distilled UNet) and scheduler config
    (an ``LCMScheduler``; Turbo ships ``timestep_spacing: trailing`` with Euler).
    """
    names = [name, path.name if path is not None else ""]
    if path is not None and path.is_dir():
        index = _read_json(path / "model_index.json")
        names.append(str(index.get("_name_or_path", "")))
    for text in names:
        if text and (found := by_name(text)) is not None and not found.adapter:
            return _steps_in_name(found, text)
    if path is None or not path.is_dir():
        return None
    unet = _read_json(path / "unet" / "config.json")
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json")
    if unet.get("time_cond_proj_dim") or scheduler.get("_class_name") == "LCMScheduler":
        return LCM
    return None


def lora_metadata(path: Path) -> dict[str, str]:
    """A safetensors LoRA's ``__metadata__`` (kohya's ss_output_name, a title…)."""
    if path.suffix.lower() != ".safetensors":
        return {}
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size > 50_000_000:
                return {}
            header = json.loads(f.read(size))
    except (OSError, ValueError):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def detect_adapter(path: Path) -> FewStep | None:
    """The few-step family of a LoRA file, from its name, folder and metadata."""
    meta = lora_metadata(path)
    texts = [path.stem, path.parent.name, meta.get("ss_output_name", ""),
             meta.get("modelspec.title", ""), meta.get("name", "")]
    for text in texts:
        if text and (found := by_name(text)) is not None:
            if found.key == "lcm":
                found = FAMILIES["lcm-lora"]
            if not found.adapter:
                continue  # e.g. "turbo" in a LoRA name: a style, not a distillation
            return _steps_in_name(found, text)
    return None


_FAMILY_TAGS = {"sd15": re.compile(r"sd[-_ ]?(?:v?1[-_.]?5|15)|sdv1|sd1", re.I),
                "sdxl": re.compile(r"xl", re.I)}


def adapter_fits(path: Path, family: str) -> bool:
    """Whether a few-step LoRA's name says it is for ``family`` (SD1.5 or SDXL)."""
    text = f"{path.parent.name} {path.stem}"
    is_xl = bool(_FAMILY_TAGS["sdxl"].search(text))
    return is_xl if family == "sdxl" else not is_xl


def best_adapter(lora_dir: Path | None, family: str) -> tuple[Path, FewStep] | None:
    """The best few-step LoRA for ``family`` in ``lora_dir``: Hyper-SD's 1-step, then
    Hyper-SD n-step, then TCD, then LCM (by the fewest clean steps their cards give)."""
    if lora_dir is None or not lora_dir.is_dir():
        return None
    found = []
    for path in sorted(lora_dir.rglob("*.safetensors")):
        kind = detect_adapter(path)
        if kind is not None and adapter_fits(path, family):
            found.append((-kind.rank, kind.steps, str(path), path, kind))
    if not found:
        return None
    best = min(found)
    return best[3], best[4]
