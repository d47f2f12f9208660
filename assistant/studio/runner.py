"""One runner that every image path goes through: generate, save, record, show.

:class:`ImageRunner` runs a request through the job queue (or an engine directly),
saves the images as PNGs with A1111 infotext, records them in the ledger when a
``recorder`` is given (each image's ``ledger_id`` is set before the UI sees it) and
hands the :class:`~tools.core.engine.GeneratedImage` objects to the UI through
``on_result``. The chat model's ``generate_image`` tool
(:mod:`assistant.chat.tooling.image_tool`), the chat's buttons and the quality loop all use it,
so every path saves, embeds metadata, records and displays identically.

Engine failures (:class:`~tools.core.errors.EngineError`) propagate: the UI layer shows
them in the user's language.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tools.core.engine import GeneratedImage, ImageEngine
from tools.core.errors import EgakiError
from tools.core.events import EventSink, StepProgress
from tools.core.request import ImageRequest
from tools.engines.jobs import JobQueue
from tools.infotext.png import save_png
from tools.ledger.types import RecordContext, Recorder

log = logging.getLogger(__name__)

ResultCallback = Callable[[list[GeneratedImage], list[Path]], Any]
# The record context, or a function returning the current one (e.g. a chat's state).
ContextSource = RecordContext | Callable[[], RecordContext]


def _unique_path(folder: Path, stem: str) -> Path:
    path = folder / f"{stem}.png"
    n = 1
    while path.exists():
        path = folder / f"{stem}-{n}.png"
        n += 1
    return path


class ImageRunner:
    """Run a request through the queue (or an engine), save PNGs, hand results to the UI.

    Shared by the ``generate_image`` tool and the chat's buttons so both paths save,
    embed metadata, record and display identically. ``recorder(images, paths, context)``
    (e.g. ``Ledger.record_batch``) runs after the PNGs exist and before ``on_result``;
    ``context`` is the default :class:`RecordContext` (thread id, the user's words), or a
    function returning it when it is asked for (a chat passes its state's), which
    ``run(request, context=...)`` overrides per call. ``on_event`` hears the job's typed
    progress events (:mod:`tools.core.events`).
    """

    def __init__(
        self,
        runner: JobQueue | ImageEngine,
        *,
        output_dir: Path,
        on_result: ResultCallback | None = None,
        on_event: EventSink | None = None,
        recorder: Recorder | None = None,
        context: ContextSource | None = None,
    ) -> None:
        self.runner = runner
        self.output_dir = output_dir
        self.on_result = on_result
        self.on_event = on_event
        self.recorder = recorder
        self._context = context or RecordContext()

    @property
    def context(self) -> RecordContext:
        """The default record context, as it is now."""
        return self._context if isinstance(self._context, RecordContext) else self._context()

    def _on_step(self, step: int, total: int, preview: Any) -> None:
        """An engine's ``on_step`` when there is no queue to turn it into an event."""
        if self.on_event is not None:
            self.on_event(StepProgress(step, total, preview))

    def save(self, images: list[GeneratedImage]) -> list[Path]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return [save_png(g, _unique_path(self.output_dir, f"{stamp}-{g.seed}")) for g in images]

    def record(self, images: list[GeneratedImage], paths: list[Path],
               context: RecordContext | None = None) -> list[str]:
        """Record saved images; sets each ``ledger_id``. A failure is logged, not raised:
        the PNGs are safe and the ledger's start-up reconcile records them later.

        ``context`` defaults to ``self.context``; without a thread id of its own it takes
        the runner's (the thread belongs to the session, the words to the call).
        """
        if self.recorder is None or not images:
            return []
        default = self.context
        context = context or default
        if not context.thread_id and default.thread_id:
            context = replace(context, thread_id=default.thread_id)
        try:
            ids = self.recorder(images, paths, context)
        except EgakiError as err:
            log.warning("images saved but not recorded in the ledger: %s", err.message)
            return []
        for gen, record_id in zip(images, ids, strict=True):
            gen.ledger_id = record_id
        return ids

    async def run(
        self, request: ImageRequest, *, context: RecordContext | None = None
    ) -> tuple[list[GeneratedImage], list[Path]]:
        """Generate, save, record and report; raises GenerationCancelled / EngineError."""
        request = request.with_seed()
        if isinstance(self.runner, JobQueue):  # the job is the chat's (its thread id)
            owner = (context.thread_id if context else "") or self.context.thread_id
            images = await self.runner.submit(request, on_event=self.on_event, owner=owner)
        else:
            images = await asyncio.to_thread(self.runner.generate, request, self._on_step)
        paths = await asyncio.to_thread(self.save, images)
        if self.recorder is not None:
            await asyncio.to_thread(self.record, images, paths, context)
        if self.on_result is not None:
            outcome = self.on_result(images, paths)
            if inspect.isawaitable(outcome):
                await outcome
        return images, paths

    def run_sync(
        self, request: ImageRequest, *, context: RecordContext | None = None
    ) -> tuple[list[GeneratedImage], list[Path]]:
        request = request.with_seed()
        if isinstance(self.runner, JobQueue):
            images = asyncio.run(self.runner.submit(request, on_event=self.on_event))
        else:
            images = self.runner.generate(request, on_step=self._on_step)
        paths = self.save(images)
        self.record(images, paths, context)
        if self.on_result is not None:
            outcome = self.on_result(images, paths)
            if inspect.isawaitable(outcome):
                log.warning("async on_result ignored on the sync path; use ainvoke")
                getattr(outcome, "close", lambda: None)()
        return images, paths
