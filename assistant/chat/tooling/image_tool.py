"""The ``generate_image`` LangChain tool the chat model calls.

The model fills a small typed schema (:class:`GenerateImageArgs`); omitted fields fall
back to configured defaults. The arguments are validated with
:func:`tools.core.request.parse_request`; when they are wrong the *teaching message* is
returned as the tool result (not raised) so the model can fix its call. The images are
made, saved, recorded and shown by an :class:`~assistant.studio.runner.ImageRunner`, the
same runner every image path goes through; the model gets a short text summary.

Engine failures (:class:`~tools.core.errors.EngineError`) propagate: the UI layer shows
them in the user's language. Texts here are for the model, so they stay English.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field, ValidationError

from assistant.studio.runner import ImageRunner, ResultCallback
from tools.core.engine import GeneratedImage, ImageEngine
from tools.core.errors import EgakiError, GenerationCancelled, InvalidRequest
from tools.core.events import EventSink
from tools.core.request import ControlUnit, ImageRequest, format_validation_error, parse_request
from tools.core.samplers import DEFAULT_SAMPLER, SAMPLERS
from tools.engines.jobs import JobQueue
from tools.infotext.prompt_syntax import find_unsupported

TOOL_NAME = "generate_image"
TOOL_DESCRIPTION = (
    "Draw images with the local Stable Diffusion model. Call it once the user has said "
    "what they want. Write `prompt` in English as comma-separated visual details (subject, "
    "setting, style, lighting, camera); AUTOMATIC1111 weights such as (two women:1.2) and "
    "BREAK work, [a:b:0.5], [a|b] and AND do not. Leave optional fields out unless the user asked "
    "for them; defaults are already tuned. Returns file paths and each image's seed; to "
    "change a result slightly, call again with the same seed and an edited prompt."
)
_CANCELLED = "The user stopped this image job. Don't retry unless they ask again."
GENERATED = "Generated "  # how every result with images starts (see drew())


def drew(result: str) -> bool:
    """True when a ``generate_image`` result says images were made (else: rejected
    arguments, cancelled, nothing produced)."""
    return result.startswith(GENERATED)


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
    control: Literal["pose", "composition", "outlines", "depth"] | None = Field(
        None, description="Keep this from the picture the user uploaded last (ControlNet), "
        "e.g. 'pose' for 'use the pose from the photo I sent'. Omit otherwise.",
    )


def _teach(err: ValidationError) -> str:
    return (
        f"Invalid arguments for {TOOL_NAME}: {format_validation_error(err)}. "
        "Fix them and call the tool again."
    )


def summarize(images: list[GeneratedImage], paths: list[Path], *, shown: bool = False) -> str:
    """The short text the model sees after a successful call."""
    if not images:
        return "No images were produced."
    req = images[0].request
    head = (
        f"{GENERATED}{len(images)} image{'s' if len(images) != 1 else ''} "
        f"({images[0].image.width}x{images[0].image.height}, {req.steps} steps, "
        f"{req.sampler}, CFG {req.cfg_scale:g}):"
    )
    lines = [head, *(f"- seed {g.seed}: {p}" for g, p in zip(images, paths, strict=True))]
    lines.append(f"Prompt: {req.prompt}")
    if req.negative_prompt:
        lines.append(f"Negative: {req.negative_prompt}")
    found = find_unsupported(req.prompt) + find_unsupported(req.negative_prompt)
    if found:
        listed = ", ".join(dict.fromkeys(u.text for u in found))
        lines.append(f"Egaki read this syntax as plain words (not supported): {listed}. "
                     "Tell the user; weights like (word:1.2), BREAK and embeddings do work.")
    if shown:
        lines.append("The user already sees them; describe them briefly, don't list paths.")
    return "\n".join(lines)


class _ToolCall:
    """One tool's calls: defaults merged under the model's arguments, then the runner."""

    def __init__(self, runner: ImageRunner, defaults: Mapping[str, object] | None) -> None:
        self.runner = runner
        self.base = dict(defaults or {})
        unknown = set(self.base) - set(ImageRequest.model_fields)
        if unknown:
            raise ValueError(f"defaults has unknown ImageRequest fields: {sorted(unknown)}")
        self.shown = runner.on_result is not None
        self.controls: ControlSource | None = None  # set by attach_controls

    def request(self, kwargs: dict[str, Any]) -> ImageRequest:
        given = {k: v for k, v in kwargs.items() if v is not None and k != "control"}
        return parse_request({**self.base, **given}).with_seed()

    async def _with_control(self, request: ImageRequest, keep: str | None) -> ImageRequest:
        if keep is None:
            return request
        if self.controls is None:
            raise InvalidRequest.of("control_no_upload")
        return request.model_copy(update={"controls": await self.controls(keep)})

    def run_sync(self, **kwargs: Any) -> str:
        if kwargs.get("control") is not None:
            return "control works only in the chat (asynchronous calls); call without it."
        try:
            request = self.request(kwargs)
        except InvalidRequest as err:
            return _fix_and_retry(err)
        try:
            images, paths = self.runner.run_sync(request)
        except GenerationCancelled:
            return _CANCELLED
        return summarize(images, paths, shown=self.shown)

    async def run_async(self, **kwargs: Any) -> str:
        try:
            request = await self._with_control(self.request(kwargs), kwargs.get("control"))
        except InvalidRequest as err:
            return _fix_and_retry(err)
        except EgakiError as err:  # e.g. the pose model is not on disk: the model says so
            return f"{err.message} Tell the user; don't retry with control."
        try:
            images, paths = await self.runner.run(request)
        except GenerationCancelled:
            return _CANCELLED
        return summarize(images, paths, shown=self.shown)


ControlSource = Callable[[str], Awaitable[list[ControlUnit]]]


def attach_controls(tool: BaseTool, source: ControlSource) -> None:
    """Let ``tool``'s ``control`` argument take maps from a chat's last upload."""
    call = (tool.metadata or {}).get("egaki_call")
    if isinstance(call, _ToolCall):
        call.controls = source


def _fix_and_retry(err: InvalidRequest) -> str:
    return f"{err.message} Fix the arguments and call {TOOL_NAME} again."


def make_generate_image_tool(
    runner: JobQueue | ImageEngine | ImageRunner,
    *,
    output_dir: Path | None = None,
    defaults: Mapping[str, object] | None = None,
    on_result: ResultCallback | None = None,
    on_event: EventSink | None = None,
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
            on_event=on_event,
        )
    call = _ToolCall(runner, defaults)
    return StructuredTool.from_function(
        func=call.run_sync,
        coroutine=call.run_async,
        name=TOOL_NAME,
        description=TOOL_DESCRIPTION,
        args_schema=GenerateImageArgs,
        handle_validation_error=_teach,
        metadata={"egaki_call": call},
    )
