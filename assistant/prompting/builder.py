"""The prompt writer: from a finished interview to a checked prompt spec, and its variations.

:meth:`SpecBuilder.build` asks the model for a :class:`~assistant.prompting.spec.SpecDraft`
(structured output, checked to be English), then settles the settings with
:func:`settle_settings` (the model's value and reason survive only when valid) and merges
the family's negative presets. :meth:`SpecBuilder.variations` delegates to
:mod:`assistant.prompting.variations`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from assistant.prompting.interview import Aspect, InterviewState, Lang, is_skip
from assistant.prompting.nonanswer import grounded_subject
from assistant.prompting.spec import (
    CFG_RANGE,
    FAMILY_DEFAULTS,
    NATIVE_SIZES,
    STEPS_RANGE,
    Family,
    PromptParts,
    PromptSpec,
    SpecDraft,
    SpecSettings,
    merge_negative,
    native_size,
    size_fits,
)
from assistant.prompting.spec_card import setting_reason
from assistant.prompting.variations import make_variations
from prompts.loader import render
from tools.core.errors import ModelOutputError
from tools.core.messages import has_japanese, language_name
from tools.core.samplers import canonical_sampler
from tools.llm.structured import LLMCallCounter, StructuredLLM

log = logging.getLogger(__name__)

_FAMILY_NAMES = {"sd15": "Stable Diffusion 1.5", "sdxl": "SDXL"}
_PROMPT_STYLE = {
    "sd15": "Use short comma-separated tags (SD 1.5 was trained on tag-like captions).",
    "sdxl": "Use short descriptive phrases separated by commas (SDXL understands prose).",
}


def sensible_reason(text: str, lang: str) -> str:
    """The model's reason if it reads as a sentence in the person's language, else ''.

    Small models put slot values ("beach volleyball"), other scripts or babble here; the
    card then shows Egaki's own reason instead.
    """
    text = " ".join(text.split())
    if not text or len(text) > 160:
        return ""
    if lang == "ja":
        return text if has_japanese(text) and len(text) >= 6 else ""
    return text if not has_japanese(text) and len(text.split()) >= 4 else ""


def seed_from_words(seed: int | None, words: Sequence[str]) -> int | None:
    """The model's seed only when the person wrote it (models answer 42 / 1234567 by habit)."""
    if seed is None or not 0 <= seed < 2**32:
        return None
    return seed if re.search(rf"(?<!\d){seed}(?!\d)", " ".join(words)) else None


def settle_settings(
    draft: SpecDraft, family: Family, aspect: Aspect | None, lang: Lang,
    words: Sequence[str] = (),
) -> tuple[SpecSettings, dict[str, str]]:
    """Valid settings from the model's proposal, with a one-line reason for each."""
    d = FAMILY_DEFAULTS[family]
    reasons: dict[str, str] = {}  # the model's reason survives only if its value did
    if size_fits(family, draft.width, draft.height, aspect):
        width, height = int(draft.width or 0), int(draft.height or 0)
        reasons["size"] = draft.size_reason
    else:
        width, height = native_size(family, aspect)
    lo, hi = STEPS_RANGE
    steps = d["steps"] if draft.steps is None else min(max(draft.steps, lo), hi)
    if steps == draft.steps:
        reasons["steps"] = draft.steps_reason
    lo_cfg, hi_cfg = CFG_RANGE
    cfg = d["cfg_scale"] if draft.cfg_scale is None else min(max(draft.cfg_scale, lo_cfg), hi_cfg)
    if cfg == draft.cfg_scale:
        reasons["cfg_scale"] = draft.cfg_scale_reason
    try:
        sampler = canonical_sampler(draft.sampler or "")
        reasons["sampler"] = draft.sampler_reason
    except ValueError:
        sampler = d["sampler"]
    seed = seed_from_words(draft.seed, words)
    settings = SpecSettings(
        width=width, height=height, steps=steps, cfg_scale=cfg, sampler=sampler, seed=seed
    )
    for key in ("size", "steps", "cfg_scale", "sampler", "seed"):
        reasons[key] = sensible_reason(reasons.get(key, ""), lang) or setting_reason(
            key, settings, family, lang
        )
    return settings, reasons


def _english_only(draft: Any) -> str | None:
    fields = [*PromptParts.model_fields, "negative_extra"]
    bad = [f for f in fields if has_japanese(str(getattr(draft, f, "")))]
    if bad:
        return f"The fields {', '.join(bad)} contain Japanese; write every prompt field in English."
    if not draft.subject.strip():
        return "`subject` is empty; describe the main subject in English."
    return None


def fallback_draft(state: InterviewState) -> SpecDraft:
    """A spec draft without the model: English slot values, else the person's words."""
    slots = {k: v for k, v in state.slots.items() if v and not has_japanese(v)}
    subject = slots.pop("subject", "") or ", ".join(
        w for w in state.user_words if w.strip() and not is_skip(w)
    )
    fields = {k: v for k, v in slots.items() if k in PromptParts.model_fields}
    return SpecDraft(subject=subject[:300] or "a picture", **fields)


# --- the builder ----------------------------------------------------------------------------
class SpecBuilder:
    """Writes prompt specs and variations with ``model``; ``calls`` counts LLM invocations."""

    def __init__(self, model: BaseChatModel, *, counter: LLMCallCounter | None = None) -> None:
        self.llm = StructuredLLM(model, counter)
        self.fell_back = False  # the last build used the person's words, not the model's spec

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
        self.fell_back = False
        try:
            draft = await self.llm.ask(
                SpecDraft, self._spec_messages(state, family), purpose="spec",
                check=_english_only,
            )
        except ModelOutputError as err:
            # GO always reaches a picture: the person's own words (and English slots) stand in
            log.warning("spec from the interview itself: %s", err)
            draft, self.fell_back = fallback_draft(state), True
        words = [w for w in state.user_words if not is_skip(w)]
        subject = grounded_subject(draft.subject, words)  # a nonsense subject: their words
        if subject != draft.subject:
            log.warning("spec subject %r unrelated to the request; the person's words stand in",
                        draft.subject)
            draft = draft.model_copy(update={"subject": subject})
        parts = PromptParts.model_validate(draft.model_dump(include=set(PromptParts.model_fields)))
        settings, reasons = settle_settings(
            draft, family, state.aspect, state.language, state.user_words
        )
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

        See :func:`assistant.prompting.variations.make_variations` for the rules.
        """
        return await make_variations(self.llm, spec, n, axes)

    @staticmethod
    def _spec_messages(state: InterviewState, family: Family) -> list[BaseMessage]:
        language = language_name(state.language)
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
