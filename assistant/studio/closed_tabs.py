"""Chats whose page went away while a picture of theirs was waiting or drawing.

A picture is the chat's, not the page's. When a tab closes mid-job:

1. a started picture always finishes and lands in the saved chat (and the ledger);
2. one still waiting finishes too, or, with ``closed_tab_jobs = "cancel"``, is dropped
   before it starts (:meth:`ClosedTabs.cancel_waiting`);
3. chats waiting behind it are told what they wait for (:meth:`ClosedTabs.describe_ahead`:
   "a picture for your chat “beach volleyball”, whose tab was closed");
4. the chat reopened while its picture is still drawing takes it back
   (:meth:`ClosedTabs.page_back` returns what the UI edge kept to adopt it).

Nothing here knows Chainlit: the UI edge reports pages going and coming and keeps what
it needs to adopt a job in ``keep``. A chat is known by its thread id, which is also the
owner of its jobs in the queue (:class:`~assistant.studio.runner.ImageRunner`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tools.core.errors import GenerationCancelled
from tools.core.messages import msg
from tools.engines.jobs import JobQueue

ClosedTabPolicy = Literal["finish", "cancel"]


@dataclass
class Unattended:
    """A chat whose page went away while it still had a job in the queue."""

    thread_id: str
    title: str  # the chat's name as its sidebar will show it ("" when it has none yet)
    user: str  # whose chat it is: only its owner is told its title
    keep: Any = None  # what the UI edge needs to hand the job to a reopened page
    busy: Callable[[], bool] = lambda: False  # a turn of it still runs (saving, showing)


class ClosedTabs:
    """Which chats' jobs run unattended, and what the queue says about them.

    ``queue`` gives the process's job queue, or None while none was built (then no chat
    has a job). One per process (:class:`~assistant.app.App`).
    """

    def __init__(self, queue: Callable[[], JobQueue | None], policy: ClosedTabPolicy) -> None:
        self._queue = queue
        self.policy = policy
        self._gone: dict[str, Unattended] = {}

    def _jobs(self, thread_id: str) -> list[Any]:
        queue = self._queue()
        return queue.jobs_of(thread_id) if queue is not None and thread_id else []

    def _refresh(self) -> None:
        if (queue := self._queue()) is not None:
            queue.refresh()

    def page_gone(
        self,
        thread_id: str,
        *,
        title: str,
        user: str,
        keep: Any = None,
        busy: Callable[[], bool] = lambda: False,
    ) -> bool:
        """The chat's page went away. True when it still has a job in the queue or a
        turn running (``busy``: the picture is drawn but not yet saved and shown)."""
        self._prune()
        entry = Unattended(thread_id, title, user, keep, busy)
        if not self._active(entry):
            return False
        self._gone[thread_id] = entry
        self._refresh()  # chats behind it now hear whose job they wait for
        return True

    def is_gone(self, thread_id: str) -> bool:
        return thread_id in self._gone

    def cancel_waiting(self, thread_id: str) -> int:
        """With the ``cancel`` policy, drop the gone chat's jobs that have not started
        (a started one runs on). Returns how many were dropped."""
        if self.policy != "cancel" or thread_id not in self._gone:
            return 0
        why = GenerationCancelled.of("closed_tab_cancelled")
        dropped = sum(job.cancel_if_waiting(why) for job in self._jobs(thread_id))
        self._prune()
        return dropped

    def page_back(self, thread_id: str) -> Any:
        """The chat is shown again: what ``page_gone`` kept when its job or turn still
        runs (to deliver it to the new page), else None."""
        entry = self._gone.pop(thread_id, None)
        if entry is None:
            return None
        self._refresh()
        return entry.keep if self._active(entry) else None

    def describe_ahead(self, owners: tuple[str, ...], lang: str, user: str) -> list[str]:
        """A line for each unattended chat among ``owners`` (the jobs ahead of someone):
        its title for its own user, no title for anyone else's eyes."""
        lines: list[str] = []
        for owner in dict.fromkeys(owners):  # once per chat, in queue order
            entry = self._gone.get(owner)
            if entry is None or not self._jobs(owner):
                continue
            if entry.title and entry.user == user:
                lines.append(msg("queue_ahead_closed_tab", lang, title=entry.title))
            else:
                lines.append(msg("queue_ahead_closed_tab_untitled", lang))
        return lines

    def _active(self, entry: Unattended) -> bool:
        return bool(self._jobs(entry.thread_id)) or entry.busy()

    def _prune(self) -> None:
        """Forget chats whose work is all over."""
        for thread_id in [t for t, e in self._gone.items() if not self._active(e)]:
            del self._gone[thread_id]
