"""A chat open when this machine's speed is measured follows the preset chosen for it.

After the first picture on a CPU the diffusers engine times one UNet step on its own
thread and tells the composition root (:meth:`App.machine_measured`), which tells every
watching chat. Each chat hands that to its own event loop, with its Chainlit context, and
:func:`follow_machine` switches it if its panel still says "auto"
(:class:`~assistant.studio.machine_preset.PresetFollower`): never in the middle of a turn
(that turn's end follows instead, after its picture), once, with the panel sent again
showing the preset and the note saying why.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import chainlit as cl

from assistant.app import App
from assistant.chat.conversation import Conversation
from assistant.studio.machine_preset import PresetFollower
from assistant.ui.handover import turn_in_progress
from assistant.ui.render import ChainlitUI, widgets

log = logging.getLogger(__name__)

_TASKS: set[asyncio.Task[None]] = set()  # keep running follows referenced


def watch_machine(app: App, conv: Conversation, follower: PresetFollower) -> None:
    """This session's chat hears the machine's measurement from now on (again after a
    resume: the previous watch is stopped)."""
    cl.user_session.set("preset_follower", follower)
    stop_watching()
    loop, chat = asyncio.get_running_loop(), contextvars.copy_context()

    def measured() -> None:  # on the engine's measuring thread: on to this chat's loop
        loop.call_soon_threadsafe(_spawn, lambda: follow_machine(app, conv), context=chat)

    cl.user_session.set("machine_watch", app.watch_machine(measured))


def stop_watching() -> None:
    """The page went away: its chat no longer hears the measurement."""
    if callable(stop := cl.user_session.get("machine_watch")):
        stop()
        cl.user_session.set("machine_watch", None)


def _spawn(work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    task = asyncio.ensure_future(work())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def follow_machine(app: App, conv: Conversation) -> None:
    """A chat still on "auto" takes the machine's preset, once, when no turn of it runs:
    the panel is sent again showing it (its other values as they are), and the chat says
    why in its language."""
    follower = cl.user_session.get("preset_follower")
    if not isinstance(follower, PresetFollower) or follower.source != "auto":
        return  # the person's, or switched already: nothing to read
    if turn_in_progress():
        return  # that turn's end follows
    values = {**await app.panel_defaults(), **(cl.user_session.get("chat_settings") or {})}
    try:
        switch = await app.follow_machine(conv, follower, values, ChainlitUI())
        if switch is not None:
            await cl.ChatSettings(widgets(conv.lang, switch[0])).send()
            await cl.Message(content=switch[1]).send()
    except Exception:  # a nicety: the chat goes on as it was
        log.exception("Could not switch the chat to the machine's preset")
