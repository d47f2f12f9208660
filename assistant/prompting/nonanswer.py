"""Answers that are not answers: cheap, deterministic checks on what a small model wrote.

Seen on SmolLM2-135M and Gemma 3 270M (``egaki compare-models``): the instructions echoed
back as questions, questions in the wrong language, slot values that are no question
("relaxed"), one phrase copied into every slot, and subjects unrelated to the request
("Birrakel" for "two women playing beach volleyball"). No model, no network: each check is
a heuristic with a named blind spot; they flag, and the interview and the spec writer drop
the flagged parts, so Egaki's own localised questions or the person's words stand in.

* :func:`wrong_language` — script detection (kana/kanji vs Latin letters);
* :func:`echoes_instructions` — copies the system prompt or the schema's words;
* :func:`unrelated` — shares no content word with the person's words (Japanese through
  the noun glossary of ``prompts/count_words.yaml``; unknown nouns give no verdict);
* :func:`not_a_question` — a bare value where a question was asked for;
* :func:`parroting` — the same value in many slots.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from prompts.loader import load_yaml

_JA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
_LATIN = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_STOP = frozenset(
    """
    a an the and or but with without in on at by of for from to into onto under over
    near next beside behind between who that which while are is was were be been being
    it its this these those some any each all both together another more other very
    really just make made want wanted like would could should please picture image photo
    photograph drawing draw create generate i me my you your we our they them their he
    she his her can will do does did have has had not no yes
    """.split()  # noqa: SIM905
)
# Words that only appear when the model parrots the prompt or the schema back.
_SCHEMA_TELLS = re.compile(
    r"short english phrase|most important first|never asked|matches the (?:given )?schema"
    r"|one json object|<function-name>|answer with one|fill every slot|the person's words"
    r"|write the questions in|known_slots|already_asked|unknown_slots|question_language",
    re.I,
)
_SLOT_NAMES = frozenset(
    """
    subject mood setting lighting clothing framing style aspect time_of_day weather
    color_palette negative_extra
    """.split()  # noqa: SIM905
)


# --- language ------------------------------------------------------------------------------
def script_of(text: str) -> str:
    """'ja' when kana/kanji are at least 20% of the letters, 'en' when only Latin letters,
    'mixed' otherwise, 'none' without letters."""
    ja, latin = len(_JA.findall(text or "")), len(_LATIN.findall(text or ""))
    if ja == 0 and latin == 0:
        return "none"
    if ja and ja / (ja + latin) >= 0.2:
        return "ja"
    return "en" if ja == 0 else "mixed"


def wrong_language(text: str, lang: str) -> bool:
    """Blind spot: Japanese written only in romaji or English loanwords."""
    got = script_of(text)
    return got not in ("none", lang)


# --- echoes --------------------------------------------------------------------------------
def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def echoes_instructions(text: str, instructions: str, n: int = 5,
                        threshold: float = 0.25) -> bool:
    """``text`` repeats the instructions: a quarter of its word 5-grams occur in them, a
    40-character stretch of them, or the schema's own words. Blind spot: a paraphrase."""
    if not text.strip():
        return False
    if _SCHEMA_TELLS.search(text):
        return True
    low, inst = " ".join(text.casefold().split()), " ".join(instructions.casefold().split())
    grams = _ngrams(_WORD.findall(low), n)
    if grams and len(grams & _ngrams(_WORD.findall(inst), n)) / len(grams) >= threshold:
        return True
    return any(low[i : i + 40] in inst for i in range(0, max(0, len(low) - 40), 10))


def is_slot_name(value: str) -> bool:
    """A value that is just a field's name ("subject": "subject")."""
    return value.strip().casefold().replace(" ", "_") in _SLOT_NAMES


# --- relevance -----------------------------------------------------------------------------
def _stem(word: str) -> str:
    w = word.casefold().strip("'-")
    for suffix in ("ing", "es", "s", "ed"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text or "") if w.casefold() not in _STOP}


def _fuzzy_in(word: str, pool: Iterable[str]) -> bool:
    """The same word, or a shared prefix of 5+ letters ("volleyball" ~ "volley")."""
    for other in pool:
        k = min(len(word), len(other))
        if word == other or (k >= 5 and word[:k] == other[:k]):
            return True
    return False


@cache
def _glossary() -> dict[str, tuple[str, ...]]:
    nouns = load_yaml("count_words.yaml").get("ja_nouns", {})
    return {ja: tuple(str(w) for w in en) for ja, en in nouns.items()}


