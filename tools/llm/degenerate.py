"""Degenerate model output: a phrase repeating itself until the token limit.

Small models loop ("relief-relief-relief", the same sentence again and again). The chat
stops reading such a stream early and keeps the text up to the loop's first round.
"""

from __future__ import annotations

import re

# a chunk of 2–60 characters (not only spaces) followed by itself 3+ more times, at the end
_LOOP = re.compile(r"(?P<unit>\S.{1,59}?)(?:\s*(?P=unit)){3,}\s*$", re.S)


def loop_start(text: str) -> int | None:
    """Index where a repetition loop at the end of ``text`` begins its 2nd round, or None."""
    tail = text[-800:]
    m = _LOOP.search(tail)
    if m is None or len(m.group(0)) < 24:  # "ha ha ha ha" is speech, not a loop
        return None
    return len(text) - len(tail) + m.start() + len(m.group("unit"))
