"""The ``generate_image`` LangChain tool the chat model calls.

The model fills a small typed schema; omitted fields fall back to configured defaults.
The arguments are validated with :func:`tools.core.request.parse_request`; when they are
wrong the *teaching message* is returned as the tool result (not raised) so the model
can fix its call. Images run through the job queue (or an engine directly), are saved as
PNGs with A1111 infotext, recorded in the ledger when a ``recorder`` is given (each
image's ``ledger_id`` is set before the UI sees it), and the model gets a short text
summary while the UI gets the :class:`~tools.core.engine.GeneratedImage` objects through
``on_result``.

Engine failures (:class:`~tools.core.errors.EngineError`) propagate: the UI layer shows
them in the user's language.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field, ValidationError

from tools.core.engine import GeneratedImage, ImageEngine
from tools.core.errors import EgakiError, GenerationCancelled, InvalidRequest
from tools.core.request import ImageRequest, format_validation_error, parse_request
from tools.core.samplers import DEFAULT_SAMPLER, SAMPLERS
from tools.engines.jobs import JobQueue, PositionCallback, ProgressCallback, StatusCallback
from tools.infotext.png import save_png
from tools.ledger.types import RecordContext, Recorder

log = logging.getLogger(__name__)

ResultCallback = Callable[[list[GeneratedImage], list[Path]], Any]
TOOL_NAME = "generate_image"
TOOL_DESCRIPTION = (
    "Draw images with the local Stable Diffusion model. Call it once the user has said "
    "what they want. Write `prompt` in English as comma-separated visual details (subject, "
    "setting, style, lighting, camera). Leave optional fields out unless the user asked "
    "for them; defaults are already tuned. Returns file paths and each image's seed; to "
    "change a result slightly, call again with the same seed and an edited prompt."
)


class GenerateImageArgs(BaseModel):
    """What the chat model may set. Types only: value checks happen in parse_request."""

    prompt: str = Field(
        description="What to draw, in English: comma-separated visual details, e.g. "
        "'a red fox in fresh snow, morning light, shallow depth of field, photo'."
    )
    negative_prompt: str | None = Field(
        None, description="Things to keep out of the image, e.g. 'blurry, text, watermark'."
    )
    width: int | None = Field(
        None,
        description="Width in pixels, a multiple of 8 between 64 and 2048 (512, 768, 1024). "
        "Use wider than tall for landscapes.",
    )
    height: int | None = Field(
        None,
        description="Height in pixels, a multiple of 8 between 64 and 2048. Use taller than "
        "wide for portraits.",
    )
    steps: int | None = Field(
        None, description="Denoising steps, 1-150. More is slower, rarely better past 30."
    )
    cfg_scale: float | None = Field(
        None, description="How strictly to follow the prompt, 1-30; 5-8 looks natural."
    )
    sampler: str | None = Field(
        None,
        description=f"Sampler name; default {DEFAULT_SAMPLER!r}. One of: {', '.join(SAMPLERS)}.",
    )
    seed: int | None = Field(
        None,
        description="Reuse a seed from an earlier result to keep its composition; omit for a "
        "new random image.",
    )
    batch_size: int | None = Field(None, description="How many variations to make at once, 1-8.")


def _teach(err: ValidationError) -> str:
    return (
        f"Invalid arguments for {TOOL_NAME}: {format_validation_error(err)}. "
        "Fix them and call the tool again."
    )


def _unique_path(folder: Path, stem: str) -> Path:
    path = folder / f"{stem}.png"
    n = 1
    while path.exists():
        path = folder / f"{stem}-{n}.png"
        n += 1
    return path


def summarize(images: list[GeneratedImage], paths: list[Path], *, shown: bool = False) -> str:
    """The short text the model sees after a successful call."""
    if not images:
        return "No images were produced."
    req = images[0].request
    head = (
        f"Generated {len(images)} image{'s' if len(images) != 1 else ''} "
        f"({images[0].image.width}x{images[0].image.height}, {req.steps} steps, "
        f"{req.sampler}, CFG {req.cfg_scale:g}):"
    )
    lines = [head, *(f"- seed {g.seed}: {p}" for g, p in zip(images, paths, strict=True))]
    lines.append(f"Prompt: {req.prompt}")
    if req.negative_prompt:
        lines.append(f"Negative: {req.negative_prompt}")
    if shown:
        lines.append("The user already sees them; describe them briefly, don't list paths.")
    return "\n".join(lines)


class ImageRunner:
    """Run a request through the queue (or an engine), save PNGs, hand results to the UI.

    Shared by the ``generate_image`` tool and the chat's buttons so both paths save,
    embed metadata, record and display identically. ``recorder(images, paths, context)``
    (e.g. ``Ledger.record_batch``) runs after the PNGs exist and before ``on_result``;
    ``context`` is the default :class:`RecordContext` (thread id, the user's words), which
    ``run(request, context=...)`` overrides per call.
    """

    def __init__(
        self,
        runner: JobQueue | ImageEngine,
        *,
        output_dir: Path,
        on_result: ResultCallback | None = None,
        on_step: ProgressCallback | None = None,
        on_queue_position: PositionCallback | None = None,
        recorder: Recorder | None = None,
        context: RecordContext | None = None,
        on_status: StatusCallback | None = None,
    ) -> None:
        self.runner = runner
        self.on_status = on_status
        self.output_dir = output_dir
        self.on_result = on_result
        self.on_step = on_step
        self.on_queue_position = on_queue_position
        self.recorder = recorder
        self.context = context or RecordContext()

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
        context = context or self.context
        if not context.thread_id and self.context.thread_id:
            context = replace(context, thread_id=self.context.thread_id)
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
        if isinstance(self.runner, JobQueue):
            images = await self.runner.submit(
                request, on_step=self.on_step, on_queue_position=self.on_queue_position,
                on_status=self.on_status,
            )
        else:
            images = await asyncio.to_thread(self.runner.generate, request, self.on_step)
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
            images = asyncio.run(
                self.runner.submit(
                    request, on_step=self.on_step, on_queue_position=self.on_queue_position
                )
            )
        else:
            images = self.runner.generate(request, on_step=self.on_step)
        paths = self.save(images)
        self.record(images, paths, context)
        if self.on_result is not None:
            outcome = self.on_result(images, paths)
            if inspect.isawaitable(outcome):
                log.warning("async on_result ignored on the sync path; use ainvoke")
                getattr(outcome, "close", lambda: None)()
        return images, paths


def make_generate_image_tool(
    runner: JobQueue | ImageEngine | ImageRunner,
    *,
    output_dir: Path | None = None,
    defaults: Mapping[str, object] | None = None,
    on_result: ResultCallback | None = None,
    on_step: ProgressCallback | None = None,
    on_queue_position: PositionCallback | None = None,
) -> StructuredTool:
    """Build the ``generate_image`` tool.

    ``runner`` is an :class:`ImageRunner`, or the shared :class:`JobQueue` (normal use) or
    a bare engine (tests, scripts) together with ``output_dir`` and the callbacks.
    ``defaults`` are :class:`ImageRequest` fields used when the model omits them (e.g. the
    configured size, negative preset, LoRAs or model). ``on_result(images, paths)``
    receives the results for the UI; it may be a coroutine function.
    """
    if not isinstance(runner, ImageRunner):
        if output_dir is None:
            raise ValueError("output_dir is required unless an ImageRunner is given")
        runner = ImageRunner(
            runner,
            output_dir=output_dir,
            on_result=on_result,
            on_step=on_step,
            on_queue_position=on_queue_position,
        )
    images_runner = runner
    base = dict(defaults or {})
    unknown = set(base) - set(ImageRequest.model_fields)
    if unknown:
        raise ValueError(f"defaults has unknown ImageRequest fields: {sorted(unknown)}")

    def build(kwargs: dict[str, Any]) -> ImageRequest:
        given = {k: v for k, v in kwargs.items() if v is not None}
        return parse_request({**base, **given}).with_seed()

    shown = images_runner.on_result is not None

    def run_sync(**kwargs: Any) -> str:
        try:
            request = build(kwargs)
        except InvalidRequest as err:
            return f"{err.message} Fix the arguments and call {TOOL_NAME} again."
        try:
            images, paths = images_runner.run_sync(request)
        except GenerationCancelled:
            return _CANCELLED
        return summarize(images, paths, shown=shown)

    async def run_async(**kwargs: Any) -> str:
        try:
            request = build(kwargs)
        except InvalidRequest as err:
            return f"{err.message} Fix the arguments and call {TOOL_NAME} again."
        try:
            images, paths = await images_runner.run(request)
        except GenerationCancelled:
            return _CANCELLED
        return summarize(images, paths, shown=shown)

    return StructuredTool.from_function(
        func=run_sync,
        coroutine=run_async,
        name=TOOL_NAME,
        description=TOOL_DESCRIPTION,
        args_schema=GenerateImageArgs,
        handle_validation_error=_teach,
    )


_CANCELLED = "The user stopped this image job. Don't retry unless they ask again."
