"""Reading "change the hat on the left to a red beret" / 「左の帽子を赤いベレー帽に変えて」.

An edit of one region says three things: what to find (``target``, English, for the
segmenter), which one when there are several (``position``: left/right/top/bottom/
center/biggest/smallest/all, or an ``ordinal``), and what should be there instead
(``replacement``, in the person's words). :func:`parse_rules` reads the common English and
Japanese patterns deterministically (word lists in ``prompts/edit_words.yaml``); it also
decides whether a message is such an edit at all (the chat routes on it). :func:`read_edit`
then asks the chat model for the same fields in a bounded schema and keeps what the words
say for certain: a position the rules found wins, and so do the person's own replacement
words; when the model fails or answers nonsense, the rules' reading is used.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from prompts.loader import load_yaml, render
from tools.core.errors import EgakiError
from tools.core.messages import has_japanese
from tools.llm.ollama_gateway import CONNECTION_ERRORS
from tools.llm.structured import StructuredLLM
from vision.grounding.regions import Position

log = logging.getLogger(__name__)
_MODEL_FAILED: tuple[type[BaseException], ...] = (EgakiError, *CONNECTION_ERRORS)

_EN = re.compile(
    r"^(?:(?:please|can you|could you|now)\s+)*(?:change|replace|turn|swap|switch)\s+"
    r"(?P<target>.+?)\s+(?:to|into|with|for)\s+(?P<repl>.+?)[\s,]*(?:please)?[\s.!?]*$",
    re.I | re.S,
)
_EN_GREEDY = re.compile(_EN.pattern.replace("(?P<target>.+?)", "(?P<target>.+)"), re.I | re.S)
_SIDE = re.compile(
    r"^(?:the\s+)?(?:left|right|top|bottom|middle)\b.*\s(?:to|into|with|for)\s", re.I
)
_EN_REMOVE = re.compile(
    r"^(?:(?:please|can you|could you|now)\s+)*(?:remove|erase|delete|get rid of)\s+"
    r"(?P<target>.+?)[\s,]*(?:please)?[\s.!?]*$",
    re.I | re.S,
)
_JA_ASK = r"(?:ください|下さい|くれ|ほしい|欲しい|もらえる|くれる)?[?？]?[。．！!]*"
_JA = re.compile(
    r"^(?P<target>.+?)を(?P<repl>.+?)(?:に|へ|と)(?:変えて|替えて|換えて|かえて|変更して|して|"
    rf"差し替えて|置き換えて|取り替えて|交換して){_JA_ASK}$", re.S,
)  # fmt: skip
_JA_REMOVE = re.compile(
    rf"^(?P<target>.+?)を(?:消して|削除して|取って|取り除いて|なくして){_JA_ASK}$", re.S
)
_EN_FILLER = re.compile(
    r"\b(?:the|a|an|one|ones|of|from|in the (?:picture|image|photo)|in the)\b", re.I
)
_JA_ORDINAL = re.compile(r"([1-9１-９一二三四五])(?:番目|つ目|人目|匹目)の?")
_WIDE_DIGITS = str.maketrans("１２３４５６７８９", "123456789")
_KANJI_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5}


class EditWords(BaseModel):
    """One region edit, as read from a message (also the model's answer schema)."""

    target: str = Field(max_length=80, description="the thing to find, English noun phrase")
    position: Position = Field("none", description="which one of several")
    ordinal: int | None = Field(None, ge=1, le=9, description="the n-th, counted from the left")
    replacement: str = Field("", max_length=300, description="what should be there instead")

    def instruction(self, words: str) -> str:
        """What the inpaint prompt should draw: the replacement, or the whole request."""
        return self.replacement or words


@functools.cache
def _words() -> dict[str, Any]:
    return dict(load_yaml("edit_words.yaml"))


def _position_en(target: str) -> tuple[str, Position, int | None]:
    words = _words()
    ordinal = None
    for word, n in words["en_ordinals"].items():
        found = re.search(rf"\b{re.escape(word)}\b", target, re.I)
        if found:
            ordinal, target = int(n), target[: found.start()] + target[found.end() :]
            break
    position: Position = "none"
    for name, phrases in words["en_positions"].items():  # the yaml's order is the priority
        for phrase in sorted(phrases, key=len, reverse=True):
            found = re.search(rf"\b{re.escape(phrase)}\b", target, re.I)
            if found:
                target = target[: found.start()] + " " + target[found.end() :]
                position = name if position == "none" else position
                break
    target = " ".join(_EN_FILLER.sub(" ", target).split()).strip(" ,.")
    target = re.sub(r"^(?:on|at|to|in)\s+|\s+(?:on|at|to|in|one)$", "", target, flags=re.I)
    return target, position, ordinal


def _position_ja(target: str) -> tuple[str, Position, int | None]:
    ordinal = None
    found = _JA_ORDINAL.search(target)
    if found:
        digit = found.group(1)
        ordinal = _KANJI_DIGITS.get(digit) or int(digit.translate(_WIDE_DIGITS))
        target = target[: found.start()] + target[found.end() :]
    position: Position = "none"
    for name, phrases in _words()["ja_positions"].items():
        for phrase in sorted(phrases, key=len, reverse=True):
            found = re.search(rf"{re.escape(phrase)}(?:の方|にある|にいる)?の?", target)
            if found and found.end() < len(target):  # a word before the noun, not the noun
                target = target[: found.start()] + target[found.end() :]
                position = name if position == "none" else position
                break
    return target.strip(" 　、の"), position, ordinal


def english_noun(target: str) -> str:
    """A Japanese target in English from the table (longest known noun in it), or ""."""
    nouns: dict[str, str] = _words()["ja_nouns"]
    if target in nouns:
        return nouns[target]
    inside = [n for n in nouns if n in target]
    return nouns[max(inside, key=len)] if inside else ""


def parse_rules(text: str) -> tuple[EditWords, str] | None:
    """``(edit, the target as written)`` when ``text`` asks to change or remove one part of
    the picture, else None. ``edit.target`` is English, or "" for a Japanese noun not in
    the table (the model translates it)."""
    text = " ".join(text.split())
    if has_japanese(text):
        m = _JA.match(text) or _JA_REMOVE.match(text)
        if m is None:
            return None
        written, position, ordinal = _position_ja(m.group("target"))
        target = english_noun(written) if has_japanese(written) else written
    else:
        m = _EN.match(text) or _EN_REMOVE.match(text)
        if m is None:
            return None
        if _SIDE.match(m.groupdict().get("repl") or ""):  # "the hat to the left to a beret"
            m = _EN_GREEDY.match(text) or m
        written, position, ordinal = _position_en(m.group("target"))
        target = written
    if not written or written.lower() in {w.lower() for w in _words()["not_regions"]}:
        return None
    replacement = (m.groupdict().get("repl") or "").strip()
    edit = EditWords(target=target[:80], position=position, ordinal=ordinal,
                     replacement=replacement[:300])  # fmt: skip
    return edit, written


_NUMBER = re.compile(r"^(?:number\s*|no\.?\s*|#)?([1-9])(?:番目?|つ目)?$", re.I)
_JA_TAIL = re.compile(r"(?:の方|のやつ|の|です|で|を|に|お願いします|おねがい|ね)+$")


def read_choice(text: str) -> tuple[Position, int | None] | None:
    """A typed answer to "which one?" ("the left one", "#2", "both", 「右の」, 「2番」):
    ``(position, ordinal)``, or None when ``text`` says more than that."""
    text = " ".join(text.split()).strip(" .!?。！？")
    if not text or len(text) > 40:
        return None
    number = _NUMBER.match(text.translate(_WIDE_DIGITS))
    if number:
        return "none", int(number.group(1))
    if has_japanese(text):
        bare = _JA_TAIL.sub("", text)
        for name, phrases in _words()["ja_positions"].items():
            if bare in phrases:
                return name, None
        counted = _JA_ORDINAL.fullmatch(bare + "の") or _JA_ORDINAL.fullmatch(bare)
        if counted:
            digit = counted.group(1)
            return "none", _KANJI_DIGITS.get(digit) or int(digit.translate(_WIDE_DIGITS))
        return None
    rest, position, ordinal = _position_en(text)
    if rest.lower() not in ("", "them", "of them", "one", "please"):
        return None
    if position == "none" and ordinal is None:
        return None
    return position, ordinal


def _check(written: str, japanese: bool) -> Any:
    """A :class:`StructuredLLM` check: an English target, from the request when in English."""

    def check(answer: EditWords) -> str | None:
        target = answer.target.strip()
        if not target or has_japanese(target):
            return "`target` must be the thing to find, in English."
        if not japanese and not set(target.lower().split()) & set(written.lower().split()):
            return f"`target` must name the thing from the request, such as {written!r}."
        return None

    return check


async def read_edit(text: str, model: BaseChatModel | None) -> EditWords | None:
    """The region edit ``text`` asks for (see the module doc), or None when it is none."""
    ruled = parse_rules(text)
    if ruled is None:
        return None
    rules, written = ruled
    if model is None:
        return rules
    messages = [SystemMessage(render("edit_words.md")), HumanMessage(text[:2000])]
    try:
        asked = await StructuredLLM(model).ask(
            EditWords, messages, purpose="edit_words", check=_check(written, has_japanese(text))
        )
    except _MODEL_FAILED as err:
        log.info("reading the edit with the model failed, using the rules: %s", err)
        return rules
    said = rules.position != "none" or rules.ordinal is not None
    return EditWords(
        target=asked.target.strip(),
        position=rules.position if said else asked.position,
        ordinal=rules.ordinal if said else asked.ordinal,
        replacement=rules.replacement or asked.replacement,
    )
