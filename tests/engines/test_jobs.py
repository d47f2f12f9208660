"""The single image job queue: one job at a time, FIFO, positions, cancel, errors."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tools.core.errors import EngineError, GenerationCancelled
from tools.core.events import ModelLoading, ProgressEvent, QueuePosition, StepProgress
from tools.core.request import ImageRequest
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine
from tools.engines.jobs import JobQueue, ollama_unload_hook, unload_ollama_models


def _req(prompt: str, steps: int = 5, **kw: Any) -> ImageRequest:
    return ImageRequest(prompt=prompt, steps=steps, width=64, height=64, seed=1, **kw)


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine(step_delay=0.004)


@pytest.fixture
async def queue(engine: FakeEngine) -> AsyncIterator[JobQueue]:
    q = JobQueue(engine)
    yield q
    await q.aclose()


async def _settle() -> None:
    """Let callbacks the worker scheduled with call_soon_threadsafe run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_submits_never_overlap(queue: JobQueue, engine: FakeEngine) -> None:
    results = await asyncio.gather(*(queue.submit(_req(f"p{i}")) for i in range(4)))
    assert [len(r) for r in results] == [1, 1, 1, 1]
    spans = sorted((c.started, c.ended) for c in engine.calls)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and end <= start
    assert {c.thread for c in engine.calls} == {"egaki-image-worker"}


async def test_jobs_run_in_fifo_order(queue: JobQueue, engine: FakeEngine) -> None:
    jobs = [queue.enqueue(_req(p)) for p in ("first", "second", "third")]
    for job in jobs:
        await job.result()
    assert [c.request.prompt for c in engine.calls] == ["first", "second", "third"]


async def test_waiting_callers_hear_their_queue_position(queue: JobQueue) -> None:
    events: dict[str, list[ProgressEvent]] = {"a": [], "b": [], "c": []}
    jobs = [
        queue.enqueue(_req(name, steps=10), on_event=events[name].append)
        for name in ("a", "b", "c")
    ]
    for job in jobs:
        await job.result()
    await _settle()
    positions = {name: [e.ahead for e in seen if isinstance(e, QueuePosition)]
                 for name, seen in events.items()}
    assert positions == {"a": [0], "b": [1, 0], "c": [2, 1, 0]}


async def test_cancelled_waiting_job_never_runs(queue: JobQueue, engine: FakeEngine) -> None:
    running = queue.enqueue(_req("running", steps=30))
    waiting = queue.enqueue(_req("dropped"))
    later = asyncio.create_task(queue.submit(_req("task-cancelled")))
    await asyncio.sleep(0.01)

    assert waiting.cancel() is True
    later.cancel()
    with pytest.raises(GenerationCancelled):
        await waiting.result()
    with pytest.raises(asyncio.CancelledError):
        await later
    await running.result()
    after = await queue.submit(_req("after"))

    assert [c.request.prompt for c in engine.calls] == ["running", "after"]
    assert waiting.state == "cancelled"
    assert [g.request.prompt for g in after] == ["after"]


async def test_cancelling_a_running_job_stops_the_engine(
    queue: JobQueue, engine: FakeEngine
) -> None:
    job_box: list[Any] = []

    def on_event(event: ProgressEvent) -> None:
        if isinstance(event, StepProgress) and event.step == 2:
            job_box[0].cancel()

    job = queue.enqueue(_req("long", steps=150), on_event=on_event)
    job_box.append(job)
    with pytest.raises(GenerationCancelled):
        await job.result()
    assert engine.calls[0].outcome == "cancelled"
    assert engine.calls[0].steps_done < 150
    assert job.state == "cancelled"
    after = await queue.submit(_req("next"))  # the queue keeps going
    assert [g.request.prompt for g in after] == ["next"]


async def test_an_engine_error_reaches_only_its_caller(queue: JobQueue, engine: FakeEngine) -> None:
    engine.fail_next(EngineError.of("engine_diffusers_out_of_memory"))
    bad, good = await asyncio.gather(
        queue.submit(_req("bad")), queue.submit(_req("good")), return_exceptions=True
    )
    assert isinstance(bad, EngineError) and "out of memory" in str(bad)
    assert isinstance(good, list) and good[0].request.prompt == "good"


async def test_progress_callbacks_run_on_the_callers_loop(queue: JobQueue) -> None:
    loop_thread = threading.get_ident()
    sync_seen: list[tuple[int, int, int]] = []
    async_seen: list[int] = []

    def sync_cb(event: ProgressEvent) -> None:
        if isinstance(event, StepProgress):
            sync_seen.append((event.step, event.total, threading.get_ident()))

    async def async_cb(event: ProgressEvent) -> None:
        if isinstance(event, StepProgress):
            async_seen.append(event.step)

    await queue.submit(_req("s", steps=4), on_event=sync_cb)
    await queue.submit(_req("a", steps=4), on_event=async_cb)
    await _settle()
    assert [s for s, _, _ in sync_seen] == [1, 2, 3, 4]
    assert {t for _, _, t in sync_seen} == {loop_thread}
    assert async_seen == [1, 2, 3, 4]