def wanted_words(user_words: Sequence[str]) -> set[str]:
    """Content words of the person's request: English words, and English for the Japanese
    nouns the glossary knows."""
    out: set[str] = set()
    for text in user_words:
        if _JA.search(text):
            for ja, en in _glossary().items():
                if ja in text:
                    out |= {w for phrase in en for w in content_words(phrase)}
        out |= content_words(text)
    return out


def unrelated(user_words: Sequence[str], answer: str) -> bool:
    """``answer`` shares no content word with the person's words. No verdict (False) when
    their words give nothing to compare. Blind spot: synonyms ("kitten" for "cat")."""
    wanted = wanted_words(user_words)
    if not wanted or not answer.strip():
        return False
    got = content_words(answer)
    return not any(_fuzzy_in(w, got) for w in wanted)


# --- shape ---------------------------------------------------------------------------------
_LOOPING = re.compile(r"(\S.{5,}?)(?:.*?\1){2}", re.S)


def rambles(text: str) -> bool:
    """A stretch of 6+ characters three times over (a loop cut by the length bound)."""
    return bool(_LOOPING.search(text))


def not_a_question(text: str, user_words: Sequence[str] = ()) -> bool:
    """No question: a bare value (SmolLM2 writes "relaxed", "sunset"), a Japanese sentence
    with no question form, the person's own words handed back, or a loop."""
    t = " ".join(text.split())
    if not t or rambles(t):
        return True
    if any(t.casefold() == " ".join(w.split()).casefold() for w in user_words):
        return True
    if "?" in t or "？" in t:
        return False
    if _JA.search(t):
        return not t.rstrip("。 ").endswith(("か", "かな", "の"))
    return len(t.split()) < 4


def parroting(values: Mapping[str, object], min_fields: int = 3) -> str | None:
    """The value copied into ``min_fields`` or more fields, or None."""
    counts = Counter(" ".join(str(v).casefold().split()) for v in values.values()
                     if isinstance(v, str) and v.strip())
    if counts:
        value, n = counts.most_common(1)[0]
        if n >= min_fields:
            return value
    return None


# --- what the flows use --------------------------------------------------------------------
def drop_non_answers(reply: Any, user_words: Sequence[str], lang: str,
                     instructions: str = "") -> Any:
    """An interview reply without its non-answers (a copy; ``reply`` has ``slots`` and
    ``questions`` like :class:`~assistant.prompting.interview.InterviewReply`).

    Dropped: slot values that echo the instructions, name a slot, or repeat one value in
    three slots (kept once, in the first); a subject unrelated to the person's words.
    Questions that echo the instructions or are no question are blanked: the interview
    then asks its own question for that slot (as it does for the wrong language).
    """
    reply = reply.model_copy(deep=True)
    slots = reply.slots
    values = {k: v for k, v in slots.model_dump().items() if isinstance(v, str)}
    copied = parroting(values)
    seen_copy = False
    for name, value in values.items():
        norm = " ".join(value.casefold().split())
        drop = is_slot_name(value) or (bool(instructions)
                                       and echoes_instructions(value, instructions))
        if copied is not None and norm == copied:
            drop, seen_copy = drop or seen_copy, True
        if name == "subject" and unrelated(user_words, value):
            drop = True
        if drop and name != "aspect":
            setattr(slots, name, None)
    for q in reply.questions:  # blanked: the interview asks its own question for that slot
        echo = bool(instructions) and echoes_instructions(q.text, instructions)
        if echo or not_a_question(q.text, user_words):
            q.text = ""
    return reply


def english_words(user_words: Sequence[str]) -> str:
    """The person's English words as a subject, or "" when they wrote none in English."""
    return ", ".join(w.strip() for w in user_words if w.strip() and script_of(w) == "en")


def grounded_subject(subject: str, user_words: Sequence[str], instructions: str = "") -> str:
    """The spec's subject, or the person's English words when the model's subject is
    unrelated to them or echoes the instructions ("Birrakel" for beach volleyball)."""
    bad = unrelated(user_words, subject) or is_slot_name(subject) or (
        bool(instructions) and echoes_instructions(subject, instructions))
    return (english_words(user_words) or subject)[:300] if bad else subject


__all__ = [
    "content_words", "drop_non_answers", "echoes_instructions", "english_words",
    "grounded_subject", "is_slot_name", "not_a_question", "parroting", "rambles", "script_of",
    "unrelated", "wrong_language",
]
