"""Counts and text requests read deterministically from the user's own words.

The constraint step asks the model for a checklist, but a small model may drop or
change a number. These rules read the numbers the person actually typed, in English
("two women", "3 cats") and Japanese (「二人の女性」「猫が三匹」「2人」「三匹」), and
whether they asked for lettering at all ("a sign that says OPEN" vs "a sign with no
text"). Word lists live in ``prompts/count_words.yaml``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from prompts.loader import load_yaml

__all__ = [
    "EN_NUMBER_WORDS",
    "CountMention",
    "find_counts",
    "number_word",
    "singular",
    "wants_text",
]

_KANJI = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_JA_NUM = r"[0-9]{1,2}|[一二三四五六七八九十]{1,3}"
# A Japanese noun phrase ends at a particle, punctuation or space; after 「…の」 the
# phrase may contain の/も themselves (「女の子」「子ども」).
_JA_STOP = "\\s、。，．,.!?！？がをはにでとのやへ「」『』（）()"
_JA_AFTER_STOP = "\\s、。，．,.!?！？がをはにでとやへ「」『』（）()"
EN_NUMBER_WORDS = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)


@dataclass(frozen=True)
class CountMention:
    """A number the person wrote: ``expected`` of ``subject`` (English, plural when > 1).

    ``known`` is False when the English noun was guessed from a Japanese counter only
    (「三匹」 → "animals"); ``span`` is the text as written, for labels.
    """

    expected: int
    subject: str
    singular: str
    span: str
    known: bool = True


@cache
def _words() -> dict[str, Any]:
    return dict(load_yaml("count_words.yaml"))


def _kanji_number(text: str) -> int | None:
    """一…九十九 (and ASCII digits) → int; None for anything else."""
    if text.isdigit():
        return int(text)
    if "十" not in text:
        return _KANJI.get(text) if len(text) == 1 else None
    tens, _, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "十" in ones:
        return None
    t = _KANJI.get(tens, 0) if tens else 1
    o = _KANJI.get(ones, 0) if ones else 0
    return None if (tens and not t) or (ones and not o) else t * 10 + o


def number_word(n: int) -> str:
    """English word for small numbers (prompts read "two women" better than "2 women")."""
    return EN_NUMBER_WORDS[n] if 0 <= n < len(EN_NUMBER_WORDS) else str(n)


def singular(noun: str) -> str:
    """A rough English singular of a plural noun phrase ("young women" → "young woman")."""
    head, _, last = noun.rpartition(" ")
    irregular = {
        "women": "woman",
        "men": "man",
        "people": "person",
        "children": "child",
        "puppies": "puppy",
        "geese": "goose",
        "mice": "mouse",
        "feet": "foot",
        "teeth": "tooth",
        "sheep": "sheep",
        "fish": "fish",
        "deer": "deer",
    }
    low = last.lower()
    if low in irregular:
        one = irregular[low]
    elif low.endswith("ies") and len(low) > 4:
        one = last[:-3] + "y"
    elif low.endswith(("ches", "shes", "sses", "xes", "oxes")):
        one = last[:-2]
    elif low.endswith("s") and not low.endswith("ss"):
        one = last[:-1]
    else:
        one = last
    return f"{head} {one}".strip()


# --- English -------------------------------------------------------------------------------
_EN_TOKEN = re.compile(r"[A-Za-z][A-Za-z'-]*|\d+(?:[:.]\d+)?|[^\sA-Za-z\d]")


def _english_counts(text: str) -> list[CountMention]:
    data = _words()
    numbers: dict[str, int] = data["en_numbers"]
    units = {u.lower() for u in data["en_units"]}
    stop = {s.lower() for s in data["en_stop"]}
    tokens = _EN_TOKEN.findall(text)
    found: list[CountMention] = []
    for i, tok in enumerate(tokens):
        low = tok.lower()
        n = numbers.get(low) if not tok.isdigit() else int(tok)
        if n is None or not 2 <= n <= 20:
            continue
        if i > 0 and tokens[i - 1].lower() in ("x", "×", "by", "/", ":"):
            continue  # "512 x 512", "one of", a ratio
        words: list[str] = []
        for nxt in tokens[i + 1 : i + 4]:
            w = nxt.lower()
            if not re.match("[A-Za-z]", nxt) or w in stop or (w.endswith("ing") and len(w) > 4):
                break
            words.append(nxt)
        if not words or words[0].lower() in units or words[-1].lower() in units:
            continue
        phrase = " ".join(words)
        span = " ".join(tokens[i : i + 1 + len(words)])
        found.append(CountMention(n, phrase, singular(phrase), span))
    return found


# --- Japanese ------------------------------------------------------------------------------
def _ja_noun(phrase: str, *, ending: bool) -> tuple[str, str, int, int] | None:
    """(singular, plural, start, end) of a known noun in ``phrase``.

    ``ending``: the noun must end the phrase (「若い女性」二人); else the earliest noun
    in it wins (二人の「若い女性の写真」). Longer keys win ties (子猫 before 猫).
    """
    nouns: dict[str, list[str]] = _words()["ja_nouns"]
    best: tuple[int, int, str, int] | None = None
    for key in nouns:
        pos = phrase.rfind(key) if ending else phrase.find(key)
        if pos < 0 or (ending and pos + len(key) != len(phrase)):
            continue
        rank = (-len(key) if ending else pos, -len(key), key, pos)
        if best is None or rank < best:
            best = rank
    if best is None:
        return None
    one, many = nouns[best[2]]
    return one, many, best[3], best[3] + len(best[2])


@cache
def _ja_pattern() -> re.Pattern[str]:
    data = _words()
    counter_re = "|".join(map(re.escape, sorted(data["ja_counters"], key=len, reverse=True)))
    special_re = "|".join(map(re.escape, data["ja_words"]))
    return re.compile(
        rf"(?P<before>[^{_JA_STOP}]*?)(?P<particle>が|は|も|を)?"
        rf"(?P<count>(?P<num>{_JA_NUM})(?P<counter>{counter_re})|(?P<word>{special_re}))"
        rf"(?:の(?P<after>[^{_JA_AFTER_STOP}]{{1,12}}))?"
    )


def _japanese_counts(text: str) -> list[CountMention]:
    data = _words()
    counters: dict[str, dict[str, Any]] = data["ja_counters"]
    special: dict[str, int] = data["ja_words"]
    found: list[CountMention] = []
    for m in _ja_pattern().finditer(text):
        word = m.group("word")
        n = special[word] if word else _kanji_number(m.group("num"))
        info = counters["人" if word else m.group("counter")]
        if n is None or not 1 <= n <= 20:
            continue
        count, after = m.group("count"), m.group("after") or ""
        before = m.group("before") + (m.group("particle") or "")
        hit = _ja_noun(after, ending=False) if after else None
        if hit is not None:
            span = f"{count}の{after[: hit[3]]}"
        else:
            # 「猫が三匹」「子ども二人」: the noun may end right before the number or
            # before a particle; 「も」 may also be the end of the noun (子ども).
            hit = _ja_noun(before, ending=True) or _ja_noun(m.group("before"), ending=True)
            span = f"{before[hit[2] :]}{count}" if hit is not None else count
        if hit is None and not info.get("alone"):
            continue  # 「一本道」「三つ目」: a counter with no countable noun
        one, many = (hit[0], hit[1]) if hit is not None else tuple(info["en"])
        found.append(CountMention(n, many if n != 1 else one, one, span, hit is not None))
    return found


def find_counts(words: Iterable[str]) -> list[CountMention]:
    """Every explicit count in the user's messages, first mention of a subject wins."""
    found: list[CountMention] = []
    for text in words:
        norm = unicodedata.normalize("NFKC", text or "")
        found += _english_counts(norm) + _japanese_counts(norm)
    seen: set[str] = set()
    unique = []
    for c in found:
        key = c.singular.casefold()
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


