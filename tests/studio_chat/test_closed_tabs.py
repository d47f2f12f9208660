"""A chat whose tab closed while its picture was waiting or drawing (issue 17, item 3):
the ``closed_tab_jobs`` setting, what the queue says about it, and taking it back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from assistant.studio.closed_tabs import ClosedTabs
from assistant.studio.runner import ImageRunner
from tools.core.errors import GenerationCancelled
from tools.core.request import ImageRequest
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine
from tools.engines.jobs import Job, JobQueue
from tools.ledger.types import RecordContext


def _req(prompt: str, steps: int = 5) -> ImageRequest:
    return ImageRequest(prompt=prompt, steps=steps, width=64, height=64, seed=1)


@pytest.fixture
async def queue() -> AsyncIterator[JobQueue]:
    q = JobQueue(FakeEngine(step_delay=0.004))
    yield q
    await q.aclose()


async def _running(queue: JobQueue, owner: str) -> Job:
    job = queue.enqueue(_req(owner, steps=150), owner=owner)
    for _ in range(500):
        if job.state == "running":
            return job
        await asyncio.sleep(0.005)
    raise AssertionError("never started")


def test_the_setting_finishes_by_default_and_accepts_only_finish_or_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EGAKI_CLOSED_TAB_JOBS", raising=False)
    assert Settings(_env_file=None).closed_tab_jobs == "finish"  # type: ignore[call-arg]
    monkeypatch.setenv("EGAKI_CLOSED_TAB_JOBS", "cancel")
    assert Settings(_env_file=None).closed_tab_jobs == "cancel"  # type: ignore[call-arg]
    monkeypatch.setenv("EGAKI_CLOSED_TAB_JOBS", "drop")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def test_with_cancel_a_waiting_job_of_a_closed_tab_is_dropped_a_started_one_runs_on(
    queue: JobQueue,
) -> None:
    tabs = ClosedTabs(lambda: queue, "cancel")
    started = await _running(queue, "chat-a")
    waiting = queue.enqueue(_req("b"), owner="chat-b")

    assert tabs.page_gone("chat-a", title="beach", user="me") is True
    assert tabs.page_gone("chat-b", title="cat", user="me") is True
    assert tabs.cancel_waiting("chat-a") == 0  # started: it always finishes
    assert tabs.cancel_waiting("chat-b") == 1
    with pytest.raises(GenerationCancelled) as raised:
        await waiting.result()
    assert "tab was closed before it started" in raised.value.message
    assert len(await started.result()) == 1
    assert not tabs.is_gone("chat-b")  # nothing of it is left in the queue


async def test_with_finish_a_waiting_job_of_a_closed_tab_still_runs(queue: JobQueue) -> None:
    tabs = ClosedTabs(lambda: queue, "finish")
    started = await _running(queue, "chat-a")
    waiting = queue.enqueue(_req("b"), owner="chat-b")

    tabs.page_gone("chat-b", title="cat", user="me")
    assert tabs.cancel_waiting("chat-b") == 0
    await started.result()
    assert len(await waiting.result()) == 1


async def test_a_chat_without_a_job_is_not_unattended(queue: JobQueue) -> None:
    tabs = ClosedTabs(lambda: queue, "cancel")
    assert tabs.page_gone("chat-a", title="beach", user="me") is False
    assert not tabs.is_gone("chat-a")
    assert ClosedTabs(lambda: None, "cancel").page_gone("x", title="", user="") is False


async def test_the_queue_names_a_closed_tabs_picture_to_its_own_user_only(
    queue: JobQueue,
) -> None:
    tabs = ClosedTabs(lambda: queue, "finish")
    started = await _running(queue, "chat-a")
    tabs.page_gone("chat-a", title="beach volleyball", user="me")

    mine = tabs.describe_ahead(("chat-a", "chat-x"), "en", "me")
    assert mine == ["· a picture for your chat “beach volleyball”, whose tab was closed — "
                    "it will be saved there."]
    assert "beach" not in tabs.describe_ahead(("chat-a",), "en", "someone else")[0]
    assert "「beach volleyball」" in tabs.describe_ahead(("chat-a",), "ja", "me")[0]
    assert tabs.describe_ahead(("chat-x",), "en", "me") == []  # an attended chat
    await started.result()
    assert tabs.describe_ahead(("chat-a",), "en", "me") == []  # its job is over


async def test_a_reopened_chat_takes_back_its_running_job_once(queue: JobQueue) -> None:
    tabs = ClosedTabs(lambda: queue, "finish")
    started = await _running(queue, "chat-a")
    kept = object()
    tabs.page_gone("chat-a", title="beach", user="me", keep=kept)

    assert tabs.page_back("chat-a") is kept
    assert tabs.page_back("chat-a") is None  # handed over once
    assert tabs.describe_ahead(("chat-a",), "en", "me") == []  # attended again
    await started.result()
    tabs.page_gone("chat-a", title="beach", user="me", keep=kept)
    assert tabs.page_back("chat-a") is None  # nothing left to take back


async def test_the_runner_submits_a_chats_jobs_under_its_thread_id(
    queue: JobQueue, tmp_path: Path
) -> None:
    runner = ImageRunner(queue, output_dir=tmp_path,
                         context=RecordContext(thread_id="chat-a"))
    seen: list[list[Job]] = []
    task = asyncio.ensure_future(runner.run(_req("a", steps=60)))
    for _ in range(200):
        if jobs := queue.jobs_of("chat-a"):
            seen.append(jobs)
            break
        await asyncio.sleep(0.005)
    await task
    assert seen and seen[0][0].request.prompt == "a"


async def test_a_chat_whose_turn_still_runs_is_taken_back_after_its_job(
    queue: JobQueue,
) -> None:
    """The picture is drawn but still being saved and shown: the reopened page gets it."""
    tabs = ClosedTabs(lambda: queue, "finish")
    turn = {"running": True}
    kept = object()
    assert tabs.page_gone("chat-a", title="", user="me", keep=kept,
                          busy=lambda: turn["running"]) is True
    assert tabs.page_back("chat-a") is kept
    tabs.page_gone("chat-a", title="", user="me", keep=kept, busy=lambda: turn["running"])
    turn["running"] = False
    assert tabs.page_back("chat-a") is None
