"""What a conversation needs from the front end (:class:`ChatUI`), and how a chat is
named from what was said in it (:func:`pick_title`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from assistant.studio.actions import ActionSpec
from tools.llm.ollama_gateway import PullProgress

__all__ = ["ChatUI", "pick_title"]

TITLE_MIN_CHARS = 4  # "GO", "はい": too little to name a chat after
TITLE_MAX_CHARS = 40
TITLE_SAYS_LITTLE = frozenset({"GO", "OK", "YES", "おまかせ", "そのまま", "おねがい"})


class ChatUI(Protocol):
    """What a conversation needs from the front end."""

    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[ActionSpec]) -> None: ...
    async def show_images(self, text: str, images: list[Path], actions: list[ActionSpec]) -> None:
        ...
    async def show_mask_painter(self, text: str, props: dict[str, Any]) -> None: ...
    async def stream_token(self, token: str) -> None: ...
    async def end_stream(self) -> None: ...
    async def tool_step(self, name: str, arguments: str, outcome: str, ok: bool) -> None: ...
    async def confirm_pull(self, model: str, lang: str) -> bool: ...
    async def pull_progress(self, model: str, progress: PullProgress, lang: str) -> None: ...


def pick_title(candidates: Iterable[str]) -> str:
    """The first candidate that says something (not "GO"), whitespace folded and cut to
    40 characters; "" when none does."""
    for text in candidates:
        text = " ".join(text.split())
        if len(text) >= TITLE_MIN_CHARS and text.upper() not in TITLE_SAYS_LITTLE:
            cut = text[: TITLE_MAX_CHARS - 1].rstrip() + "…"
            return text if len(text) <= TITLE_MAX_CHARS else cut
    return ""
