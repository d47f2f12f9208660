"""Chainlit handlers: thin glue between Chainlit's events and the composition root.

Everything is built by :class:`assistant.app.App` (one per process, from the settings);
each handler finds its chat's :class:`~assistant.chat.conversation.Conversation`, forwards
the event and lets :mod:`assistant.ui.render` draw what it asks for. Run with ``egaki run``
(which calls ``chainlit run`` on this file). With ``render.py``, ``persistence.py`` and
``compat.py``, the only modules that import chainlit.

Chainlit finds its handlers by decorators run at import, so that is all that happens
here at import: the handlers, the file route and the login method.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from pathlib import Path
from typing import Any

import chainlit as cl
from chainlit.data import get_data_layer
from chainlit.server import app as chainlit_server
from chainlit.types import ThreadDict
from starlette.datastructures import Headers

from assistant.app import App, shared_app
from assistant.chat.conversation import Conversation
from assistant.chat.state import ChatState
from assistant.chat.vision_flow import MASK_ACTION
from assistant.studio.machine_preset import PresetFollower
from assistant.ui import compat as chainlit_compat
from assistant.ui.handover import Left, after_resume, hand_over, left_page, turn_running
from assistant.ui.persistence import local_user, make_data_layer, mount_files
from assistant.ui.preset_watch import follow_machine, stop_watching, watch_machine
from assistant.ui.render import ACTION, ChainlitUI, ImageReporter, widgets
from tools.core.errors import EgakiError
from tools.core.messages import detect_language, msg

log = logging.getLogger(__name__)

APP: App = shared_app()


def _install(app: App) -> None:
    """What Chainlit's server needs before it serves: local assets, the files route."""
    chainlit_compat.serve_local_assets_only()
    chainlit_compat.accept_empty_uploads()
    mount_files(chainlit_server, app.chat_files)


_install(APP)


@cl.data_layer
def data_layer() -> cl.data.BaseDataLayer:
    """Threads, messages and images in SQLite + files under the data dir."""
    return make_data_layer(APP.chat_db, APP.chat_files)


if APP.settings.auth_password:
    # Required by `egaki run` whenever the chat is bound to a non-loopback address.
    @cl.password_auth_callback
    async def password_auth(username: str, password: str) -> cl.User | None:
        secret = APP.settings.auth_password
        if hmac.compare_digest(password.encode(), secret.encode()):
            return cl.User(identifier=username or "egaki", metadata={"provider": "password"})
        return None

else:
    # History needs a user; on loopback there is exactly one, logged in without a form.
    @cl.header_auth_callback
    async def local_auth(headers: Headers) -> cl.User | None:
        return local_user(headers)


# Start-up futures run past the handler that began them; keep them referenced.
_BACKGROUND: set[asyncio.Future[Any]] = set()


async def _conversation() -> Conversation:
    """This chat's Conversation. Concurrent first callers share one build.

    Chainlit does not hold a message back until ``on_chat_start`` has finished
    (``chainlit/socket.py``: ``client_message`` starts ``process_message`` at once), so
    without this a message arriving during the start built a second Conversation, and
    whichever was stored last lost the other's history.
    """
    build = cl.user_session.get("conversation_build")
    # (a resumed thread's saved session holds None here: futures are not saved)
    if not isinstance(build, asyncio.Future) or (
        build.done() and (build.cancelled() or build.exception() is not None)
    ):
        build = asyncio.ensure_future(_build_conversation())
        cl.user_session.set("conversation_build", build)
    return await asyncio.shield(build)


async def _build_conversation() -> Conversation:
    """This session's chat, opened by the composition root."""
    conv = cl.user_session.get("conversation")
    if isinstance(conv, Conversation):
        return conv
    session = cl.context.session
    state = ChatState.start(getattr(session, "language", None) or "en", session.thread_id or "")
    user = session.user.identifier if session.user else ""
    reporter = ImageReporter(
        lambda: state.lang,
        lambda owners, lang: APP.closed_tabs.describe_ahead(owners, lang, user),
    )
    cl.user_session.set("reporter", reporter)
    conv = await APP.open_chat(state, reporter)
    cl.user_session.set("conversation", conv)
    return conv


