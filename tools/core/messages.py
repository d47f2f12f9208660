"""One message catalogue: every user-facing string, English and Japanese side by side.

The texts live as data in ``prompts/messages/*.yaml`` (one file per area; a key is defined
once across all files, each with ``en`` and ``ja``). :func:`msg` renders a key in a
language and fails loudly on an unknown key, a missing value or a value no placeholder
uses; a :class:`Message` carries a key and its values until the UI edge knows the
user's language. A value that is itself localizable (a :class:`Message`, an error) is
rendered in the same language, so messages nest ("… {reason}").

One place decides languages: :func:`detect_language` ("is this Japanese"),
:func:`message_language` (a person's message: Japanese, an English sentence, or unchanged),
:func:`lang_code` (a locale tag to ``en``/``ja``), :func:`language_name` (the word a
prompt template wants) and :func:`localize` (the ``en``/``ja`` entry of a pair that is
data elsewhere in ``prompts/``, such as interview questions or variation labels).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, Protocol, runtime_checkable

from prompts.loader import HERE, load_yaml

Lang = Literal["en", "ja"]
LANGS: tuple[Lang, ...] = ("en", "ja")
MESSAGES_DIR = HERE / "messages"
_JA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")


class MessageError(KeyError):
    """A message key or its values do not match the catalogue."""


def lang_code(lang: str | None) -> Lang:
    """'ja' for any Japanese locale tag ('ja', 'ja-JP'), else 'en'."""
    return "ja" if (lang or "").lower().startswith("ja") else "en"


def has_japanese(text: str) -> bool:
    """True when ``text`` contains kana or kanji."""
    return bool(_JA.search(text or ""))


def detect_language(text: str, fallback: str = "en") -> Lang:
    """'ja' when the text contains Japanese script, else ``fallback`` as a two-letter code."""
    return "ja" if has_japanese(text) else lang_code(fallback)


def message_language(text: str, current: str = "en") -> Lang:
    """The language a person's message is written in, decided before any model is asked:
    'ja' with Japanese script, 'en' for an English sentence (three or more words), else
    ``current`` ("GO", "ok", "4": too little to tell)."""
    if has_japanese(text):
        return "ja"
    if len(re.findall(r"[A-Za-z]{2,}", text or "")) >= 3:
        return "en"
    return lang_code(current)


def language_name(lang: str | None) -> str:
    """'Japanese' or 'English': how prompt templates name the reader's language."""
    return "Japanese" if lang_code(lang) == "ja" else "English"


def localize(texts: Mapping[str, Any], lang: str | None) -> str:
    """The ``lang`` entry of an ``{en: …, ja: …}`` pair kept as data in ``prompts/``."""
    code = lang_code(lang)
    if code not in texts:
        raise MessageError(f"no {code!r} text in {dict(texts)!r}")
    return str(texts[code])


@runtime_checkable
class Localizable(Protocol):
    """Anything that can say itself in a language: a :class:`Message`, an ``EgakiError``."""

    def localized(self, lang: str) -> str: ...


@cache
def catalogue() -> Mapping[str, Mapping[Lang, str]]:
    """Every message, read once from ``prompts/messages/*.yaml`` and checked."""
    table: dict[str, Mapping[Lang, str]] = {}
    for path in sorted(MESSAGES_DIR.glob("*.yaml")):
        data = load_yaml(f"messages/{path.name}") or {}
        for key, texts in data.items():
            if key in table:
                raise MessageError(f"message {key!r} is defined twice (again in {path.name})")
            if not isinstance(texts, dict) or set(texts) != set(LANGS):
                raise MessageError(f"message {key!r} in {path.name} needs exactly {LANGS}")
            table[key] = {lang: str(texts[lang]) for lang in LANGS}
    return table


def fields(text: str) -> set[str]:
    """The placeholder names in a ``str.format`` text."""
    return {name.split(".")[0].split("[")[0]
            for _, name, _, _ in string.Formatter().parse(text) if name}


def _texts(key: str) -> Mapping[Lang, str]:
    texts = catalogue().get(key)
    if texts is None:
        raise MessageError(f"no message {key!r} in {MESSAGES_DIR}")
    return texts


def placeholders(key: str) -> set[str]:
    """The values message ``key`` needs (the same in every language; tests check)."""
    return fields(_texts(key)["en"])


def msg(key: str, lang: str = "en", /, **values: Any) -> str:
    """Message ``key`` in ``lang`` with ``values`` filled in; loud on any mismatch."""
    text = _texts(key)[lang_code(lang)]
    wanted = fields(text)
    if missing := wanted - values.keys():
        raise MessageError(f"message {key!r} needs values for {sorted(missing)}")
    if extra := values.keys() - wanted:
        raise MessageError(f"message {key!r} has no placeholder for {sorted(extra)}")
    shown = {k: v.localized(lang) if isinstance(v, Localizable) else v for k, v in values.items()}
    return text.format(**shown)


@dataclass(frozen=True)
class Message:
    """A catalogue key and its values, rendered once the reader's language is known."""

    key: str
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, key: str, /, **values: Any) -> Message:
        """Message ``key`` with ``values``; an unknown key or wrong values fail here already."""
        note = cls(key, values)
        note.localized("en")
        return note

    def localized(self, lang: str) -> str:
        """The text in ``lang`` ('en', 'ja', 'ja-JP'…)."""
        return msg(self.key, lang, **self.values)
