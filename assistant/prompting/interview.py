"""The short interview before a prompt is written: explicit, serialisable state + rules.

Each user message is one *exchange*. :meth:`Interviewer.step` makes at most one
structured LLM call that fills the slots it can infer and proposes up to two questions;
deterministic app rules then decide what is really asked:

- "GO" / 「おまかせ」 (the whole message) ends the interview with no LLM call;
- after ``max_exchanges`` exchanges the interview is over;
- a slot already known or already asked is never asked (again); at most two questions;
- questions that are empty or not in the user's language are replaced by the localized
  defaults from ``prompts/interview.yaml``;
- non-answers (instructions echoed, bare values as questions, a subject unrelated to the
  request: :mod:`assistant.prompting.nonanswer`) are dropped, and an answer unusable
  twice leaves the defaults: the interview degrades instead of failing;
- the person's words are in the record (:meth:`Interviewer.take`) before the model is
  asked, so a failed turn never loses them.

The state is a pydantic model, so ``state.model_dump_json()`` can live in a chat session.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any, Literal, get_args

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, field_validator

from assistant.prompting.nonanswer import drop_non_answers
from prompts.loader import load_yaml, render
from tools.core.errors import ModelOutputError
from tools.core.messages import has_japanese, lang_code, language_name, localize, msg
from tools.llm.structured import LLMCallCounter, StructuredLLM

log = logging.getLogger(__name__)

Slot = Literal["subject", "mood", "setting", "lighting", "clothing", "framing", "style", "aspect"]
SLOTS: tuple[Slot, ...] = get_args(Slot)  # impact order: most important first
Lang = Literal["en", "ja"]
Aspect = Literal["square", "portrait", "landscape"]
Reason = Literal["model", "skip", "max_exchanges", "nothing_to_ask", "asking", "done"]
MAX_QUESTIONS = 2
SLOT_CHARS = 60

# --- "GO" detection -----------------------------------------------------------------------
_EN_SKIP = re.compile(
    r"^(?:(?:ok|okay|yes|yeah|yep|just|please|now)\s+)*"
    r"(?:go|go go|go ahead|lets go|surprise me|you decide|up to you|your call|whatever"
    r"|dealers choice|skip|do it|make it|draw it|generate|generate it|thats fine"
    r"|thats good|sounds good|looks good|good enough)"
    r"(?:\s+(?:please|now|then|already|for me))*$"
)
_JA_SKIP = re.compile(
    r"^(?:じゃあ|では|もう)?"
    r"(?:おまかせ|お任せ|おまかせする|お任せする|任せる|任せた|まかせる|まかせた|そのまま"
    r"|それでいい|それで大丈夫|それでok|それで|ゴー|進めて|すすめて|作って|つくって|描いて"
    r"|かいて|生成して|決めて|きめて|いい感じに)"
    r"(?:で|します|お願い|おねがい|します|ください|下さい|よ|ね|です|でいい|いい)*$"
)
_STRIP = re.compile(r"[\s\"'`「」『』【】()（）!！?？.。、,，~〜♪☆★…・]+")


def is_skip(text: str) -> bool:
    """True when the WHOLE message means "go ahead, decide the rest" ("GO", 「おまかせ」).

    "go to the beach" is a description, not a skip: only short, complete phrases match.
    """
    norm = unicodedata.normalize("NFKC", text or "").casefold().strip()
    if not norm or len(norm) > 40:
        return False
    en = re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", norm.replace("’", "'"))).strip()
    if en and _EN_SKIP.match(en):
        return True
    return bool(_JA_SKIP.match(_STRIP.sub("", norm)))


def normalize_aspect(value: str | None) -> Aspect | None:
    """Map free text ("縦長", "9:16", "wide") to an aspect, or None when unclear."""
    v = unicodedata.normalize("NFKC", value or "").casefold()
    if any(k in v for k in ("portrait", "vertical", "tall", "縦", "9:16", "2:3", "3:4")):
        return "portrait"
    if any(k in v for k in ("landscape", "horizontal", "wide", "横", "16:9", "3:2", "4:3")):
        return "landscape"
    if any(k in v for k in ("square", "1:1", "正方形", "スクエア")):
        return "square"
    return None


# --- state ---------------------------------------------------------------------------------
class InterviewState(BaseModel):
    """Everything the interview knows; JSON-serialisable for the chat session."""

    model_config = ConfigDict(extra="forbid")

    language: Lang = "en"
    user_words: list[str] = Field(default_factory=list, description="User messages, verbatim")
    questions: list[list[str]] = Field(
        default_factory=list, description="Questions asked after each user message"
    )
    slots: dict[Slot, str] = Field(default_factory=dict, description="Known slot values")
    asked: list[Slot] = Field(default_factory=list, description="Slots already asked about")
    exchanges: int = 0
    done: bool = False

    @classmethod
    def start(cls, language: str = "en") -> InterviewState:
        """A fresh interview; ``language`` is the browser's, used until the user writes."""
        return cls(language=lang_code(language))

    @property
    def unknown(self) -> list[Slot]:
        """Slots with no value yet, most important first."""
        return [s for s in SLOTS if not self.slots.get(s)]

    @property
    def askable(self) -> list[Slot]:
        """Unknown slots not asked yet, most important first."""
        return [s for s in self.unknown if s not in self.asked]

    @property
    def aspect(self) -> Aspect | None:
        return normalize_aspect(self.slots.get("aspect"))