async def _started() -> Conversation:
    """The Conversation once the chat's start (panel, model check) is over.

    Every handler waits here: a message typed while the chat was still starting is
    answered after the start instead of racing it.
    """
    startup = _startup()
    if startup is not None and not startup.done():
        await asyncio.shield(startup)  # its own failures were already shown in the chat
    return await _conversation()


def _startup() -> asyncio.Future[None] | None:
    """A new chat's start (panel, model check), begun once by whichever handler comes
    first (a message can arrive before ``on_chat_start`` runs); None when resuming."""
    startup = cl.user_session.get("startup")
    if not isinstance(startup, asyncio.Future) and not cl.context.session.thread_id_to_resume:
        startup = asyncio.ensure_future(_start_chat())
        cl.user_session.set("startup", startup)
        _BACKGROUND.add(startup)
        startup.add_done_callback(_BACKGROUND.discard)
    return startup if isinstance(startup, asyncio.Future) else None


def _browser_lang() -> str:
    return detect_language("", fallback=getattr(cl.context.session, "language", None) or "en")


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    lang = language or "en"
    return [
        cl.Starter(label=msg("starter_beach", lang), message=msg("starter_beach_says", lang)),
        cl.Starter(label=msg("starter_scene", lang), message=msg("starter_scene_says", lang)),
        cl.Starter(label=msg("starter_photo", lang), message=msg("starter_photo_says", lang)),
    ]


async def _send_panel(conv: Conversation) -> None:
    values = await APP.panel_defaults()
    await cl.ChatSettings(widgets(conv.lang, values)).send()
    watch_machine(APP, conv, PresetFollower(str(values.get("preset", "auto"))))
    if note := APP.preset_note(conv.lang):  # why the panel starts on its preset
        await cl.Message(content=note).send()


@cl.on_chat_start
async def on_chat_start() -> None:
    """Greet at once; open the ledger, find the device and check the model afterwards.

    While this handler runs, Chainlit's composer ignores Enter (``useChatData().disabled``
    is true while ``loading``), and until the first message appears it shows the welcome
    screen, whose composer (and whatever was typed into it) is replaced when that message
    arrives. So the handler only greets; the slow start runs after it returns, and
    messages sent meanwhile wait for it in :func:`_started`. The browser side of the
    same fix is ``public/egaki-composer.js``.
    """
    await ChainlitUI().say(msg("welcome", _browser_lang()))
    _startup()


async def _start_chat() -> None:
    try:
        conv = await _conversation()
    except Exception as err:  # the chat must say so rather than stay silent
        log.exception("Could not start the chat")
        error = msg("internal_error", _browser_lang(), error=type(err).__name__)
        await cl.Message(content=error).send()
        return
    await _send_panel(conv)
    await _guard(conv, conv.ensure_model(ChainlitUI()), "starting the chat")


def _remember(conv: Conversation) -> None:
    """Keep the chat state's JSON snapshot in the user session: Chainlit saves it with the
    thread."""
    cl.user_session.set("egaki", conv.snapshot())


@cl.on_chat_resume
async def on_chat_resume(thread: ThreadDict) -> None:
    """A saved chat reopened: its state restored, or, when its old page went away while
    its picture was still drawing, that very chat, whose picture then arrives here."""
    left = APP.closed_tabs.page_back(thread["id"])
    if isinstance(left, Left):
        hand_over(left)
    conv = await _conversation()
    snapshot = cl.user_session.get("egaki")
    if not isinstance(left, Left) and isinstance(snapshot, dict):
        conv.restore(snapshot)
    await _send_panel(conv)
    after_resume(_guard(conv, _resumed(conv, drawing=isinstance(left, Left)), "resuming"))


async def _resumed(conv: Conversation, drawing: bool) -> None:
    """What a reopened chat shows under its history: the buttons to go on from its last
    picture; nothing while its picture still draws (that turn shows its own progress,
    picture and buttons here)."""
    if drawing or not await conv.ensure_model(ChainlitUI()):
        return
    if conv.studio and conv.studio.spec:
        await ChainlitUI().show(msg("after_images", conv.lang), conv.studio.actions())


