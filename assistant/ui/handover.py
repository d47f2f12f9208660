"""A chat's page goes away and comes back while its picture is in the queue: the
Chainlit side of :mod:`assistant.studio.closed_tabs`.

How Chainlit 2.12 behaves (``chainlit/socket.py``): when the socket goes, ``disconnect``
calls ``on_chat_end`` and saves the user session with the thread, but the turn drawing
the picture runs on in the old session's task. A socket that comes back joins the SAME
session (``restore_existing_session`` points its ``emit`` at the new socket); a chat
opened from the sidebar is a NEW session, for which ``on_chat_resume`` runs *before* the
page is sent the saved thread (``emitter.resume_thread``), which replaces whatever the
page showed: a message sent from ``on_chat_resume`` itself is lost there.

So:

* :func:`left_page` records the chat as unattended; after :data:`GRACE_S` without the
  same session coming back, :func:`after_grace` cancels its waiting job when the setting
  says so and says so in the saved chat.
* :func:`hand_over` gives a reopened page the chat the old session still runs: the old
  session's ``emit`` now reaches the new socket (as Chainlit's own reconnect does) and
  its files are found under the new session, so the running turn's progress (its saved
  progress message, updated), picture and buttons arrive live; the new session uses the
  same :class:`~assistant.chat.conversation.Conversation`.
* :func:`after_resume` runs what a resumed chat shows once the page has the thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import chainlit as cl
from chainlit.session import WebsocketSession

from assistant.app import App
from assistant.chat.conversation import Conversation
from tools.core.messages import msg

log = logging.getLogger(__name__)

GRACE_S = 2.0  # a socket that comes back within this is the same page, not a closed tab

_BACKGROUND: set[asyncio.Future[Any]] = set()
_TURNS: Counter[str] = Counter()  # thread id -> turns of that chat running
_FEEDS: dict[str, list[WebsocketSession]] = {}  # session id -> sessions it took over


@dataclass
class Left:
    """What a page that went away leaves to the page that reopens its chat."""

    # the session that left, and those it had itself taken over: a turn runs in the
    # session it began in, however often its chat was reopened since
    sessions: list[WebsocketSession]
    conversation: Conversation
    reporter: Any  # the chat's ImageReporter (its progress message lives on)


def _keep(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


@contextmanager
def turn_running() -> Iterator[None]:
    """Around a turn's work: while it runs, its chat is not done even with no job in
    the queue (the picture is drawn but still being saved and shown)."""
    thread_id = cl.context.session.thread_id or ""
    _TURNS[thread_id] += 1
    try:
        yield
    finally:
        _TURNS[thread_id] -= 1
        if _TURNS[thread_id] <= 0:
            del _TURNS[thread_id]


def turn_in_progress() -> bool:
    """Whether a turn of this session's chat is running now."""
    return _TURNS[cl.context.session.thread_id or ""] > 0


def left_page(app: App, conv: Conversation, words: str) -> None:
    """This session's page went away (from ``on_chat_end``). If its chat has a job in
    the queue or a turn running, that runs on unattended: chats behind it hear whose it
    is, and a page reopening the chat takes it over (:func:`hand_over`)."""
    session = cl.context.session
    if not isinstance(session, WebsocketSession) or not session.thread_id:
        return
    user = session.user.identifier if session.user else ""
    thread_id = session.thread_id
    left = Left([session, *_FEEDS.pop(session.id, [])], conv, cl.user_session.get("reporter"))
    if app.closed_tabs.page_gone(thread_id, title=conv.title(words), user=user, keep=left,
                                 busy=lambda: _TURNS[thread_id] > 0):
        _keep(after_grace(app, left, session.socket_id, conv.lang))


async def after_grace(app: App, left: Left, socket_id: str, lang: str) -> None:
    """The page stayed away: apply the closed-tab setting to its waiting job."""
    await asyncio.sleep(GRACE_S)
    session = left.sessions[0]
    thread_id = session.thread_id
    if session.socket_id != socket_id:  # the same page reconnected: it is attended again
        if app.closed_tabs.page_back(thread_id) is left:
            _follow(left.sessions[1:], session)
        return
    if app.closed_tabs.cancel_waiting(thread_id):
        try:  # saved in the chat (this runs in the old session's context)
            await cl.Message(content=msg("closed_tab_cancelled", lang)).send()
        except Exception:  # the UI edge catches everything: a note must not crash
            log.exception("could not note the cancelled job in its chat")


def hand_over(left: Left) -> None:
    """Give this (reopened) page the chat whose old page went away mid-job."""
    new = cl.context.session
    cl.user_session.set("conversation", left.conversation)
    cl.user_session.set("reporter", left.reporter)
    if isinstance(new, WebsocketSession):
        _follow([s for s in left.sessions if s is not new], new)


def _follow(old: list[WebsocketSession], new: WebsocketSession) -> None:
    """What the ``old`` sessions' turns send reaches ``new``'s page from now on."""
    for session in old:
        session.emit = new.emit
        session.emit_call = new.emit_call
        # The page fetches a live element's file as /project/file/<key>?session_id=<its
        # own session>: the old sessions' files must be found there too.
        new.files.update(session.files)
        session.files = new.files
    _FEEDS[new.id] = old


def after_resume(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` once Chainlit has sent the resumed thread to the page.

    ``on_chat_resume`` runs inside the ``connection_successful`` handler's task, which
    sends the thread right after it returns; waiting for that task puts ``work``'s
    messages after the thread instead of under it.
    """
    handler = asyncio.current_task()

    async def later() -> None:
        if handler is not None:
            await asyncio.wait([handler])
        await work

    _keep(later())
