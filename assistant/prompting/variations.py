"""Variations ("gacha"): N distinct prompts, each changing exactly ONE axis of a spec.

One structured LLM call proposes ``{axis, value, label}`` triples. Because a variant is
built by replacing a single :class:`PromptParts` field, "one axis per variant" holds by
construction. Proposals that name an unknown axis, are not English, change nothing or
repeat another prompt are dropped; the rest are topped up deterministically from
``prompts/styles.yaml`` (least-used axis first), so the result is always N distinct prompts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, field_validator

from assistant.prompting.spec import AXES, MAX_VARIANTS, PromptSpec
from prompts.loader import load_yaml, render
from tools.core.errors import InvalidRequest
from tools.core.messages import has_japanese, language_name, localize
from tools.llm.structured import StructuredLLM
from tools.llm.text import lenient_text, model_prompt

_AXIS_ALIASES = {
    "time": "time_of_day",
    "light": "lighting",
    "color": "color_palette",
    "colors": "color_palette",
    "colour_palette": "color_palette",
    "palette": "color_palette",
    "camera": "framing",
    "composition": "framing",
}


ENGLISH = r"^[A-Za-z0-9 ,.'()!?:;/&+-]*$"  # as the spec's prompt fields


class VariantDraft(BaseModel):
    """One proposed variant: the axis it changes, the new English text, a short label."""

    axis: str = Field(json_schema_extra={"enum": list(AXES)})  # grammar: a known axis
    # schema-only bounds: a short English phrase (ASCII, as for the spec) and a short label
    value: str = Field(json_schema_extra={"maxLength": 100, "pattern": ENGLISH})
    label: str = Field("", json_schema_extra={"maxLength": 30})

    @field_validator("label", mode="before")
    @classmethod
    def _lenient(cls, v: object) -> object:
        return lenient_text(v)

    @field_validator("value", mode="before")
    @classmethod
    def _honoured(cls, v: object) -> object:
        return model_prompt(v)  # only prompt syntax the engine honours


class VariationsReply(BaseModel):
    """The variations step's structured output."""

    variants: list[VariantDraft] = Field(default_factory=list, json_schema_extra={"maxItems": 8})


def axis_name(raw: str) -> str:
    """Normalize "Time of day" / "colour" / "camera" to an axis name."""
    key = raw.strip().casefold().replace("-", "_").replace(" ", "_")
    return _AXIS_ALIASES.get(key, key)


def swap_axis(spec: PromptSpec, axis: str, value: str, label: str) -> PromptSpec:
    """``spec`` with one part replaced (and the positive prompt recomposed)."""
    parts = spec.parts.model_copy(update={axis: value})
    return spec.model_copy(
        update={
            "parts": parts,
            "positive": parts.compose(spec.family),
            "axis": axis,
            "label": label,
        }
    )


async def make_variations(
    llm: StructuredLLM, spec: PromptSpec, n: int = 4, axes: Sequence[str] | None = None
) -> list[PromptSpec]:
    """``n`` distinct one-axis variants of ``spec`` from ONE call to ``llm``."""
    if not 1 <= n <= MAX_VARIANTS:
        raise InvalidRequest.of("variations_count", most=MAX_VARIANTS, n=n)
    allowed: list[str] = [axis_name(a) for a in axes] if axes else list(AXES)
    unknown = [a for a in allowed if a not in AXES]
    if unknown:
        raise InvalidRequest.of("variations_unknown_axes", unknown=unknown, axes=", ".join(AXES))
    reply = await llm.ask(VariationsReply, _messages(spec, n, allowed), purpose="variations")
    seen = {spec.positive.casefold()}
    out: list[PromptSpec] = []
    for v in reply.variants:
        axis, value = axis_name(v.axis), v.value.strip()
        if axis not in allowed or not value or has_japanese(value):
            continue
        label = v.label.strip()
        if not label or (spec.language == "en" and has_japanese(label)):
            label = value
        _add(out, seen, spec, axis, value, label)
        if len(out) == n:
            return out
    return _fill(out, seen, spec, n, allowed)


def _add(
    out: list[PromptSpec], seen: set[str], spec: PromptSpec, axis: str, value: str, label: str
) -> None:
    if value.casefold() == str(getattr(spec.parts, axis)).casefold():
        return
    variant = swap_axis(spec, axis, value, label)
    if variant.positive.casefold() not in seen:
        seen.add(variant.positive.casefold())
        out.append(variant)


def _fill(
    out: list[PromptSpec], seen: set[str], spec: PromptSpec, n: int, axes: list[str]
) -> list[PromptSpec]:
    """Deterministic top-up: least-used axis first, its next option from styles.yaml."""
    options: dict[str, list[dict[str, str]]] = load_yaml("styles.yaml")["axes"]
    cursor = dict.fromkeys(axes, 0)
    while len(out) < n:
        live = [a for a in axes if cursor[a] < len(options[a])]
        if not live:
            raise InvalidRequest.of("variations_too_few", n=len(out), axes=", ".join(axes))
        axis = min(live, key=lambda a: (sum(v.axis == a for v in out), axes.index(a)))
        option = options[axis][cursor[axis]]
        cursor[axis] += 1
        _add(out, seen, spec, axis, option["value"], localize(option, spec.language))
    return out


def _messages(spec: PromptSpec, n: int, axes: list[str]) -> list[BaseMessage]:
    language = language_name(spec.language)
    system = render("variations.md", n=n, axes=", ".join(axes), language=language)
    current = {a: getattr(spec.parts, a) for a in axes}
    user = (
        f"Prompt: {spec.positive}\n"
        f"Current value of each axis: {json.dumps(current)}\n"
        f"Give {n} variants."
    )
    return [SystemMessage(system), HumanMessage(user)]
