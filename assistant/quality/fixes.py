"""Deterministic prompt fixes for a round in which no candidate passed every check.

Rules come from ``prompts/quality_fixes.yaml``, keyed by constraint kind: ``front``
phrases go to the START of the positive prompt (CLIP weighs early tokens most; a count
is also stressed with an A1111 weight, ``(exactly two women:1.3)``), ``negative`` terms
are appended to the negative prompt. For counts the direction matters: when the checker
saw more than expected, ``too_many_negative`` is added; when fewer, ``too_few_front``.
Applying the same fix twice changes nothing (terms are deduplicated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from assistant.quality.constraints import Constraint
from assistant.quality.counts import number_word, singular
from prompts.loader import load_yaml
from tools.llm.text import dedupe_terms

__all__ = ["Failure", "PromptFix", "apply_fixes"]

MAX_PROMPT_CHARS = 8000  # ImageRequest's limit


@dataclass
class Failure:
    """One constraint that failed in ``times`` candidates; ``seen``: counts the checker saw."""

    constraint: Constraint
    times: int = 0
    seen: list[int] = field(default_factory=list)


@dataclass
class PromptFix:
    """The adjusted prompts and a short note per applied rule (for the report)."""

    prompt: str
    negative: str
    notes: list[str] = field(default_factory=list)


def _fill(template: str, c: Constraint) -> str:
    expected = c.expected
    values: dict[str, Any] = {
        "subject": c.subject,
        "singular": singular(c.subject),
        "expected": expected,
        "number_word": number_word(expected) if isinstance(expected, int) else expected,
    }
    if isinstance(expected, int) and expected == 1:
        values["subject"] = values["singular"]
    return template.format(**values).strip()


def _terms(rule: dict[str, Any], key: str, c: Constraint) -> list[str]:
    return [_fill(t, c) for t in rule.get(key) or []]


def apply_fixes(prompt: str, negative: str, failures: Sequence[Failure]) -> PromptFix:
    """``prompt``/``negative`` with the rules for every failed constraint applied."""
    rules: dict[str, dict[str, Any]] = load_yaml("quality_fixes.yaml")
    front: list[str] = []
    extra_negative: list[str] = []
    notes: list[str] = []
    for f in failures:
        c = f.constraint
        rule = rules.get(c.kind)
        if rule is None or f.times <= 0:
            continue
        add_front = _terms(rule, "front", c)
        add_negative = _terms(rule, "negative", c)
        if c.kind == "count" and f.seen and isinstance(c.expected, int):
            typical = median(f.seen)
            if typical > c.expected:
                add_negative += _terms(rule, "too_many_negative", c)
            elif typical < c.expected:
                add_front += _terms(rule, "too_few_front", c)
        front += add_front
        extra_negative += add_negative
        if add_front or add_negative:
            notes.append(
                f"{c.kind}:{c.subject}: front [{', '.join(add_front)}] "
                f"negative [{', '.join(add_negative)}]"
            )
    positive_terms = dedupe_terms([*front, prompt])
    wanted = {" ".join(t.casefold().split()) for t in positive_terms}
    # never forbid what the prompt asks for ("crowd" stays if the scene is a crowd)
    negative_terms = [
        t
        for t in dedupe_terms([negative, *extra_negative])
        if " ".join(t.casefold().split()) not in wanted
    ]
    new_prompt = ", ".join(positive_terms)[:MAX_PROMPT_CHARS]
    new_negative = ", ".join(negative_terms)[:MAX_PROMPT_CHARS]
    return PromptFix(new_prompt, new_negative, notes)
