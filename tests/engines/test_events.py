"""Progress travels as typed events from the engine and the queue to the chat."""

from __future__ import annotations

import asyncio
from pathlib import Path

from assistant.studio.runner import ImageRunner
from tools.core.events import ProgressEvent, QueuePosition, StepProgress
from tools.core.request import ImageRequest
from tools.engines.fake import FakeEngine
from tools.engines.jobs import JobQueue


def _req(steps: int = 3) -> ImageRequest:
    return ImageRequest(prompt="x", width=64, height=64, steps=steps, seed=1)


async def test_a_queued_job_tells_its_position_then_its_steps() -> None:
    queue = JobQueue(FakeEngine())
    events: list[ProgressEvent] = []
    try:
        await queue.submit(_req(3), on_event=events.append)
        for _ in range(5):
            await asyncio.sleep(0)
    finally:
        await queue.aclose()
    assert events == [QueuePosition(0), StepProgress(1, 3), StepProgress(2, 3),
                      StepProgress(3, 3)]


async def test_a_runner_without_a_queue_turns_engine_steps_into_events(tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    runner = ImageRunner(FakeEngine(), output_dir=tmp_path, on_event=events.append)
    await runner.run(_req(2))
    assert events == [StepProgress(1, 2), StepProgress(2, 2)]
