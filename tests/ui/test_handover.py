"""A chat reopened while its old page's turn still runs gets that turn's output live,
however often it was closed and reopened meanwhile (the Chainlit side of issue 17)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import chainlit as cl
import pytest
from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession

from assistant.studio.closed_tabs import ClosedTabs
from assistant.ui import handover
from assistant.ui.handover import Left, hand_over, left_page, turn_running

THREAD = "thread-1"


class Page:
    """One browser page's socket: what reached it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[str] = []
        self.session = WebsocketSession(
            id=f"session-{name}", socket_id=f"socket-{name}", emit=self.emit,
            emit_call=self.emit, user_env={}, client_type="webapp", thread_id=THREAD,
        )

    def emit(self, event: str, data: Any, *_: Any) -> None:
        self.got.append(data)


@pytest.fixture
def pages() -> Iterator[list[Page]]:
    made: list[Page] = []
    yield made
    for page in made:
        asyncio.run(page.session.delete())


def _open(pages: list[Page], name: str) -> Page:
    page = Page(name)
    pages.append(page)
    init_ws_context(page.session)
    return page


async def test_each_reopened_page_gets_what_the_first_pages_turn_still_sends(
    pages: list[Page], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handover, "GRACE_S", 0.0)
    app = SimpleNamespace(closed_tabs=ClosedTabs(lambda: None, "finish"))
    conv = cast(Any, SimpleNamespace(lang="en", title=lambda words: words))
    first = _open(pages, "a")
    with turn_running():  # the picture's turn, begun in the first page's session
        left_page(cast(Any, app), conv, "beach")  # tab closed mid-turn
        second = _open(pages, "b")  # the chat reopened from the sidebar
        left = app.closed_tabs.page_back(THREAD)
        assert isinstance(left, Left)
        hand_over(left)
        assert cl.user_session.get("conversation") is conv
        first.session.emit("new_message", "progress")
        left_page(cast(Any, app), conv, "beach")  # closed again, still running
        third = _open(pages, "c")
        hand_over(app.closed_tabs.page_back(THREAD))
        first.session.emit("new_message", "the picture")
    await asyncio.sleep(0.01)  # the grace passes: nothing to cancel with "finish"

    assert first.got == [] and second.got == ["progress"]
    assert third.got == ["the picture"]
    assert app.closed_tabs.page_back(THREAD) is None  # the turn is over


async def test_a_chat_with_nothing_running_is_not_kept(pages: list[Page]) -> None:
    app = SimpleNamespace(closed_tabs=ClosedTabs(lambda: None, "finish"))
    _open(pages, "a")
    left_page(cast(Any, app), cast(Any, SimpleNamespace(lang="en", title=str)), "")
    assert app.closed_tabs.page_back(THREAD) is None
