"""From a finished interview to a checked prompt spec, and its one-axis variations.

:meth:`SpecBuilder.build` makes ONE structured LLM call (two when the answer is unusable)
and then applies deterministic rules the model cannot break:

1. the positive prompt is assembled from named parts in a fixed order
   (subject → setting/time/weather → lighting/palette → framing/style → quality tags),
   and every part must be English (one corrective retry, then :class:`ModelOutputError`);
   parts keep only the A1111 syntax the engine honours, and a count in the subject is
   weighted the A1111 way ("two women playing…" → "(two women:1.2) playing…");
2. the thick negative preset for the model family (``prompts/negatives.yaml``) is merged
   with the scene's own negatives, deduplicated case-insensitively, order kept;
3. settings are checked against :class:`ImageRequest`'s rules; a size that is invalid or
   does not match the requested aspect becomes the family's native size for that aspect.

:meth:`SpecBuilder.variations` asks, in ONE call, for N variants that each replace exactly
one part (axis); duplicates are dropped and missing ones are filled from
``prompts/styles.yaml`` so the result is always N distinct prompts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from assistant.prompting.interview import Aspect, Lang
from prompts.loader import load_yaml
from tools.core.request import ImageRequest, parse_request
from tools.core.samplers import DEFAULT_SAMPLER
from tools.infotext.prompt_syntax import emphasize
from tools.llm.text import dedupe_terms, model_prompt

__all__ = [
    "AXES",
    "PromptParts",
    "PromptSpec",
    "SpecSettings",
    "dedupe_terms",
    "merge_negative",
    "native_size",
]

Family = Literal["sd15", "sdxl"]
Axis = Literal["lighting", "framing", "style", "time_of_day", "color_palette", "weather"]
AXES: tuple[Axis, ...] = get_args(Axis)
MAX_VARIANTS = 8

NATIVE_SIZES: dict[Family, dict[Aspect, tuple[int, int]]] = {
    "sd15": {"square": (512, 512), "portrait": (512, 768), "landscape": (768, 512)},
    "sdxl": {"square": (1024, 1024), "portrait": (832, 1216), "landscape": (1216, 832)},
}
# Pixel counts each family handles without duplicated subjects or mush.
_PIXELS: dict[Family, tuple[int, int]] = {
    "sd15": (384 * 384, 768 * 1024),
    "sdxl": (768 * 768, 1536 * 1536),
}
FAMILY_DEFAULTS: dict[Family, dict[str, Any]] = {
    "sd15": {"steps": 25, "cfg_scale": 7.0, "sampler": DEFAULT_SAMPLER},
    "sdxl": {"steps": 30, "cfg_scale": 6.0, "sampler": DEFAULT_SAMPLER},
}
STEPS_RANGE, CFG_RANGE = (15, 60), (3.0, 12.0)
COUNT_WEIGHT = 1.2  # how much a counted subject is stressed: "(two women:1.2)"
_WORD = re.compile(r"[A-Za-z0-9'-]+")


# --- models ---------------------------------------------------------------------------------
class PromptParts(BaseModel):
    """The positive prompt by part; field order IS the prompt order."""

    model_config = ConfigDict(extra="ignore")

    subject: str = Field("", description="who/what, appearance, clothing, pose, action")
    setting: str = Field("", description="place and surroundings")
    time_of_day: str = ""
    weather: str = ""
    lighting: str = ""
    color_palette: str = ""
    framing: str = Field("", description="shot size and camera angle")
    style: str = Field("", description="medium and art style")

    @field_validator(
        "subject",
        "setting",
        "time_of_day",
        "weather",
        "lighting",
        "color_palette",
        "framing",
        "style",
        mode="before",
    )
    @classmethod
    def _lenient(cls, v: object) -> object:
        return model_prompt(v)

    def compose(self, family: Family) -> str:
        """The positive prompt: parts in order (the subject's count weighted), then the
        family's quality tags."""
        parts = [getattr(self, name).strip() for name in type(self).model_fields]
        parts[0] = weight_count(parts[0])
        quality = load_yaml("styles.yaml")["quality"][family]
        return ", ".join(dedupe_terms([*parts, *quality]))


class SpecSettings(BaseModel):
    """Generation settings, already valid for :class:`ImageRequest`."""

    width: int
    height: int
    steps: int
    cfg_scale: float
    sampler: str
    seed: int | None = None


class PromptSpec(BaseModel):
    """A ready-to-run prompt: what to show the user and what to send to the engine."""

    positive: str
    negative: str
    parts: PromptParts
    settings: SpecSettings
    reasons: dict[str, str] = Field(
        default_factory=dict, description="One line per setting: size, steps, cfg_scale, ..."
    )
    user_words: list[str] = Field(default_factory=list)
    family: Family = "sd15"
    language: Lang = "en"
    axis: Axis | None = Field(None, description="For a variation: the one axis changed")
    label: str = Field("", description="For a variation: a short name of the change")

    def to_image_request(self, overrides: Mapping[str, Any] | None = None) -> ImageRequest:
        """An :class:`ImageRequest` (raises :class:`InvalidRequest` on a bad override)."""
        data: dict[str, Any] = {
            "prompt": self.positive,
            "negative_prompt": self.negative,
            **self.settings.model_dump(),
        }
        data.update(overrides or {})
        return parse_request(data)


# ASCII in the grammar makes "English only" a rule the model cannot break, instead of a
# retry that a small model fails again (SmolLM2-135M: 4/4 Japanese specs failed twice).
# Anchored, no quote or backslash in the class: llama.cpp and Ollama both compile it.
ENGLISH = r"^[A-Za-z0-9 ,.'()!?:;/&+-]*$"
PROMPT_FIELD_BOUNDS = {"maxLength": 150, "pattern": ENGLISH}


def _bound_spec_schema(schema: dict[str, Any]) -> None:
    """Schema-only bounds (the lenient parser still accepts longer values)."""
    for name, prop in schema.get("properties", {}).items():
        if name in PromptParts.model_fields or name == "negative_extra":
            prop.update(PROMPT_FIELD_BOUNDS)
        elif name.endswith("_reason"):
            prop["maxLength"] = 100
        elif name == "sampler":
            prop["maxLength"] = 40


class SpecDraft(PromptParts):
    """The spec step's structured output (all prompt fields in English)."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_bound_spec_schema)

    subject: str = Field(description="who/what, appearance, clothing, pose, action")
    negative_extra: str = Field("", description="things this picture must avoid, English")
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    seed: int | None = None
    size_reason: str = ""
    steps_reason: str = ""
    cfg_scale_reason: str = ""
    sampler_reason: str = ""

    @field_validator("negative_extra", mode="before")
    @classmethod
    def _lenient_negative(cls, v: object) -> object:
        return model_prompt(v)


# --- deterministic rules --------------------------------------------------------------------
def merge_negative(family: Family, extra: str = "", presets: Sequence[str] | None = None) -> str:
    """The family's preset negatives (all groups unless ``presets`` names some) + ``extra``."""
    table: dict[str, list[str]] = load_yaml("negatives.yaml")[family]
    groups = list(presets) if presets is not None else list(table)
    terms = [term for group in groups for term in table[group]]
    return ", ".join(dedupe_terms([*terms, extra]))


def weight_count(subject: str) -> str:
    """``subject`` with its first English count phrase weighted the A1111 way.

    "two women playing beach volleyball" → "(two women:1.2) playing beach volleyball"
    (CLIP often loses counts; the weight stresses exactly them). The phrase is the number
    and up to three words before a stop word, an -ing word or a comma
    (``prompts/count_words.yaml``); measures ("two days") are not counts. A subject that
    already carries brackets (the model weighted it) is left as it is.
    """
    if any(c in subject for c in "()[]"):
        return subject
    table = load_yaml("count_words.yaml")
    numbers, units, stops = set(table["en_numbers"]), set(table["en_units"]), set(table["en_stop"])
    found = list(_WORD.finditer(subject))
    for i, m in enumerate(found):
        word = m.group().casefold()
        if word not in numbers and not (word.isdigit() and 2 <= int(word) <= 99):
            continue
        end = m
        for nxt in found[i + 1:i + 4]:
            w = nxt.group().casefold()
            if (subject[end.end():nxt.start()].strip() or w in stops or w.endswith("ing")
                    or (end is m and w in units)):
                break
            end = nxt
        if end is not m:
            phrase = subject[m.start():end.end()]
            return subject[:m.start()] + emphasize(phrase, COUNT_WEIGHT) + subject[end.end():]
    return subject


def aspect_of(width: int, height: int) -> Aspect:
    ratio = width / height
    return "landscape" if ratio > 1.15 else "portrait" if ratio < 0.87 else "square"


def native_size(family: Family, aspect: Aspect | None) -> tuple[int, int]:
    """The size ``family`` was trained for, in ``aspect`` (square when unknown)."""
    return NATIVE_SIZES[family][aspect or "square"]


def size_fits(family: Family, w: int | None, h: int | None, aspect: Aspect | None) -> bool:
    if w is None or h is None or w % 8 or h % 8 or not (64 <= min(w, h) <= max(w, h) <= 2048):
        return False
    lo, hi = _PIXELS[family]
    return lo <= w * h <= hi and (aspect is None or aspect_of(w, h) == aspect)
