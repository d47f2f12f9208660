"""The chat settings panel as data, and how its values change generation.

The UI renders :data:`FIELDS` with its own widgets; :func:`read_panel` turns submitted
values into a typed :class:`PanelChoice` (request overrides, negative presets, models).
"auto" everywhere means "let the prompt builder decide".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from assistant.prompting.spec import native_size
from assistant.studio.hires import (
    HIRES_DENOISING,
    HIRES_SCALES,
    HIRES_STEPS,
    INPAINT_AREAS,
    hires_overrides,
)
from tools.core.messages import msg
from tools.core.samplers import SAMPLERS
from tools.engines.diffusers.fastmodels.machine import PRESETS
from tools.engines.diffusers.fastmodels.machine import overrides as preset_overrides

WidgetKind = Literal["select", "switch", "slider", "text"]

NEGATIVE_PRESETS: dict[str, list[str] | None] = {
    "full": None,  # every group in prompts/negatives.yaml
    "people": ["quality", "anatomy", "hands", "faces", "text"],
    "scenery": ["quality", "text", "artifacts"],
    "light": ["quality", "text"],
    "none": [],
}
STEPS = ["auto", "4", "8", "15", "20", "25", "30", "40", "50"]
CFGS = ["auto", "1", "1.5", "3", "5", "7", "9", "12"]
CLIP_SKIPS = ["auto", "1", "2", "3", "4"]  # A1111's numbering: 1 = none, 2 = common for anime


@dataclass(frozen=True)
class Field:
    """One panel widget: id, kind, the catalogue key of its label, choices, initial value."""

    id: str
    kind: WidgetKind
    label_key: str
    initial: Any
    choices: list[str] = field(default_factory=list)
    min: float = 0
    max: float = 0
    step: float = 1

    def label(self, lang: str) -> str:
        return msg(self.label_key, lang)


FIELDS: list[Field] = [
    Field("chat_model", "text", "panel_chat_model", ""),
    Field("image_model", "text", "panel_image_model", ""),
    Field("aspect", "select", "panel_aspect", "auto", ["auto", "square", "portrait", "landscape"]),
    Field("steps", "select", "setting_steps", "auto", STEPS),
    Field("cfg_scale", "select", "setting_cfg_scale", "auto", CFGS),
    Field("sampler", "select", "setting_sampler", "auto", ["auto", *SAMPLERS]),
    Field("clip_skip", "select", "panel_clip_skip", "auto", CLIP_SKIPS),
    Field("seed", "text", "panel_seed", ""),
    Field("seed_lock", "switch", "panel_seed_lock", False),
    Field("batch_size", "slider", "panel_batch_size", 1, min=1, max=4),
    Field("preset", "select", "panel_preset", "auto", ["auto", *PRESETS]),
    Field("fast", "switch", "panel_fast", False),
    Field("best_of", "switch", "panel_best_of", False),
    Field("negative_preset", "select", "panel_negative_preset", "full", list(NEGATIVE_PRESETS)),
    Field("hires_scale", "select", "panel_hires_scale", "off", HIRES_SCALES),
    Field("hires_upscaler", "text", "panel_hires_upscaler", "Latent"),
    Field("hires_steps", "select", "panel_hires_steps", "0", HIRES_STEPS),
    Field("hires_denoising", "select", "panel_hires_denoising", "0.5", HIRES_DENOISING),
    Field("inpaint_area", "select", "panel_inpaint_area", "auto", INPAINT_AREAS),
]


@dataclass
class PanelChoice:
    """What the panel asks for, ready to apply."""

    overrides: dict[str, Any] = field(default_factory=dict)
    presets: list[str] | None = None
    seed_lock: bool = False
    chat_model: str = ""
    image_model: str = ""
    best_of: bool | None = None


def read_panel(values: dict[str, Any], family: str) -> PanelChoice:
    """Turn submitted widget values into overrides; unknown or blank values are ignored."""
    out = PanelChoice()
    aspect = values.get("aspect", "auto")
    if aspect in ("square", "portrait", "landscape"):
        w, h = native_size(family if family in ("sd15", "sdxl") else "sd15", aspect)  # type: ignore[arg-type]
        out.overrides.update(width=w, height=h)
    preset = str(values.get("preset", "auto"))
    if preset in PRESETS:  # first, so the panel's own steps/CFG/fast still win
        out.overrides.update(preset_overrides(preset))
    if str(values.get("steps", "auto")) != "auto":
        out.overrides["steps"] = int(float(values["steps"]))
    if str(values.get("cfg_scale", "auto")) != "auto":
        out.overrides["cfg_scale"] = float(values["cfg_scale"])
    if str(values.get("clip_skip", "auto")) in CLIP_SKIPS[1:]:
        out.overrides["clip_skip"] = int(values["clip_skip"])
    if values.get("sampler", "auto") in SAMPLERS:
        out.overrides["sampler"] = values["sampler"]
    seed = str(values.get("seed") or "").strip()
    if seed.lstrip("-").isdigit():
        out.overrides["seed"] = int(seed)
    batch = values.get("batch_size")
    if batch:
        out.overrides["batch_size"] = max(1, min(4, int(float(batch))))
    out.overrides.update(hires_overrides(values))
    if values.get("fast"):
        out.overrides["fast"] = True
    out.presets = NEGATIVE_PRESETS.get(str(values.get("negative_preset", "full")))
    out.seed_lock = bool(values.get("seed_lock"))
    if "best_of" in values:
        out.best_of = bool(values["best_of"])
    out.chat_model = str(values.get("chat_model") or "").strip()
    out.image_model = str(values.get("image_model") or "").strip()
    if out.image_model:
        out.overrides["model"] = out.image_model
    return out
