"""From a finished interview to a checked prompt spec, and its one-axis variations.

:meth:`SpecBuilder.build` makes ONE structured LLM call (two when the answer is unusable)
and then applies deterministic rules the model cannot break:

1. the positive prompt is assembled from named parts in a fixed order
   (subject → setting/time/weather → lighting/palette → framing/style → quality tags),
   and every part must be English (one corrective retry, then :class:`ModelOutputError`);
2. the thick negative preset for the model family (``prompts/negatives.yaml``) is merged
   with the scene's own negatives, deduplicated case-insensitively, order kept;
3. settings are checked against :class:`ImageRequest`'s rules; a size that is invalid or
   does not match the requested aspect becomes the family's native size for that aspect.

:meth:`SpecBuilder.variations` asks, in ONE call, for N variants that each replace exactly
one part (axis); duplicates are dropped and missing ones are filled from
``prompts/styles.yaml`` so the result is always N distinct prompts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator

from assistant.interview import Aspect, InterviewState, Lang
from assistant.spec_card import render_card, setting_reason
from assistant.structured import LLMCallCounter, StructuredLLM, has_japanese
from prompts.loader import load_yaml, render
from tools.request import ImageRequest, parse_request
from tools.samplers import DEFAULT_SAMPLER, canonical_sampler

__all__ = [
    "AXES",
    "PromptParts",
    "PromptSpec",
    "SpecBuilder",
    "SpecSettings",
    "dedupe_terms",
    "merge_negative",
    "native_size",
    "render_card",
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
_DEFAULTS: dict[Family, dict[str, Any]] = {
    "sd15": {"steps": 25, "cfg_scale": 7.0, "sampler": DEFAULT_SAMPLER},
    "sdxl": {"steps": 30, "cfg_scale": 6.0, "sampler": DEFAULT_SAMPLER},
}
_STEPS, _CFG = (15, 60), (3.0, 12.0)
_FAMILY_NAMES = {"sd15": "Stable Diffusion 1.5", "sdxl": "SDXL"}
_PROMPT_STYLE = {
    "sd15": "Use short comma-separated tags (SD 1.5 was trained on tag-like captions).",
    "sdxl": "Use short descriptive phrases separated by commas (SDXL understands prose).",
}


# --- models ---------------------------------------------------------------------------------
def lenient_text(v: object) -> object:
    """Models sometimes send a list of tags where a string is expected: join it."""
    if isinstance(v, list):
        return ", ".join(str(x) for x in v if str(x).strip())
    return "" if v is None else v


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
        return lenient_text(v)

    def compose(self, family: Family) -> str:
        """The positive prompt: parts in order, then the family's quality tags."""
        parts = [getattr(self, name).strip() for name in type(self).model_fields]
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


class SpecDraft(PromptParts):
    """The spec step's structured output (all prompt fields in English)."""

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
        return lenient_text(v)


# --- deterministic rules --------------------------------------------------------------------
def dedupe_terms(chunks: Iterable[str]) -> list[str]:
    """Split on commas, drop blanks and case-insensitive repeats, keep first-seen order."""
    seen: set[str] = set()
    out: list[str] = []
    for chunk in chunks:
        for term in (t.strip() for t in chunk.split(",")):
            key = " ".join(term.casefold().split())
            if key and key not in seen:
                seen.add(key)
                out.append(term)
    return out


def merge_negative(family: Family, extra: str = "", presets: Sequence[str] | None = None) -> str:
    """The family's preset negatives (all groups unless ``presets`` names some) + ``extra``."""
    table: dict[str, list[str]] = load_yaml("negatives.yaml")[family]
    groups = list(presets) if presets is not None else list(table)
    terms = [term for group in groups for term in table[group]]
    return ", ".join(dedupe_terms([*terms, extra]))


def aspect_of(width: int, height: int) -> Aspect:
    ratio = width / height
    return "landscape" if ratio > 1.15 else "portrait" if ratio < 0.87 else "square"


def native_size(family: Family, aspect: Aspect | None) -> tuple[int, int]:
    """The size ``family`` was trained for, in ``aspect`` (square when unknown)."""
    return NATIVE_SIZES[family][aspect or "square"]


def _size_ok(family: Family, w: int | None, h: int | None, aspect: Aspect | None) -> bool:
    if w is None or h is None or w % 8 or h % 8 or not (64 <= min(w, h) <= max(w, h) <= 2048):
        return False
    lo, hi = _PIXELS[family]
    return lo <= w * h <= hi and (aspect is None or aspect_of(w, h) == aspect)