# --- text requests -------------------------------------------------------------------------
_EN_TEXT = re.compile(
    r"\b(text|words?|letters?|lettering|captions?|title|logos?|typography|writing|written"
    r"|says|saying|reads|labell?ed|calligraphy|slogan|headline|font|inscription|spelled"
    r"|spelling)\b",
    re.I,
)
_EN_NEGATION = re.compile(r"\b(no|without|not|never|zero|free of|nor)\s+(?:\w+\s+){0,2}$", re.I)
_JA_TEXT = re.compile(
    r"文字|テキスト|ロゴ|書いて|書かれ|と書|タイトル|字幕|キャプション|書道|セリフ|吹き出し"
)
_JA_NEGATION = re.compile(
    r"^(?:は|が|を|も|の)?(?:なし|無し|ない|無い|不要|抜き|禁止|なく|入れない|入れず"
    r"|入っていない|入らない|書かない|書かず)"
)


def wants_text(words: Iterable[str]) -> bool:
    """True when the person asked for lettering in the picture (not merely forbade it)."""
    for raw in words:
        text = unicodedata.normalize("NFKC", raw or "")
        for m in _EN_TEXT.finditer(text):
            tail = text[m.end() : m.end() + 6].lower()
            if _EN_NEGATION.search(text[: m.start()]) or tail.startswith(("-free", " free")):
                continue
            return True
        for m in _JA_TEXT.finditer(text):
            if _JA_NEGATION.match(text[m.end() : m.end() + 8]):
                continue
            return True
    return False
