"""Chainlit handlers. With ui_render.py and persistence.py, the only modules importing chainlit.

Thin on purpose: each handler forwards to a :class:`Conversation` and renders what it
asks for. Run with ``egaki run`` (which calls ``chainlit run`` on this file).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.server import app as chainlit_app
from chainlit.types import ThreadDict
from starlette.datastructures import Headers

from assistant.chat.conversation import Conversation, ollama_chat_model
from assistant.chat.image_tool import make_generate_image_tool
from assistant.chat.ledger_chat import LedgerChat
from assistant.chat.vision_flow import MASK_ACTION
from assistant.studio.best_of import BestOf
from assistant.studio.runner import ImageRunner
from assistant.ui import compat as chainlit_compat
from assistant.ui.persistence import local_user, make_data_layer, mount_files
from assistant.ui.render import ACTION, ChainlitUI, ImageReporter, widgets
from tools.core.errors import EgakiError
from tools.core.imports import preload_numpy, serialized
from tools.core.messages import msg
from tools.core.settings import Settings
from tools.engines.factory import build_queue
from tools.engines.jobs import JobQueue
from tools.ledger.service import Ledger
from tools.ledger.types import RecordContext
from tools.llm.ollama_gateway import OllamaGateway

log = logging.getLogger(__name__)

chainlit_compat.serve_local_assets_only()
preload_numpy()
SETTINGS = Settings()
GATEWAY = OllamaGateway(SETTINGS)
_QUEUE: JobQueue | None = None
_LEDGER: Ledger | None = None


_LEDGER_LOCK = asyncio.Lock()
_BACKGROUND: set[asyncio.Task[Any]] = set()
_DEVICE: str | None = None


async def image_device() -> str:
    """cuda/mps/cpu/remote for the configured engine (torch imported off the loop)."""
    global _DEVICE
    if _DEVICE is None:
        from assistant.quality.settings import engine_device

        _DEVICE = await asyncio.to_thread(serialized, engine_device, SETTINGS)
    return _DEVICE


def best_of_default(device: str) -> bool:
    """Best-of-N is on where images are quick, unless the settings say otherwise."""
    if SETTINGS.quality_mode != "auto":
        return SETTINGS.quality_mode == "on"
    return device in ("cuda", "remote")


def best_of_factory(reporter: ImageReporter, book: Ledger, thread_id: str,
                    device: str) -> Callable[[Any], BestOf]:
    """Builds the chat's best-of-N once its chat model is known."""

    def make(chat_model: Any) -> BestOf:
        from langchain_ollama import ChatOllama

        from assistant.quality.check import VisionChecker, load_clip_scorer
        from assistant.quality.constraints import ConstraintDeriver
        from assistant.quality.loop import QualityLoop
        from assistant.quality.settings import QualitySettings

        hidden = ImageRunner(  # shows nothing: rejected candidates never reach the chat
            job_queue(),
            output_dir=SETTINGS.images_dir,
            on_step=reporter.on_step,
            on_queue_position=reporter.on_queue_position,
            recorder=book.record_batch,
            context=RecordContext(thread_id=thread_id, status="rejected"),
            on_status=reporter.on_status,
        )
        name = SETTINGS.effective_vision_model
        vision = ChatOllama(model=name, base_url=SETTINGS.ollama_host,
                            client_kwargs={"timeout": SETTINGS.ollama_timeout_s})
        loop = QualityLoop(
            VisionChecker(vision, model_name=name, gateway=GATEWAY),
            hidden.run,
            QualitySettings.from_settings(SETTINGS),
            deriver=ConstraintDeriver(chat_model),
            scorer=load_clip_scorer(SETTINGS.quality_clip_model),
            device=device,
        )
        return BestOf(loop, reporter.on_result, book)

    return make


async def ledger() -> Ledger:
    """The process-wide ledger, opened off the event loop (Chroma is slow to import);
    the first call also reconciles files and records in the background."""
    global _LEDGER
    async with _LEDGER_LOCK:
        if _LEDGER is None:
            _LEDGER = await asyncio.to_thread(serialized, Ledger.from_settings, SETTINGS)
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(_LEDGER.reconcile))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)
    return _LEDGER


_FAMILY: str | None = None


def image_family(settings: Settings) -> str:
    """SD1.5 or SDXL, for prompt style and native sizes; a guess when nothing is local.

    Read once per process (it opens the model's index or checkpoint header), not per chat.
    """
    global _FAMILY
    if _FAMILY is None:
        _FAMILY = _detect_family(settings)
    return _FAMILY


def _detect_family(settings: Settings) -> str:
    if settings.image_engine == "diffusers":
        from tools.engines.diffusers.models import detect_family, resolve_model

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


CHAT_DB = SETTINGS.data_dir / "chat_history.sqlite3"
CHAT_FILES = SETTINGS.data_dir / "chat_files"
mount_files(chainlit_app, CHAT_FILES)


@cl.data_layer
def data_layer() -> cl.data.BaseDataLayer:
    """Threads, messages and images in SQLite + files under the data dir."""
    return make_data_layer(CHAT_DB, CHAT_FILES)


if SETTINGS.auth_password:
    # Required by `egaki run` whenever the chat is bound to a non-loopback address.
    @cl.password_auth_callback
    async def password_auth(username: str, password: str) -> cl.User | None:
        if hmac.compare_digest(password.encode(), SETTINGS.auth_password.encode()):
            return cl.User(identifier=username or "egaki", metadata={"provider": "password"})
        return None