def settle_settings(
    draft: SpecDraft, family: Family, aspect: Aspect | None, lang: Lang
) -> tuple[SpecSettings, dict[str, str]]:
    """Valid settings from the model's proposal, with a one-line reason for each."""
    d = _DEFAULTS[family]
    reasons: dict[str, str] = {}  # the model's reason survives only if its value did
    if _size_ok(family, draft.width, draft.height, aspect):
        width, height = int(draft.width or 0), int(draft.height or 0)
        reasons["size"] = draft.size_reason
    else:
        width, height = native_size(family, aspect)
    steps = d["steps"] if draft.steps is None else min(max(draft.steps, _STEPS[0]), _STEPS[1])
    if steps == draft.steps:
        reasons["steps"] = draft.steps_reason
    cfg = d["cfg_scale"] if draft.cfg_scale is None else min(max(draft.cfg_scale, _CFG[0]), _CFG[1])
    if cfg == draft.cfg_scale:
        reasons["cfg_scale"] = draft.cfg_scale_reason
    try:
        sampler = canonical_sampler(draft.sampler or "")
        reasons["sampler"] = draft.sampler_reason
    except ValueError:
        sampler = d["sampler"]
    seed = draft.seed if draft.seed is not None and 0 <= draft.seed < 2**32 else None
    settings = SpecSettings(
        width=width, height=height, steps=steps, cfg_scale=cfg, sampler=sampler, seed=seed
    )
    for key in ("size", "steps", "cfg_scale", "sampler", "seed"):
        reasons[key] = reasons.get(key, "").strip() or setting_reason(key, settings, family, lang)
    return settings, reasons


def _english_only(draft: Any) -> str | None:
    fields = [*PromptParts.model_fields, "negative_extra"]
    bad = [f for f in fields if has_japanese(str(getattr(draft, f, "")))]
    if bad:
        return f"The fields {', '.join(bad)} contain Japanese; write every prompt field in English."
    if not draft.subject.strip():
        return "`subject` is empty; describe the main subject in English."
    return None


# --- the builder ----------------------------------------------------------------------------
class SpecBuilder:
    """Writes prompt specs and variations with ``model``; ``calls`` counts LLM invocations."""

    def __init__(self, model: BaseChatModel, *, counter: LLMCallCounter | None = None) -> None:
        self.llm = StructuredLLM(model, counter)

    @property
    def counter(self) -> LLMCallCounter:
        return self.llm.counter

    @property
    def calls(self) -> int:
        return self.llm.counter.total

    async def build(
        self, state: InterviewState, family: Family = "sd15", presets: Sequence[str] | None = None
    ) -> PromptSpec:
        """One spec from the interview (1 LLM call; 2 if the first answer is unusable)."""
        draft = await self.llm.ask(
            SpecDraft, self._spec_messages(state, family), purpose="spec", check=_english_only
        )
        parts = PromptParts.model_validate(draft.model_dump(include=set(PromptParts.model_fields)))
        settings, reasons = settle_settings(draft, family, state.aspect, state.language)
        spec = PromptSpec(
            positive=parts.compose(family),
            negative=merge_negative(family, draft.negative_extra, presets),
            parts=parts,
            settings=settings,
            reasons=reasons,
            user_words=list(state.user_words),
            family=family,
            language=state.language,
        )
        spec.to_image_request()  # the engine's own rules, checked before anything runs
        return spec

    async def variations(
        self, spec: PromptSpec, n: int = 4, axes: Sequence[str] | None = None
    ) -> list[PromptSpec]:
        """``n`` distinct variants of ``spec``, each changing exactly one axis (1 LLM call).

        See :func:`assistant.variations.make_variations` for the rules.
        """
        from assistant.variations import make_variations  # it imports this module

        return await make_variations(self.llm, spec, n, axes)

    @staticmethod
    def _spec_messages(state: InterviewState, family: Family) -> list[BaseMessage]:
        language = "Japanese" if state.language == "ja" else "English"
        sizes = ", ".join(f"{a} {w}x{h}" for a, (w, h) in NATIVE_SIZES[family].items())
        system = render(
            "spec.md",
            family_name=_FAMILY_NAMES[family],
            prompt_style=_PROMPT_STYLE[family],
            sizes=sizes,
            language=language,
        )
        convo = []
        for i, words in enumerate(state.user_words):
            convo.append(f"Person: {words}")
            if i < len(state.questions) and state.questions[i]:
                convo.append("Assistant asked: " + " / ".join(state.questions[i]))
        known = json.dumps(state.slots, ensure_ascii=False)
        user = "\n".join([*convo, "", f"Details gathered so far: {known}"])
        return [SystemMessage(system), HumanMessage(user)]
