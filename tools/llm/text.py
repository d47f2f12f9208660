"""Helpers for the text that models write and that prompts are made of.

``lenient_text`` accepts what small models send where a string is expected;
``model_prompt`` also keeps a model's prompt text to the A1111 syntax Egaki honours;
``dedupe_terms`` keeps comma-separated prompt terms unique in first-seen order.
"""

from __future__ import annotations

from collections.abc import Iterable

from tools.infotext.prompt_syntax import honoured_only


def lenient_text(v: object) -> object:
    """Models sometimes send a list of tags where a string is expected: join it."""
    if isinstance(v, list):
        return ", ".join(str(x) for x in v if str(x).strip())
    return "" if v is None else v


def model_prompt(v: object) -> object:
    """:func:`lenient_text` for a prompt field a model filled: prompt editing, ``[a|b]``,
    ``AND`` and unknown ``<tags>`` become plain text, weights stay within 0.5–1.5
    (:func:`tools.infotext.prompt_syntax.honoured_only`)."""
    v = lenient_text(v)
    return honoured_only(v) if isinstance(v, str) else v


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