SESSION: contextvars.ContextVar[str] = contextvars.ContextVar("session", default="none")


async def test_callbacks_see_the_submitters_context(queue: JobQueue) -> None:
    """UI callbacks (e.g. Chainlit's per-chat context) must work from the worker."""
    seen: list[str] = []

    async def submit_as(name: str) -> None:
        SESSION.set(name)

        def on_event(event: ProgressEvent) -> None:
            if isinstance(event, StepProgress):
                seen.append(SESSION.get())

        await queue.submit(_req(name, steps=2), on_event=on_event)

    await asyncio.gather(submit_as("chat-a"), submit_as("chat-b"))
    await _settle()
    assert sorted(seen) == ["chat-a", "chat-a", "chat-b", "chat-b"]


async def test_engine_status_reaches_only_the_running_jobs_caller(engine: FakeEngine) -> None:
    seen: dict[str, list[ProgressEvent]] = {"a": [], "b": []}
    queue = JobQueue(engine)
    real = engine.generate

    def generate(request: ImageRequest, on_step: Any = None, cancel: Any = None) -> Any:
        queue.report(ModelLoading(request.prompt))  # as the engine does
        return real(request, on_step, cancel)

    def loads(name: str) -> Any:
        def on_event(event: ProgressEvent) -> None:
            if isinstance(event, ModelLoading):
                seen[name].append(event)

        return on_event

    engine.generate = generate  # type: ignore[method-assign]
    try:
        await asyncio.gather(
            queue.submit(_req("a"), on_event=loads("a")),
            queue.submit(_req("b"), on_event=loads("b")),
        )
        await _settle()
    finally:
        await queue.aclose()
    assert seen == {"a": [ModelLoading("a")], "b": [ModelLoading("b")]}
    queue.report(ModelLoading("idle"))  # nothing running: ignored, no error


async def test_before_job_hook_runs_first_and_its_errors_are_ignored(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def hook() -> None:
        calls.append(len(engine.calls))
        raise RuntimeError("ollama is grumpy")

    queue = JobQueue(engine, before_job=hook)
    try:
        with caplog.at_level(logging.ERROR, logger="tools.engines.jobs"):
            await queue.submit(_req("one"))
            await queue.submit(_req("two"))
    finally:
        await queue.aclose()
    assert calls == [0, 1]  # before each job's engine call
    assert "before_job hook failed" in caplog.text


async def test_close_cancels_waiting_jobs(engine: FakeEngine) -> None:
    queue = JobQueue(engine)
    running = queue.enqueue(_req("running", steps=50))
    waiting = queue.enqueue(_req("waiting"))
    await asyncio.sleep(0.01)
    await queue.aclose()
    for job in (running, waiting):
        with pytest.raises(GenerationCancelled):
            await job.result()
    with pytest.raises(RuntimeError, match="closed"):
        queue.enqueue(_req("too late"))


def test_callers_on_different_event_loops_share_one_worker(engine: FakeEngine) -> None:
    queue = JobQueue(engine)
    out: list[str] = []

    def chat(name: str) -> None:
        images = asyncio.run(queue.submit(_req(name)))
        out.append(images[0].request.prompt)

    threads = [threading.Thread(target=chat, args=(f"chat{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    queue.close()
    assert sorted(out) == ["chat0", "chat1", "chat2"]
    assert {c.thread for c in engine.calls} == {"egaki-image-worker"}


# --- Ollama unload hook --------------------------------------------------------------------


def test_unload_ollama_models_sets_keep_alive_zero_for_each_loaded_model() -> None:
    posted: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/ps":
            return httpx.Response(
                200,
                json={
                    "models": [
                        {"name": "qwen3-vl:8b", "model": "qwen3-vl:8b", "size_vram": 6_000_000_000},
                        {"name": "nomic-embed-text:latest", "model": "nomic-embed-text:latest"},
                    ]
                },
            )
        if request.url.path == "/api/generate":
            posted.append(json.loads(request.content))
            return httpx.Response(200, json={"done": True, "done_reason": "unload"})
        return httpx.Response(404)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    names = unload_ollama_models("http://ollama:11434/", client=client)
    assert names == ["qwen3-vl:8b", "nomic-embed-text:latest"]
    assert posted == [
        {"model": "qwen3-vl:8b", "keep_alive": 0},
        {"model": "nomic-embed-text:latest", "keep_alive": 0},
    ]


def test_unreachable_ollama_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tools.engines.jobs"):
        assert unload_ollama_models("http://127.0.0.1:9", timeout=0.5) == []
    assert "could not ask Ollama" in caplog.text


def test_unload_hook_follows_the_setting(settings: Settings) -> None:
    assert ollama_unload_hook(settings) is None
    on = settings.model_copy(update={"unload_ollama_before_image": True})
    assert callable(ollama_unload_hook(on))
