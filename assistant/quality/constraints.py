"""Checkable constraints derived from a prompt spec: what a finished picture must show.

:meth:`ConstraintDeriver.derive` makes ONE structured LLM call (two when the first
answer is unusable; prompt in ``prompts/constraints.md``) and then applies rules the model
cannot break:

1. every constraint gets a known ``kind`` and an English yes/no ``question`` phrased so
   that *yes* means the picture is right; counts and text checks use fixed wording so the
   vision model always reads the same question;
2. numbers the person typed ("two women", 「二人の女性」「猫が三匹」, see
   :mod:`assistant.quality.counts`) are cross-checked: the person's number wins over the model's,
   and a count the model missed is added;
3. a ``text_free`` check is always present unless the person asked for lettering.

When the model twice answers unusably, the rule-based constraints alone are returned:
a missing checklist item must never stop a picture from being made.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Literal, get_args

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator

from assistant.prompting.spec import PromptSpec
from assistant.quality.counts import (
    EN_NUMBER_WORDS,
    CountMention,
    find_counts,
    singular,
    wants_text,
)
from prompts.loader import render
from tools.core.errors import ModelOutputError
from tools.core.messages import has_japanese, language_name, msg
from tools.llm.structured import LLMCallCounter, StructuredLLM

__all__ = [
    "KINDS",
    "Constraint",
    "ConstraintDeriver",
    "ConstraintKind",
    "count_question",
    "merge_constraints",
    "rule_constraints",
]

log = logging.getLogger(__name__)

ConstraintKind = Literal["count", "object", "action", "color", "text_free", "style"]
KINDS: tuple[ConstraintKind, ...] = get_args(ConstraintKind)
Source = Literal["model", "rule", "both"]
MAX_CONSTRAINTS = 5
TEXT_FREE_QUESTION = (
    "Is the image free of any visible written text, letters, numbers, logos or watermarks?"
)
_KIND_ALIASES: dict[str, ConstraintKind] = {
    "number": "count",
    "quantity": "count",
    "colour": "color",
    "text": "text_free",
    "no_text": "text_free",
    "notext": "text_free",
    "textfree": "text_free",
    "medium": "style",
    "thing": "object",
    "pose": "action",
    "activity": "action",
}
_NUMBER_WORDS = {w: i for i, w in enumerate(EN_NUMBER_WORDS)}


class Constraint(BaseModel):
    """One thing a finished picture must satisfy, asked as an English yes/no question.

    ``expected``: the number for ``count``, the colour/style word for ``color``/``style``,
    ``True`` otherwise. ``label`` names it for the person, in their language.
    """

    model_config = ConfigDict(extra="forbid")

    kind: ConstraintKind
    subject: str
    expected: int | str | bool = True
    question: str
    label: str = ""
    source: Source = "model"

    def name(self) -> str:
        """What to call this constraint in a sentence to the person."""
        return self.label or self.subject


class ConstraintDraft(BaseModel):
    """One check as the model writes it (lenient types; rules clean it up)."""

    model_config = ConfigDict(extra="ignore")

    kind: str = Field(json_schema_extra={"enum": list(KINDS)})
    subject: str = ""
    expected: str = ""
    question: str = ""
    label: str = ""

    @field_validator("kind", "subject", "expected", "question", "label", mode="before")
    @classmethod
    def _text(cls, v: object) -> object:
        return "" if v is None else str(v) if isinstance(v, (int, float, bool)) else v


class ConstraintsReply(BaseModel):
    """The constraint step's structured output."""

    constraints: list[ConstraintDraft] = Field(default_factory=list)


# --- deterministic rules -------------------------------------------------------------------
def count_question(expected: int, subject: str) -> str:
    """The fixed counting question ("Are there exactly 2 women in the image?")."""
    if expected == 1:
        return f"Is there exactly one {singular(subject)} in the image?"
    return f"Are there exactly {expected} {subject} in the image?"


def _as_int(text: str) -> int | None:
    m = re.search(r"\d+", text)
    if m:
        return int(m.group())
    return _NUMBER_WORDS.get(text.strip().lower())


def _question(text: str) -> str:
    text = " ".join(text.split())
    return text if not text or text.endswith("?") else text.rstrip(".") + "?"


def normalize(draft: ConstraintDraft, lang: str) -> Constraint | None:
    """A clean :class:`Constraint` from a model draft, or None when it can't be checked."""
    raw = draft.kind.strip().lower().replace("-", "_").replace(" ", "_")
    kind = _KIND_ALIASES.get(raw, raw)
    subject = " ".join(draft.subject.split())
    label = " ".join(draft.label.split())
    if kind == "text_free":
        return text_free_constraint(lang, source="model")
    if kind not in KINDS or not subject:
        return None
    question = _question(draft.question)
    expected: int | str | bool = True
    if kind == "count":
        n = _as_int(draft.expected)
        if n is None or not 0 < n <= 50:
            return None
        expected, question = n, count_question(n, subject)
    elif kind in ("color", "style"):
        expected = draft.expected.strip().lower()
        if not expected or expected == "yes":
            return None
        fallback = (
            f"Is the {subject} {expected}?"
            if kind == "color"
            else f"Does the image look like {expected}?"
        )
        question = question or fallback
    elif not question:
        question = (
            f"Is there a {subject} in the image?"
            if kind == "object"
            else f"Is the subject {subject}?"
        )
    return Constraint(
        kind=kind,
        subject=subject,
        expected=expected,
        question=question,
        label=label,
    )