@cl.on_chat_end
async def on_chat_end() -> None:
    """The page went away (closed, reloaded or disconnected). Chainlit saves the user
    session right after this: keep Egaki's state in it current; a picture still in the
    queue runs on unattended (:mod:`assistant.ui.handover`)."""
    stop_watching()
    conv = cl.user_session.get("conversation")
    if isinstance(conv, Conversation):
        _remember(conv)
        left_page(APP, conv, cl.user_session.get("first_words") or "")


@cl.on_settings_update
async def on_settings_update(values: dict[str, Any]) -> None:
    conv = await _started()
    try:
        merged = {**(cl.user_session.get("chat_settings") or {}), **values}
        if isinstance(follower := cl.user_session.get("preset_follower"), PresetFollower):
            follower.submitted(merged)  # a preset the person picks is never overridden
        await conv.apply_panel(merged, ChainlitUI())
    except EgakiError as err:
        await cl.Message(content=err.localized(conv.lang)).send()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    if cl.user_session.get("first_words") is None:  # what Chainlit names the thread after
        cl.user_session.set("first_words", message.content or "")
    conv = await _started()

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

    await _guard(conv, turn(), "a chat turn", message.content or "")


async def _guard(conv: Conversation, work: Any, what: str, words: str = "") -> None:
    """Run one handler's work; every failure becomes a message, the chat stays usable.

    After a successful turn the chat's state is saved with the thread (and the thread
    named once): see :func:`_save_thread`.
    """
    try:
        with turn_running():
            await work
            _remember(conv)
            await _save_thread(conv, words)
    except EgakiError as err:
        await cl.Message(content=err.localized(conv.lang)).send()
    except Exception as err:  # the UI is the one place that catches everything
        log.exception("Unexpected error in %s", what)
        await cl.Message(content=msg("internal_error", conv.lang, error=type(err).__name__)).send()
    await follow_machine(APP, conv)  # measured during the turn: now, after its picture


async def _save_thread(conv: Conversation, words: str) -> None:
    """Save Egaki's state with the thread now, and name the thread once.

    Chainlit saves the user session only when the page goes away; a turn that ends after
    that (a picture whose tab was closed) would leave the reopened chat without its
    buttons and memory. The name: Chainlit names a thread after the first message's text
    ("" for a picture sent alone, "GO"); Egaki replaces that automatic name once, with the
    person's words or the picture's caption (:meth:`Conversation.title`), never a name
    the person gave it.
    """
    session = cl.context.session
    layer = get_data_layer()
    if layer is None or not session.thread_id or not session.has_first_interaction:
        return
    metadata: dict[str, Any] = {"egaki": conv.snapshot()}
    name: str | None = None
    if not cl.user_session.get("egaki_named"):
        title = conv.title(words)
        thread = await layer.get_thread(session.thread_id) if title else None
        automatic = ("", cl.user_session.get("first_words") or "")
        if title and (thread is None or (thread.get("name") or "") in automatic):
            name = title
            metadata["egaki_named"] = True
            cl.user_session.set("egaki_named", True)
    await layer.update_thread(session.thread_id, name=name, metadata=metadata)


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


async def _press(name: str, payload: dict[str, Any], what: str) -> None:
    """Forward a button press (typed and routed by the chat's action table)."""
    conv = await _started()
    await _stoppable(_guard(conv, conv.on_action(name, payload, ChainlitUI()), what))


@cl.action_callback(ACTION)
async def on_action(action: cl.Action) -> None:
    """Every studio/vision/ledger button: the payload names the action."""
    payload = dict(action.payload or {})
    await _press(str(payload.pop("action", "")), payload, "a button")


@cl.action_callback(MASK_ACTION)
async def on_mask(action: cl.Action) -> None:
    """The MaskPainter element's "Use this mask" (callAction with the mask data URL)."""
    await _press(MASK_ACTION, dict(action.payload or {}), "the mask action")


@cl.on_stop
async def on_stop() -> None:
    """Stop pressed: clear this chat's progress message (the job itself is cancelled)."""
    reporter = cl.user_session.get("reporter")
    if isinstance(reporter, ImageReporter):
        await reporter.clear()
