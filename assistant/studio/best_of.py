"""Best-of-N in the chat: run the quality loop, show only the winners, file the rest.

The loop's own runner shows nothing (rejected candidates must never reach the chat) and
records every image in the ledger as ``rejected``; :class:`BestOf` then marks the winners
``shown`` with the quality report, hands them to ``present`` (the same display the
normal path uses) and says briefly why the others were dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from assistant.prompting.spec import PromptSpec
from assistant.quality.loop import QualityLoop
from tools.core.engine import GeneratedImage
from tools.core.request import ImageRequest

log = logging.getLogger(__name__)

Present = Callable[[list[GeneratedImage], list[Path]], Awaitable[None]]
Say = Callable[[str], Awaitable[None]]


class BestOf:
    """Wraps a :class:`QualityLoop` for one chat."""

    def __init__(self, loop: QualityLoop, present: Present, ledger: Any | None = None) -> None:
        self.loop = loop
        self.present = present
        self.ledger = ledger  # tools.ledger.service.Ledger, optional

    async def run(
        self, spec: PromptSpec, request: ImageRequest, say: Say
    ) -> list[tuple[GeneratedImage, Path]]:
        """Make candidates, show the best, explain the rest; returns what was shown."""
        result = await self.loop.run(spec, request=request)
        report = result.report.model_dump(mode="json")
        shown = [(c.image, c.path) for c in result.shown]
        if self.ledger is not None:
            await asyncio.to_thread(self._file, shown, report)
        await self.present([g for g, _ in shown], [p for _, p in shown])
        if result.explanation:
            await say(result.explanation)
        return shown

    def _file(self, shown: list[tuple[GeneratedImage, Path]], report: dict[str, Any]) -> None:
        assert self.ledger is not None
        for gen, _ in shown:
            if not gen.ledger_id:
                continue
            try:
                self.ledger.set_status(gen.ledger_id, "shown")
                self.ledger.set_quality(gen.ledger_id, report)
            except Exception as err:  # the picture is shown either way; log for reconcile
                log.warning("could not mark #%s as shown: %s", gen.ledger_id, err)