def text_free_constraint(lang: str, source: Source = "rule") -> Constraint:
    """The fixed "no lettering" check."""
    return Constraint(
        kind="text_free",
        subject="text",
        expected=True,
        question=TEXT_FREE_QUESTION,
        label=msg("check_text_free_label", lang),
        source=source,
    )


def rule_constraints(spec: PromptSpec) -> list[Constraint]:
    """Constraints read from the person's words alone (no model): counts and no-text."""
    return merge_constraints([], spec)


def _matches(c: Constraint, m: CountMention, model_counts: list[Constraint]) -> bool:
    if singular(c.subject).casefold().split()[-1:] == m.singular.casefold().split()[-1:]:
        return True
    if not m.known:  # 「二人」: only the number is known; the model's noun is better
        return c.expected == m.expected or len(model_counts) == 1
    return False


def merge_constraints(
    model: Sequence[Constraint], spec: PromptSpec, max_model: int = MAX_CONSTRAINTS
) -> list[Constraint]:
    """The model's constraints (at most ``max_model``) cross-checked with the rules."""
    lang = spec.language
    out: list[Constraint] = []
    seen: set[tuple[str, str]] = set()
    for c in model[:max_model]:
        key = (c.kind, c.subject.casefold())
        if key not in seen and c.kind != "text_free":
            seen.add(key)
            out.append(c.model_copy())
    counts = [c for c in out if c.kind == "count"]
    for m in find_counts(spec.user_words):
        match = next((c for c in counts if _matches(c, m, counts)), None)
        if match is None:
            out.insert(
                sum(1 for c in out if c.kind == "count"),  # counts first: they fail most
                Constraint(
                    kind="count",
                    subject=m.subject,
                    expected=m.expected,
                    question=count_question(m.expected, m.subject),
                    label=m.span,
                    source="rule",
                ),
            )
            continue
        counts.remove(match)
        if match.expected != m.expected:  # the person's number wins
            log.info("count %r: model said %s, words say %s", m.span, match.expected, m.expected)
            subject = match.subject if not m.known else m.subject
            match.subject, match.expected, match.source = subject, m.expected, "rule"
            match.question = count_question(m.expected, subject)
            match.label = m.span
        else:
            match.source = "both"
            match.label = match.label or m.span
    if not wants_text(spec.user_words):
        had = any(c.kind == "text_free" for c in model)
        out.append(text_free_constraint(lang, source="both" if had else "rule"))
    return out


def _english_fields(reply: ConstraintsReply) -> str | None:
    bad = [
        i + 1
        for i, c in enumerate(reply.constraints)
        if has_japanese(c.subject) or has_japanese(c.question) or has_japanese(c.expected)
    ]
    if bad:
        items = ", ".join(map(str, bad))
        return (
            f"Checks {items} contain Japanese in subject/expected/question; write those in English."
        )
    return None


# --- the deriver ----------------------------------------------------------------------------
class ConstraintDeriver:
    """Derives constraints for a spec with ``model`` (one call; ``counter`` counts it)."""

    def __init__(
        self,
        model: BaseChatModel | StructuredLLM,
        *,
        counter: LLMCallCounter | None = None,
        max_constraints: int = MAX_CONSTRAINTS,
    ) -> None:
        self.llm = model if isinstance(model, StructuredLLM) else StructuredLLM(model, counter)
        self.max_constraints = max_constraints

    @property
    def counter(self) -> LLMCallCounter:
        return self.llm.counter

    async def derive(self, spec: PromptSpec) -> list[Constraint]:
        """The checklist for ``spec``: model constraints merged with the word rules."""
        try:
            reply = await self.llm.ask(
                ConstraintsReply, self.messages(spec), purpose="constraints", check=_english_fields
            )
        except ModelOutputError as err:
            log.warning("constraints: using word rules only (%s)", err)
            return rule_constraints(spec)
        drafts = [normalize(d, spec.language) for d in reply.constraints]
        return merge_constraints([c for c in drafts if c], spec, self.max_constraints)

    def messages(self, spec: PromptSpec) -> list[BaseMessage]:
        system = render(
            "constraints.md",
            max_constraints=self.max_constraints,
            kinds=", ".join(KINDS),
            language=language_name(spec.language),
        )
        words = "\n".join(f"- {w}" for w in spec.user_words) or "- (none)"
        parts = {k: v for k, v in spec.parts.model_dump().items() if v}
        user = (
            f"The person's words:\n{words}\n\n"
            f"The English prompt written for the picture, by part:\n"
            f"{json.dumps(parts, ensure_ascii=False, indent=1)}"
        )
        return [SystemMessage(system), HumanMessage(user)]
