"""Jobs that belong to a chat: found by owner, dropped only while waiting, and every
waiting job hears whose jobs are ahead of it (a closed tab's picture, issue 17)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tools.core.errors import GenerationCancelled
from tools.core.events import ProgressEvent, QueuePosition
from tools.core.request import ImageRequest
from tools.engines.fake import FakeEngine
from tools.engines.jobs import Job, JobQueue


def _req(prompt: str, steps: int = 5) -> ImageRequest:
    return ImageRequest(prompt=prompt, steps=steps, width=64, height=64, seed=1)


@pytest.fixture
async def queue() -> AsyncIterator[JobQueue]:
    q = JobQueue(FakeEngine(step_delay=0.004))
    yield q
    await q.aclose()


async def _until_running(job: Job) -> None:
    for _ in range(500):
        if job.state == "running":
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{job} never started")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_chats_jobs_are_found_by_owner_running_one_first(queue: JobQueue) -> None:
    a1 = queue.enqueue(_req("a1", steps=150), owner="chat-a")
    await _until_running(a1)
    b = queue.enqueue(_req("b"), owner="chat-b")
    a2 = queue.enqueue(_req("a2"), owner="chat-a")

    assert queue.jobs_of("chat-a") == [a1, a2]
    assert queue.jobs_of("chat-b") == [b]
    assert queue.jobs_of("nobody") == []
    for job in (a1, b, a2):
        await job.result()
    assert queue.jobs_of("chat-a") == []


async def test_cancel_if_waiting_drops_a_waiting_job_with_the_given_reason(
    queue: JobQueue,
) -> None:
    running = queue.enqueue(_req("running", steps=150), owner="a")
    await _until_running(running)
    waiting = queue.enqueue(_req("waiting"), owner="b")
    why = GenerationCancelled.of("closed_tab_cancelled")

    assert waiting.cancel_if_waiting(why) is True
    with pytest.raises(GenerationCancelled) as raised:
        await waiting.result()
    assert raised.value is why
    assert waiting.state == "cancelled"
    await running.result()


async def test_cancel_if_waiting_leaves_a_started_job_running(queue: JobQueue) -> None:
    running = queue.enqueue(_req("running", steps=60), owner="a")
    await _until_running(running)

    assert running.cancel_if_waiting() is False
    images = await running.result()  # it finishes: a started picture is never lost
    assert running.state == "done" and len(images) == 1


async def test_waiting_jobs_hear_whose_jobs_are_ahead(queue: JobQueue) -> None:
    heard: list[ProgressEvent] = []
    first = queue.enqueue(_req("first", steps=150), owner="chat-a")
    await _until_running(first)
    queue.enqueue(_req("second"), owner="chat-b")
    last = queue.enqueue(_req("third"), owner="chat-c", on_event=heard.append)
    await _settle()

    assert heard[0] == QueuePosition(2, ("chat-a", "chat-b"))
    await last.result()
    await _settle()
    positions: list[Any] = [e for e in heard if isinstance(e, QueuePosition)]
    assert positions[-1] == QueuePosition(0, ())
    assert QueuePosition(1, ("chat-b",)) in positions


async def test_refresh_tells_waiting_jobs_their_position_again(queue: JobQueue) -> None:
    heard: list[ProgressEvent] = []
    first = queue.enqueue(_req("first", steps=150), owner="chat-a")
    await _until_running(first)
    queue.enqueue(_req("second"), owner="chat-b", on_event=heard.append)
    await _settle()
    assert heard == [QueuePosition(1, ("chat-a",))]

    queue.refresh()  # nothing moved, but what the UI says about chat-a changed
    await _settle()
    assert heard == [QueuePosition(1, ("chat-a",))] * 2
    await first.result()