def _bound_slots(schema: dict[str, Any]) -> None:
    """Schema-only bounds (the grammar): a slot is a short phrase, and a bounded answer gets
    a small token budget (``num_predict`` / ``max_tokens``) instead of 2048 tokens."""
    for name, prop in schema.get("properties", {}).items():
        for branch in prop.get("anyOf", [prop]):
            if branch.get("type") == "string" and "enum" not in branch:
                branch["maxLength"] = 80 if name == "subject" else SLOT_CHARS


class SlotValues(BaseModel):
    """Slot values the model inferred (short English phrases; null = unknown)."""

    model_config = ConfigDict(json_schema_extra=_bound_slots)

    subject: str | None = None
    mood: str | None = None
    setting: str | None = None
    lighting: str | None = None
    clothing: str | None = None
    framing: str | None = None
    style: str | None = None
    aspect: Aspect | None = None

    @field_validator("aspect", mode="before")
    @classmethod
    def _lenient_aspect(cls, v: object) -> object:
        return normalize_aspect(v) if isinstance(v, str) else v


class ProposedQuestion(BaseModel):
    """One question the model wants to ask, and the slot it is about."""

    slot: str = Field(json_schema_extra={"enum": list(SLOTS)})  # grammar: a known slot
    text: str = Field(json_schema_extra={"maxLength": 120})  # schema-only: a bounded answer


class InterviewReply(BaseModel):
    """The interview step's structured output."""

    slots: SlotValues = Field(default_factory=SlotValues)
    # bound to what the app asks at most: a larger cap invites a small model to fill it
    questions: list[ProposedQuestion] = Field(
        default_factory=list, json_schema_extra={"maxItems": MAX_QUESTIONS}
    )
    ready: bool = False


class InterviewResult(BaseModel):
    """What one step decided: the new state, whether to build the spec, what to ask."""

    state: InterviewState
    ready: bool
    questions: list[str] = Field(default_factory=list)
    reason: Reason = "asking"
    llm_calls: int = 0

    def message(self) -> str:
        """Chat text: the questions plus the "say GO" hint, or the "writing it now" line."""
        lang = self.state.language
        if self.ready:
            return msg("interview_ready", lang)
        lines = [f"- {q}" for q in self.questions]
        return "\n".join([*lines, "", msg("interview_hint", lang)])


def default_question(slot: Slot, lang: Lang) -> str:
    """The localized fallback question for ``slot`` from ``prompts/interview.yaml``."""
    return localize(load_yaml("interview.yaml")["slots"][slot], lang)


def _in_language(text: str, lang: Lang) -> bool:
    return has_japanese(text) if lang == "ja" else not has_japanese(text)


def _update_language(state: InterviewState, text: str) -> None:
    """The first real message sets the language; later, Japanese text or a real English
    sentence switches it (a one-word answer such as "anime" does not)."""
    if has_japanese(text):
        state.language = "ja"
    elif is_skip(text) or not re.search(r"[A-Za-z]", text):
        return
    elif not state.user_words or len(re.findall(r"[A-Za-z]{2,}", text)) >= 3:
        state.language = "en"


