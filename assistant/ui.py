"""Chainlit handlers: the only module that imports chainlit.

Thin on purpose: each handler forwards to a :class:`Conversation` and renders what it
asks for. Run with ``egaki run`` (which calls ``chainlit run`` on this file).
"""

from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path
from typing import Any

import chainlit as cl

from assistant.conversation import Conversation, ollama_chat_model
from assistant.errors import EgakiError
from assistant.i18n import t
from assistant.ollama_gateway import OllamaGateway, PullProgress
from assistant.panel import FIELDS
from assistant.settings import Settings
from assistant.studio import ActionSpec
from tools.engine import GeneratedImage
from tools.factory import build_queue
from tools.jobs import JobQueue
from tools.langchain_tool import ImageRunner, make_generate_image_tool

log = logging.getLogger(__name__)

SETTINGS = Settings()
GATEWAY = OllamaGateway(SETTINGS)
_QUEUE: JobQueue | None = None
ACTION = "egaki"  # every studio button routes through one callback


def image_family(settings: Settings) -> str:
    """SD1.5 or SDXL, for prompt style and native sizes; a guess when nothing is local."""
    if settings.image_engine == "diffusers":
        from tools.models import detect_family, resolve_model

        try:
            return detect_family(resolve_model(settings.image_model, settings))
        except (EgakiError, OSError, ValueError) as err:
            log.info("Could not detect the image model family: %s", err)
    return "sdxl" if "xl" in settings.image_model.lower() else "sd15"


def job_queue() -> JobQueue:
    """The one image queue of this process, built on first use (weights load lazily)."""
    global _QUEUE
    if _QUEUE is None:
        _QUEUE = build_queue(SETTINGS)
    return _QUEUE


if SETTINGS.auth_password:
    # Required by `egaki run` whenever the chat is bound to a non-loopback address.
    @cl.password_auth_callback
    async def password_auth(username: str, password: str) -> cl.User | None:
        if hmac.compare_digest(password.encode(), SETTINGS.auth_password.encode()):
            return cl.User(identifier=username or "egaki", metadata={"provider": "password"})
        return None


def progress_bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "▰" * filled + "▱" * (width - filled)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


class ChainlitUI:
    """Implements :class:`assistant.conversation.ChatUI` with Chainlit messages."""

    def __init__(self) -> None:
        self._stream: cl.Message | None = None
        self._progress: cl.Message | None = None
        self._last_progress = 0.0

    async def say(self, text: str) -> None:
        await cl.Message(content=text).send()

    async def show(self, text: str, actions: list[ActionSpec]) -> None:
        buttons = [
            cl.Action(name=ACTION, payload={"action": a.name, **a.payload}, label=a.label)
            for a in actions
        ]
        await cl.Message(content=text, actions=buttons).send()

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
            content=t("model_missing", lang, model=model),
            actions=[
                cl.Action(name="pull", payload={"pull": True},
                          label=t("pull_button", lang, model=model)),
                cl.Action(name="skip", payload={"pull": False}, label=t("cancel_button", lang)),
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
        text = f"{t('pulling', lang, model=model)}\n\n`{progress_bar(progress.fraction)}` "
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
    """Shows a job's queue position, step progress and finished images in the chat."""

    def __init__(self) -> None:
        self._status: cl.Message | None = None
        self._last = 0.0

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

    async def on_queue_position(self, ahead: int) -> None:
        if ahead:
            await self._show(f"⏳ {ahead} job(s) ahead of yours / 順番待ち: {ahead} 件", True)

    async def on_step(self, step: int, total: int, preview: object) -> None:
        bar = progress_bar(step / total if total else 0.0)
        await self._show(f"🎨 `{bar}` {step}/{total}", force=step == total)

    async def on_result(self, images: list[GeneratedImage], paths: list[Path]) -> None:
        if self._status is not None:
            await self._status.remove()
            self._status = None
        elements = [
            cl.Image(path=str(p), name=f"seed-{g.seed}", display="inline")
            for g, p in zip(images, paths, strict=True)
        ]
        req = images[0].request
        lines = [
            f"**Seed** {', '.join(str(g.seed) for g in images)} · {req.width}×{req.height} · "
            f"{req.steps} steps · {req.sampler} · CFG {req.cfg_scale:g}",
            f"`{req.prompt}`",
        ]
        await cl.Message(content="\n\n".join(lines), elements=elements).send()


def _conversation() -> Conversation:
    conv = cl.user_session.get("conversation")
    if conv is None:
        reporter = ImageReporter()
        runner = ImageRunner(
            job_queue(),
            output_dir=SETTINGS.images_dir,
            on_result=reporter.on_result,
            on_step=reporter.on_step,
            on_queue_position=reporter.on_queue_position,
        )
        conv = Conversation(
            SETTINGS,
            GATEWAY,
            ollama_chat_model(SETTINGS),
            [make_generate_image_tool(runner)],
            browser_lang=getattr(cl.context.session, "language", None) or "en",
            runner=runner.run,
            family=image_family(SETTINGS),
        )
        cl.user_session.set("conversation", conv)
    return conv


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    if (language or "").startswith("ja"):
        return [
            cl.Starter(label="ビーチバレーの写真", message="ビーチバレーの写真を作りたい"),
            cl.Starter(label="夜の東京の街並み", message="雨上がりの夜の東京の路地を描いて"),
            cl.Starter(label="写真からプロンプト", message="この写真をプロンプトにして"),
        ]
    return [
        cl.Starter(label="Beach volleyball photo", message="I want a beach volleyball photo"),
        cl.Starter(label="Cozy reading nook", message="A cozy reading nook on a rainy day"),
        cl.Starter(label="Photo → prompt", message="Describe my photo as a prompt"),
    ]


def _widgets(lang: str) -> list[Any]:
    """The settings panel, rendered from :data:`assistant.panel.FIELDS`."""
    from chainlit.input_widget import Select, Slider, Switch, TextInput

    initial = {"chat_model": SETTINGS.chat_model, "image_model": SETTINGS.image_model}
    out: list[Any] = []
    for f in FIELDS:
        value = initial.get(f.id, f.initial)
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


@cl.on_chat_start
async def on_chat_start() -> None:
    conv = _conversation()
    await cl.ChatSettings(_widgets(conv.lang)).send()
    await conv.start(ChainlitUI())


@cl.on_settings_update
async def on_settings_update(values: dict[str, Any]) -> None:
    conv = _conversation()
    try:
        merged = {**(cl.user_session.get("chat_settings") or {}), **values}
        await conv.apply_panel(merged, ChainlitUI())
    except EgakiError as err:
        await cl.Message(content=err.localized(conv.lang)).send()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    conv = _conversation()
    try:
        await conv.on_message(message.content, ChainlitUI())
    except EgakiError as err:
        await cl.Message(content=err.localized(conv.lang)).send()
    except Exception as err:  # the UI is the one place that catches everything
        log.exception("Unexpected error in a chat turn")
        await cl.Message(content=t("internal_error", conv.lang, error=type(err).__name__)).send()


@cl.action_callback(ACTION)
async def on_action(action: cl.Action) -> None:
    conv = _conversation()
    payload = dict(action.payload or {})
    name = str(payload.pop("action", ""))
    try:
        await conv.on_action(name, payload, ChainlitUI())
    except Exception as err:  # the UI is the one place that catches everything
        log.exception("Unexpected error in a button action")
        await cl.Message(content=t("internal_error", conv.lang, error=type(err).__name__)).send()
