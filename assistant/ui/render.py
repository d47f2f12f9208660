"""How Egaki's chat looks in Chainlit: messages, buttons, progress, images, the panel.

Implements the UI protocols of :mod:`assistant.chat.conversation` (``ChatUI``) with Chainlit
messages and elements. Like :mod:`assistant.ui.chainlit_app`, one of the few modules that import
chainlit; no chat logic lives here.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chainlit as cl
from PIL import Image as PILImage

from assistant.studio.actions import ActionSpec
from assistant.studio.panel import FIELDS
from assistant.ui import compat as chainlit_compat  # noqa: F401  (fixes chainlit before use)
from tools.core.engine import GeneratedImage
from tools.core.events import (
    Downloading,
    ModelLoaded,
    ModelLoading,
    Optimising,
    ProgressEvent,
    QueuePosition,
    StepProgress,
    TimeEstimate,
)
from tools.core.messages import msg
from tools.llm.ollama_gateway import PullProgress

ACTION = "egaki"  # every studio/vision/ledger button routes through one callback


def progress_bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "▰" * filled + "▱" * (width - filled)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


class ChainlitUI:
    """Implements :class:`assistant.chat.conversation.ChatUI` with Chainlit messages."""

    def __init__(self) -> None:
        self._stream: cl.Message | None = None
        self._progress: cl.Message | None = None
        self._last_progress = 0.0

    async def say(self, text: str) -> None:
        await cl.Message(content=text).send()

    @staticmethod
    def _buttons(actions: list[ActionSpec]) -> list[cl.Action]:
        return [
            cl.Action(name=ACTION, payload={"action": a.name, **a.payload}, label=a.label)
            for a in actions
        ]

    async def show(self, text: str, actions: list[ActionSpec]) -> None:
        await cl.Message(content=text, actions=self._buttons(actions)).send()

    async def show_images(self, text: str, images: list[Path], actions: list[ActionSpec]) -> None:
        elements = [
            cl.Image(path=str(p), name=p.stem, display="inline") for p in images
        ]
        await cl.Message(content=text, elements=elements, actions=self._buttons(actions)).send()

    async def show_mask_painter(self, text: str, props: dict[str, Any]) -> None:
        painter = cl.CustomElement(name="MaskPainter", props=props, display="inline")
        await cl.Message(content=text, elements=[painter]).send()

    async def stream_token(self, token: str) -> None:
        if self._stream is None:
            self._stream = cl.Message(content="")
        await self._stream.stream_token(token)

    async def end_stream(self) -> None:
        if self._stream is not None:
            await self._stream.send()
            self._stream = None

    async def confirm_pull(self, model: str, lang: str) -> bool:
        res = await cl.AskActionMessage(
            content=msg("model_missing", lang, model=model),
            actions=[
                cl.Action(name="pull", payload={"pull": True},
                          label=msg("pull_button", lang, model=model)),
                cl.Action(name="skip", payload={"pull": False}, label=msg("cancel_button", lang)),
            ],
            timeout=600,
        ).send()
        return bool(res and res.get("payload", {}).get("pull"))

    async def pull_progress(self, model: str, progress: PullProgress, lang: str) -> None:
        now = time.monotonic()
        done = progress.status == "success"
        if self._progress is not None and not done and now - self._last_progress < 0.25:
            return  # throttle: the bar moves smoothly without flooding the socket
        self._last_progress = now
        text = f"{msg('pulling', lang, model=model)}\n\n`{progress_bar(progress.fraction)}` "
        if progress.total:
            text += f"{progress.fraction:.0%} ({_gb(progress.completed)} / {_gb(progress.total)})"
        else:
            text += progress.status
        if self._progress is None:
            self._progress = cl.Message(content=text)
            await self._progress.send()
        else:
            self._progress.content = text
            await self._progress.update()


class ImageReporter:
    """Shows a job's queue position, step progress and finished images in the chat.

    Implements :class:`assistant.app.ImageDisplay`; ``lang_of`` gives the chat's language,
    ``describe_ahead(owners, lang)`` a line for each job ahead worth naming (a picture of
    a chat whose tab was closed, :class:`assistant.studio.closed_tabs.ClosedTabs`).
    """

    def __init__(
        self,
        lang_of: Callable[[], str] = lambda: "en",
        describe_ahead: Callable[[tuple[str, ...], str], list[str]] = lambda owners, lang: [],
    ) -> None:
        self._status: cl.Message | None = None
        self._preview: cl.Image | None = None
        self._last = 0.0
        self._downloads: dict[str, tuple[int, int]] = {}
        self.lang_of = lang_of
        self.describe_ahead = describe_ahead

    async def _show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self._status is not None and not force and now - self._last < 0.3:
            return
        self._last = now
        if self._status is None:
            self._status = cl.Message(content=text)
            await self._status.send()
        else:
            self._status.content = text
            await self._status.update()

    async def on_event(self, event: ProgressEvent) -> None:
        """Show one of the job's typed events (queue, download, load, steps)."""
        lang = self.lang_of()
        match event:
            case QueuePosition(ahead=ahead, owners=owners):
                if ahead:
                    lines = [msg("queue_position", lang, ahead=ahead),
                             *self.describe_ahead(owners, lang)]
                    await self._show("\n\n".join(lines), True)
            case ModelLoading(name=name):
                await self._show(msg("loading_model", lang, name=name), True)
            case Optimising(name=name):
                await self._show(msg("optimising_model", lang, name=name), True)
            case ModelLoaded():
                self._downloads.clear()
            case Downloading(label=label, done=done, total=total):
                await self._downloading(label, done, total, lang)
            case StepProgress(step=step, total=total, preview=preview):
                await self._step(step, total, preview, lang)
            case TimeEstimate(seconds=seconds, width=width, height=height, steps=steps):
                text = msg("time_estimate", lang, width=width, height=height,
                           minutes=max(1, round(seconds / 60)), steps=steps)
                await cl.Message(content=text).send()

    async def _downloading(self, label: str, done: int, total: int | None, lang: str) -> None:
        """One bar for all files of the download, however many the hub fetches at once."""
        self._downloads[label] = (done, total or 0)
        got = sum(d for d, _ in self._downloads.values())
        size = sum(tt for _, tt in self._downloads.values())
        fraction = got / size if size else 0.0
        await self._show(msg("downloading_model", lang, bar=progress_bar(fraction),
                           percent=f"{fraction:.0%}", done=_gb(got), total=_gb(size)))

    async def _step(self, step: int, total: int, preview: object, lang: str) -> None:
        bar = progress_bar(step / total if total else 0.0)
        await self._show(msg("drawing", lang, bar=bar, step=step, total=total),
                         force=step == total)
        if isinstance(preview, PILImage.Image) and self._status is not None:
            await self._show_preview(preview)

    async def _show_preview(self, preview: PILImage.Image) -> None:
        """A small live preview (tiny VAE) under the progress bar, replaced as it improves."""
        buf = io.BytesIO()
        preview.save(buf, format="JPEG", quality=80)
        if self._preview is not None:
            await self._preview.remove()
        assert self._status is not None
        self._preview = cl.Image(content=buf.getvalue(), name="preview", display="inline",
                                 mime="image/jpeg", size="small")
        await self._preview.send(for_id=self._status.id)

    async def clear(self) -> None:
        """Remove the progress message and preview (job finished or stopped)."""
        if self._preview is not None:
            await self._preview.remove()
            self._preview = None
        if self._status is not None:
            await self._status.remove()
            self._status = None

    async def on_result(self, images: list[GeneratedImage], paths: list[Path]) -> None:
        await self.clear()
        elements = [
            cl.Image(path=str(p), name=f"seed-{g.seed}", display="inline")
            for g, p in zip(images, paths, strict=True)
        ]
        req = images[0].request
        ids = " ".join(f"#{g.ledger_id}" for g in images if g.ledger_id)
        lines = [
            msg("result_caption", self.lang_of(), seeds=", ".join(str(g.seed) for g in images),
                width=req.output_size[0], height=req.output_size[1], steps=req.steps,
                sampler=req.sampler,
                cfg=f"{req.cfg_scale:g}", ids=f" · {ids}" if ids else ""),
            *([f"⏱ {images[0].duration_s:.1f} s · {images[0].peak_memory}"]
              if images[0].peak_memory else []),
            f"`{req.prompt}`",
        ]
        await cl.Message(content="\n\n".join(lines), elements=elements).send()


def widgets(lang: str, initial: dict[str, Any]) -> list[Any]:
    """The settings panel, rendered from :data:`assistant.studio.panel.FIELDS`."""
    from chainlit.input_widget import Select, Slider, Switch, TextInput

    out: list[Any] = []
    for f in FIELDS:
        value: Any = initial.get(f.id, f.initial)
        if f.kind == "select":
            out.append(Select(id=f.id, label=f.label(lang), values=f.choices,
                              initial_value=str(value)))
        elif f.kind == "switch":
            out.append(Switch(id=f.id, label=f.label(lang), initial=bool(value)))
        elif f.kind == "slider":
            out.append(Slider(id=f.id, label=f.label(lang), initial=float(value),
                              min=f.min, max=f.max, step=f.step))
        else:
            out.append(TextInput(id=f.id, label=f.label(lang), initial=str(value)))
    return out