# --- the interviewer ------------------------------------------------------------------------
class Interviewer:
    """Runs interview steps against ``model``; ``calls`` counts LLM invocations."""

    def __init__(
        self,
        model: BaseChatModel,
        *,
        max_exchanges: int = 5,
        counter: LLMCallCounter | None = None,
    ) -> None:
        self.llm = StructuredLLM(model, counter)
        self.max_exchanges = max_exchanges

    @property
    def counter(self) -> LLMCallCounter:
        return self.llm.counter

    @property
    def calls(self) -> int:
        return self.llm.counter.total

    async def step(self, state: InterviewState, user_text: str) -> InterviewResult:
        """Take the user's next message; return the new state and what to ask, if anything."""
        return await self.answer(self.take(state, user_text))

    @staticmethod
    def take(state: InterviewState, user_text: str) -> InterviewState:
        """The interview with the person's message in its record (no model call).

        The studio keeps this state before asking the model, so the words survive a turn
        the model fails (cut twice at the token limit, server error)."""
        state = state.model_copy(deep=True)
        if state.done:
            state.user_words.append(user_text)  # a late detail for the spec still pending
            return state
        _update_language(state, user_text)
        state.user_words.append(user_text)
        state.exchanges += 1
        return state

    async def answer(self, state: InterviewState) -> InterviewResult:
        """The model's part of a step on a state from :meth:`take`."""
        state = state.model_copy(deep=True)
        if state.done:
            return InterviewResult(state=state, ready=True, reason="done")
        if is_skip(state.user_words[-1] if state.user_words else ""):
            return self._finish(state, "skip")

        before = self.calls
        messages = self._messages(state)
        try:
            reply = await self.llm.ask(InterviewReply, messages, purpose="interview")
        except ModelOutputError as err:  # twice unusable: Egaki's own questions, words kept
            log.warning("interview step without the model's answer: %s", err)
            reply = InterviewReply()
        # echoes, bare values and nonsense subjects go; Egaki's own questions stand in
        reply = drop_non_answers(reply, state.user_words, state.language,
                                 str(messages[0].content))
        calls = self.calls - before
        for slot in SLOTS:
            value = getattr(reply.slots, slot)
            if value and str(value).strip():
                state.slots[slot] = str(value).strip()

        if reply.ready or state.exchanges >= self.max_exchanges or not state.askable:
            reason: Reason = "model"
            if not reply.ready:
                full = state.exchanges >= self.max_exchanges
                reason = "max_exchanges" if full else "nothing_to_ask"
            return self._finish(state, reason, calls)
        chosen = self._choose_questions(state, reply.questions)
        state.asked.extend(slot for slot, _ in chosen)
        state.questions.append([q for _, q in chosen])
        return InterviewResult(
            state=state, ready=False, questions=[q for _, q in chosen], llm_calls=calls
        )

    @staticmethod
    def _finish(state: InterviewState, reason: Reason, calls: int = 0) -> InterviewResult:
        state.done = True
        state.questions.append([])
        return InterviewResult(state=state, ready=True, reason=reason, llm_calls=calls)

    @staticmethod
    def _choose_questions(
        state: InterviewState, proposed: list[ProposedQuestion]
    ) -> list[tuple[Slot, str]]:
        """App rules: only askable slots, one question per slot, the user's language, ≤ 2."""
        askable = {s: s for s in state.askable}
        chosen: list[tuple[Slot, str]] = []
        for q in proposed:
            slot = askable.get(q.slot.strip().lower())  # type: ignore[call-overload]
            if slot is None or any(s == slot for s, _ in chosen):
                continue
            text = q.text.strip()
            if not text or not _in_language(text, state.language):
                text = default_question(slot, state.language)
            chosen.append((slot, text))
            if len(chosen) == MAX_QUESTIONS:
                break
        if not chosen:
            top = state.askable[:MAX_QUESTIONS]
            chosen = [(s, default_question(s, state.language)) for s in top]
        return chosen

    def _messages(self, state: InterviewState) -> list[BaseMessage]:
        language = language_name(state.language)
        system = render(
            "interview.md",
            language=language,
            slots=", ".join(SLOTS),
            max_questions=MAX_QUESTIONS,
        )
        convo: list[str] = []
        for i, words in enumerate(state.user_words):
            convo.append(f"Person: {words}")
            if i < len(state.questions) and state.questions[i]:
                convo.append("You asked: " + " / ".join(state.questions[i]))
        context = {
            "known_slots": state.slots,
            "already_asked": state.asked,
            "unknown_slots_most_important_first": state.askable,
            "question_language": language,
        }
        user = "\n".join(convo) + "\n\nState:\n" + json.dumps(context, ensure_ascii=False)
        return [SystemMessage(system), HumanMessage(user)]
