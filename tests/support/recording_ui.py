"""One fake front end for every flow: records what each call would have shown.

``RecordingUI`` implements the small UI protocols the flows are written against:
:class:`assistant.studio.flow.StudioUI`, :class:`assistant.chat.vision_flow.VisionUI`,
:class:`assistant.chat.ledger_chat.LedgerUI` and
:class:`assistant.chat.conversation.ChatUI` (``tests/vision/test_vision_flow.py`` checks
the signatures match). A test reads the lists afterwards::

    ui = RecordingUI(accept_pull=False)
    await conversation.start(ui)
    assert "ollama pull gemma3:4b" in ui.said[-1]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assistant.studio.flow import ActionSpec
from tools.llm.ollama_gateway import PullProgress


class RecordingUI:
    """Records every call; ``accept_pull`` is the answer to "download this model?"."""

    def __init__(self, accept_pull: bool = True) -> None:
        self.accept_pull = accept_pull
        self.said: list[str] = []  # say()
        self.shown: list[tuple[str, list[ActionSpec]]] = []  # show(): text and buttons
        self.images: list[tuple[str, list[Path], list[ActionSpec]]] = []  # show_images()
        self.painters: list[tuple[str, dict[str, Any]]] = []  # show_mask_painter()
        self.tokens: list[str] = []  # stream tokens of the answer being streamed
        self.streams: list[str] = []  # each finished streamed answer, joined
        self.asked: list[str] = []  # models confirm_pull() was asked about
        self.progress: list[PullProgress] = []  # pull_progress()
        self.steps: list[tuple[str, str, str, bool]] = []  # tool_step(): name, args, outcome, ok

    async def say(self, text: str) -> None:
        self.said.append(text)

    async def show(self, text: str, actions: list[ActionSpec]) -> None:
        self.shown.append((text, actions))

    async def show_images(self, text: str, images: list[Path], actions: list[ActionSpec]) -> None:
        self.images.append((text, images, actions))

    async def show_mask_painter(self, text: str, props: dict[str, Any]) -> None:
        self.painters.append((text, props))

    async def stream_token(self, token: str) -> None:
        self.tokens.append(token)

    async def end_stream(self) -> None:
        if self.tokens:
            self.streams.append("".join(self.tokens))
        self.tokens = []

    async def tool_step(self, name: str, arguments: str, outcome: str, ok: bool) -> None:
        self.steps.append((name, arguments, outcome, ok))

    async def confirm_pull(self, model: str, lang: str) -> bool:
        self.asked.append(model)
        return self.accept_pull

    async def pull_progress(self, model: str, progress: PullProgress, lang: str) -> None:
        self.progress.append(progress)

    def names(self) -> list[str]:
        """The names of the buttons of the last ``show``."""
        return [a.name for a in self.shown[-1][1]]
