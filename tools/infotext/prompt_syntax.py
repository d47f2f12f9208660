"""AUTOMATIC1111's prompt syntax: what Egaki honours, what it does not, and the parser.

Prompts are part of the A1111 interchange format (infotexts, civitai pages), so the syntax
lives next to the infotext. Pure Python, no torch:

* :func:`parse_prompt_attention` — an exact port of A1111's
  ``modules/prompt_parser.parse_prompt_attention``: ``(x)`` ×1.1, ``[x]`` ÷1.1,
  ``(x:w)``, nesting multiplies, ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are literals,
  unbalanced brackets close at the end, ``BREAK`` (upper case, a whole word) starts a new
  75-token chunk. The diffusers engine chunks and encodes what it returns
  (:mod:`tools.engines.diffusers.prompts`).
* :func:`find_unsupported` — the syntax Egaki's own engine does not honour: prompt editing
  (``[a:b:0.5]``, ``[b:10]``, ``[a::0.5]``), alternation (``[a|b]``), composable
  diffusion (``AND``) and extra-network tags other than ``<lora:…>``. The user is told;
  the text still reaches the parser as written, as A1111's attention parser would read it.
* :func:`honoured_only` — rewrites *model-written* text into the honoured subset (the
  prompt writer never emits syntax Egaki ignores) and keeps weights in a sane range.
* :func:`emphasize` — ``(term:1.2)`` with the term's own brackets escaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

BREAK = ("BREAK", -1.0)  # the marker parse_prompt_attention emits for BREAK

_RE_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:([+-]?[.\d]+)\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ROUND = 1.1
_SQUARE = 1 / 1.1


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(text, weight)`` runs exactly as A1111 does.

    ``BREAK`` appears as :data:`BREAK`. Runs with equal weights are merged, and an empty
    prompt gives ``[("", 1.0)]``.
    """
    res: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _RE_ATTENTION.finditer(text):
        piece, weight = m.group(0), m.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_open.append(len(res))
        elif piece == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply_range(round_open.pop(), float(weight))
        elif piece == ")" and round_open:
            multiply_range(round_open.pop(), _ROUND)
        elif piece == "]" and square_open:
            multiply_range(square_open.pop(), _SQUARE)
        else:
            for i, part in enumerate(_RE_BREAK.split(piece)):
                if i > 0:
                    res.append(list(BREAK))
                res.append([part, 1.0])
    for pos in round_open:
        multiply_range(pos, _ROUND)
    for pos in square_open:
        multiply_range(pos, _SQUARE)
    return _merge_runs(res)


def _merge_runs(res: list[list[Any]]) -> list[tuple[str, float]]:
    if not res:
        return [("", 1.0)]
    merged = [res[0]]
    for text, weight in res[1:]:
        if merged[-1][1] == weight:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return [(t, float(w)) for t, w in merged]


def is_break(piece: tuple[str, float]) -> bool:
    """True for the :data:`BREAK` marker in :func:`parse_prompt_attention`'s output."""
    return piece[0] == "BREAK" and piece[1] == -1


# --- what is not honoured ----------------------------------------------------------------

Kind = Literal["prompt_editing", "alternation", "and", "extra_network"]
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)"
# On text whose escaped characters are masked (see _masked), so \[ … \] never matches.
_UNSUPPORTED: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    ("prompt_editing", re.compile(rf"\[([^\[\]]*):\s*({_NUMBER})\s*\]")),
    ("alternation", re.compile(r"\[([^\[\]:]*\|[^\[\]]*)\]")),
    ("and", re.compile(r"\bAND\b")),
    ("extra_network", re.compile(r"<(?!lora:)(\w+):([^>]*)>", re.IGNORECASE)),
)
_WEIGHT = re.compile(rf":\s*({_NUMBER})\s*\)")
MODEL_WEIGHTS = (0.5, 1.5)  # the range the prompt writer may use; beyond it pictures break


@dataclass(frozen=True)
class Unsupported:
    """One piece of syntax that Egaki's engine reads as plain text: its kind and text."""

    kind: Kind
    text: str


def _masked(text: str) -> str:
    """``text`` with every escaped character (``\\(``, ``\\[``…) hidden, same length."""
    return re.sub(r"\\.", "\x00\x00", text, flags=re.S)


def find_unsupported(text: str) -> list[Unsupported]:
    """Every piece of A1111 syntax in ``text`` that Egaki does not honour, in order."""
    masked = _masked(text)
    found = [
        (m.start(), Unsupported(kind, text[m.start():m.end()]))
        for kind, pattern in _UNSUPPORTED
        for m in pattern.finditer(masked)
    ]
    return [u for _, u in sorted(found, key=lambda f: f[0])]


def _replacement(kind: Kind, inner: str) -> str:
    """What a model-written piece becomes; ``inner`` is its first group, unmasked."""
    if kind == "prompt_editing":  # [from:to:when] → to; [to:when] → to; [from::when] → from
        parts = inner.split(":")
        return (parts[-1] or parts[0]).strip()
    if kind == "alternation":  # [a|b|c] → a
        return inner.split("|")[0].strip()
    return "," if kind == "and" else ""


def honoured_only(text: str, weights: tuple[float, float] = MODEL_WEIGHTS) -> str:
    """``text`` rewritten into the syntax Egaki honours (for what a model writes).

    Prompt editing keeps its final text, alternation its first option, ``AND`` becomes a
    comma, other extra-network tags go; ``(x:w)`` weights are kept within ``weights``.
    """
    for kind, pattern in _UNSUPPORTED:
        masked = _masked(text)
        out, last = [], 0
        for m in pattern.finditer(masked):
            inner = text[m.start(1):m.end(1)] if pattern.groups else ""
            out += [text[last:m.start()], _replacement(kind, inner)]
            last = m.end()
        text = "".join([*out, text[last:]])
    lo, hi = weights
    masked = _masked(text)
    out, last = [], 0
    for m in _WEIGHT.finditer(masked):
        value = min(max(float(m.group(1)), lo), hi)
        out += [text[last:m.start()], f":{value:g})"]
        last = m.end()
    text = "".join([*out, text[last:]])
    text = re.sub(r"\s*,(\s*,)+", ",", re.sub(r"\s+,", ",", text))  # "a , , b" left over
    return re.sub(r"[ \t]{2,}", " ", text).strip(" ,")


def escape(text: str) -> str:
    """``text`` with A1111's special characters escaped, so it is read literally."""
    return re.sub(r"([\\()\[\]])", r"\\\1", text)


def emphasize(term: str, weight: float) -> str:
    """``(term:weight)``; the term itself is escaped. Weight 1 gives the term unchanged."""
    term = term.strip()
    if not term or weight == 1:
        return term
    return f"({escape(term)}:{weight:g})"