else:
    # History needs a user; on loopback there is exactly one, logged in without a form.
    @cl.header_auth_callback
    async def local_auth(headers: Headers) -> cl.User | None:
        return local_user(headers)


async def _conversation() -> Conversation:
    conv = cl.user_session.get("conversation")
    if conv is None:
        reporter = ImageReporter()
        cl.user_session.set("reporter", reporter)
        book = await ledger()
        device = await image_device()
        thread_id = cl.context.session.thread_id or ""
        runner = ImageRunner(
            job_queue(),
            output_dir=SETTINGS.images_dir,
            on_result=reporter.on_result,
            on_step=reporter.on_step,
            on_queue_position=reporter.on_queue_position,
            recorder=book.record_batch,
            context=RecordContext(thread_id=thread_id),
            on_status=reporter.on_status,
        )
        conv = Conversation(
            SETTINGS,
            GATEWAY,
            ollama_chat_model(SETTINGS),
            [make_generate_image_tool(runner)],
            browser_lang=getattr(cl.context.session, "language", None) or "en",
            runner=runner.run,
            family=image_family(SETTINGS),
            ledger_chat=LedgerChat(book, runner),
            best_of_factory=best_of_factory(reporter, book, thread_id, device),
            best_of_default=best_of_default(device),
            token_counter=getattr(job_queue().engine, "count_tokens", None),
        )
        reporter.lang_of = lambda: conv.lang
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
    initial = {"chat_model": SETTINGS.chat_model, "image_model": SETTINGS.image_model,
               "best_of": best_of_default(_DEVICE or "cpu")}
    return widgets(lang, initial)


@cl.on_chat_start
async def on_chat_start() -> None:
    conv = await _conversation()
    await cl.ChatSettings(_widgets(conv.lang)).send()
    await conv.start(ChainlitUI())


def _remember(conv: Conversation) -> None:
    """Keep a JSON snapshot in the user session: Chainlit saves it with the thread."""
    cl.user_session.set("egaki", conv.snapshot())


@cl.on_chat_resume
async def on_chat_resume(thread: ThreadDict) -> None:
    conv = await _conversation()
    snapshot = cl.user_session.get("egaki")
    if isinstance(snapshot, dict):
        conv.restore(snapshot)
    await cl.ChatSettings(_widgets(conv.lang)).send()
    if await conv.ensure_model(ChainlitUI()) and conv.studio and conv.studio.spec:
        await ChainlitUI().show(msg("after_images", conv.lang), conv.studio.actions())


@cl.on_settings_update
async def on_settings_update(values: dict[str, Any]) -> None:
    conv = await _conversation()
    try:
        merged = {**(cl.user_session.get("chat_settings") or {}), **values}
        await conv.apply_panel(merged, ChainlitUI())
    except EgakiError as err:
        await cl.Message(content=err.localized(conv.lang)).send()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    conv = await _conversation()
    async def turn() -> None:
        files = [
            (Path(str(el.path)), el.name or "", getattr(el, "mime", None) or "")
            for el in message.elements or []
            if getattr(el, "path", None)
        ]
        if files:
            await conv.on_upload(files, ChainlitUI(), message.content)
        else:
            await conv.on_message(message.content, ChainlitUI())

    await _guard(conv, turn(), "a chat turn")


async def _guard(conv: Conversation, work: Any, what: str) -> None:
    """Run one handler's work; every failure becomes a message, the chat stays usable."""
    try:
        await work
        _remember(conv)
    except EgakiError as err:
        await cl.Message(content=err.localized(conv.lang)).send()
    except Exception as err:  # the UI is the one place that catches everything
        log.exception("Unexpected error in %s", what)
        await cl.Message(content=msg("internal_error", conv.lang, error=type(err).__name__)).send()


async def _stoppable(work: Any) -> None:
    """Run a button's work as the session's current task, so the stop button cancels it.

    Chainlit runs action callbacks inside the HTTP request, outside any task it can stop.
    """
    task = asyncio.ensure_future(work)
    cl.context.session.current_task = task
    await cl.context.emitter.task_start()
    try:
        await task
    except asyncio.CancelledError:
        pass  # the user pressed stop; Chainlit already said so and the job was cancelled
    finally:
        await cl.context.emitter.task_end()


@cl.action_callback(ACTION)
async def on_action(action: cl.Action) -> None:
    conv = await _conversation()
    payload = dict(action.payload or {})
    name = str(payload.pop("action", ""))
    await _stoppable(_guard(conv, conv.on_action(name, payload, ChainlitUI()), "a button"))


@cl.action_callback(MASK_ACTION)
async def on_mask(action: cl.Action) -> None:
    """The MaskPainter element's "Use this mask" (callAction with the mask data URL)."""
    conv = await _conversation()
    payload = dict(action.payload or {})
    work = _guard(conv, conv.on_action(MASK_ACTION, payload, ChainlitUI()), "the mask action")
    await _stoppable(work)


@cl.on_stop
async def on_stop() -> None:
    """Stop pressed: clear this chat's progress message (the job itself is cancelled)."""
    reporter = cl.user_session.get("reporter")
    if isinstance(reporter, ImageReporter):
        await reporter.clear()
