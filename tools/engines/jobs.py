"""One image job at a time: a FIFO queue in front of a single engine.

Every chat submits here, so two chats never run two jobs at once on one GPU and never
make the engine load two pipelines. The engine runs in ONE worker thread; callers await
from their own event loops::

    queue = JobQueue(engine, before_job=ollama_unload_hook(settings))
    images = await queue.submit(request, on_event=show)

``on_event`` hears the job's typed events (:mod:`tools.core.events`):
:class:`~tools.core.events.QueuePosition` each time the number of jobs ahead changes (0 =
yours is starting), :class:`~tools.core.events.StepProgress` per denoising step, and the
engine's own events (downloads, model loading) while this job is the one running. It
runs on the caller's event loop (never the worker thread) and may be a plain function or
a coroutine. Cancelling the awaiting task, or calling :meth:`Job.cancel`, drops a waiting
job before it runs and stops a running one through the engine's cancel event.

A job may name its ``owner`` (a chat's thread id): :meth:`JobQueue.jobs_of` finds a
chat's jobs (e.g. when its page went away), :meth:`Job.cancel_if_waiting` drops one only
if it has not started, and each ``QueuePosition`` names the owners of the jobs ahead, so
a chat can be told what it waits for (:meth:`JobQueue.refresh` tells them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from tools.core.engine import GeneratedImage, ImageEngine
from tools.core.errors import GenerationCancelled
from tools.core.events import EngineEvent, EventSink, ProgressEvent, QueuePosition, StepProgress
from tools.core.request import ImageRequest

if TYPE_CHECKING:
    from tools.core.settings import Settings

log = logging.getLogger(__name__)

BeforeJobHook = Callable[[], None]
_ids = itertools.count(1)


def _cancelled() -> GenerationCancelled:
    return GenerationCancelled.of("job_cancelled")


class Job:
    """One submitted request. Await :meth:`result`; :meth:`cancel` from any thread."""

    def __init__(
        self,
        queue: JobQueue,
        request: ImageRequest,
        loop: asyncio.AbstractEventLoop,
        on_event: EventSink | None = None,
        owner: str = "",
    ) -> None:
        self.id = next(_ids)
        self.request = request
        self.owner = owner
        self.state = "waiting"  # waiting | running | done | cancelled | failed
        self.cancel_event = threading.Event()
        self._queue = queue
        self._loop = loop
        self._future: asyncio.Future[list[GeneratedImage]] = loop.create_future()
        self._on_event = on_event
        self._last_position: tuple[int, tuple[str, ...]] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        # Callbacks run in the submitter's context (e.g. the chat session's context vars).
        self._context = contextvars.copy_context()

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.state}>"

    async def result(self) -> list[GeneratedImage]:
        """Wait for the images; cancelling this await cancels the job."""
        try:
            return await asyncio.shield(self._future)
        except asyncio.CancelledError:
            # Nobody will read the outcome now; mark it retrieved so asyncio stays quiet.
            self._future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.cancel()
            raise

    def cancel(self) -> bool:
        """Drop the job if waiting, or ask the engine to stop if running."""
        return self._queue._cancel(self)

    def cancel_if_waiting(self, error: GenerationCancelled | None = None) -> bool:
        """Drop the job only if it has not started (a started one runs on); its awaiter
        gets ``error`` (default: "the image job was cancelled"). True if dropped."""
        return self._queue._cancel(self, only_waiting=True, error=error)

    # --- called by the queue (worker thread or caller thread) ---------------------------

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the caller's loop; await it there if it is a coroutine."""

        def run() -> None:
            try:
                result = fn(*args)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)  # keep a reference until it finishes
                    task.add_done_callback(self._tasks.discard)
            except Exception:  # a broken UI callback must not kill the job
                log.exception("job %s callback failed", self.id)

        # RuntimeError: the caller's loop is closed; nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(run, context=self._context.copy())

    def _emit(self, event: ProgressEvent) -> None:
        if self._on_event is not None:
            self._call_soon(self._on_event, event)

    def _report_position(
        self, ahead: int, owners: tuple[str, ...] = (), force: bool = False
    ) -> None:
        if force or (ahead, owners) != self._last_position:
            self._last_position = (ahead, owners)
            self._emit(QueuePosition(ahead, owners))

    def _step(self, step: int, total: int, preview: Any) -> None:
        """The engine's ``on_step`` (worker thread), forwarded as a typed event."""
        self._emit(StepProgress(step, total, preview))

    def _settle(self, result: list[GeneratedImage] | None, error: BaseException | None) -> None:
        def settle() -> None:
            if self._future.done():
                return
            if error is not None:
                self._future.set_exception(error)
            else:
                self._future.set_result(result or [])

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(settle)


class JobQueue:
    """FIFO queue running one engine in one worker thread. Use one per engine."""

    def __init__(
        self,
        engine: ImageEngine,
        *,
        before_job: BeforeJobHook | None = None,
        thread_name: str = "egaki-image-worker",
    ) -> None:
        self.engine = engine
        self.before_job = before_job
        self._thread_name = thread_name
        self._pending: deque[Job] = deque()
        self._running: Job | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- public API --------------------------------------------------------------------

    def enqueue(
        self,
        request: ImageRequest,
        *,
        on_event: EventSink | None = None,
        owner: str = "",
    ) -> Job:
        """Add a job from inside a running event loop and return its handle at once."""
        job = Job(self, request, asyncio.get_running_loop(), on_event, owner)
        with self._cond:
            if self._closed:
                raise RuntimeError("JobQueue is closed")
            self._pending.append(job)
            self._ensure_worker()
            self._report_positions()
            self._cond.notify_all()
        return job

    async def submit(
        self,
        request: ImageRequest,
        *,
        on_event: EventSink | None = None,
        owner: str = "",
    ) -> list[GeneratedImage]:
        """Queue ``request``, wait for its turn and return its images."""
        return await self.enqueue(request, on_event=on_event, owner=owner).result()

    def report(self, event: EngineEvent) -> None:
        """For the engine (worker thread): a download/load event of the running job.

        Only the chat whose job is running hears it; with nothing running it is dropped."""
        job = self._running
        if job is not None:
            job._emit(event)

    @property
    def pending(self) -> int:
        """Jobs waiting (not counting the running one)."""
        with self._cond:
            return len(self._pending)

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._running is not None

    def jobs_of(self, owner: str) -> list[Job]:
        """``owner``'s jobs not yet finished: the running one first, then those waiting."""
        with self._cond:
            jobs = [self._running, *self._pending] if self._running else list(self._pending)
            return [job for job in jobs if job is not None and job.owner == owner]

    def refresh(self) -> None:
        """Tell every waiting job its position again, even if unchanged: what the UI
        says about the jobs ahead changed (e.g. the page of one of them went away)."""
        with self._cond:
            self._report_positions(force=True)

    def close(self, timeout: float | None = 10.0) -> None:
        """Cancel waiting jobs, stop the running one and join the worker thread."""
        with self._cond:
            self._closed = True
            waiting = list(self._pending)
            self._pending.clear()
            if self._running is not None:
                self._running.cancel_event.set()
            self._cond.notify_all()
        for job in waiting:
            job.state = "cancelled"
            job._settle(None, _cancelled())
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # --- internals ---------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name=self._thread_name, daemon=True)
            self._thread.start()

    def _report_positions(self, force: bool = False) -> None:
        """Tell every waiting job how many jobs are ahead of it and whose they are
        (caller holds the lock)."""
        owners = [self._running.owner] if self._running is not None else []
        for job in self._pending:
            job._report_position(len(owners), tuple(owners), force)
            owners.append(job.owner)

    def _cancel(
        self, job: Job, only_waiting: bool = False, error: GenerationCancelled | None = None
    ) -> bool:
        with self._cond:
            if job.state == "waiting" and job in self._pending:
                self._pending.remove(job)
                job.state = "cancelled"
                self._report_positions()
            elif job.state == "running" and not only_waiting:
                job.cancel_event.set()
                return True
            else:
                return False
        job._settle(None, error or _cancelled())
        return True

    def _next_job(self) -> Job | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            job = self._pending.popleft()
            job.state = "running"
            self._running = job
            job._report_position(0)
            self._report_positions()
            return job

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            result: list[GeneratedImage] | None = None
            error: BaseException | None = None
            try:
                if self.before_job is not None:
                    try:
                        self.before_job()
                    except Exception:  # a helper hook must never block image jobs
                        log.exception("before_job hook failed; running the job anyway")
                if job.cancel_event.is_set():
                    raise _cancelled()
                result = self.engine.generate(
                    job.request, on_step=job._step, cancel=job.cancel_event
                )
            except BaseException as exc:  # handed to that caller only
                error = exc
            with self._cond:
                self._running = None
                job.state = (
                    "done"
                    if error is None
                    else ("cancelled" if isinstance(error, GenerationCancelled) else "failed")
                )
                self._report_positions()
            job._settle(result, error)
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt/SystemExit: let the thread die loudly


# --- Ollama memory hook -----------------------------------------------------------------


def unload_ollama_models(
    host: str, *, timeout: float = 5.0, client: httpx.Client | None = None
) -> list[str]:
    """Ask Ollama to free its GPU memory: ``keep_alive: 0`` for every loaded model.

    Lists ``/api/ps`` and posts ``/api/generate`` with ``keep_alive`` 0 per model. An
    unreachable Ollama is logged and ignored: freeing memory is a courtesy, not a must.
    Returns the names it asked to unload.
    """
    base = host.rstrip("/")
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    unloaded: list[str] = []
    try:
        resp = http.get(f"{base}/api/ps")
        resp.raise_for_status()
        models = resp.json().get("models") or []
        for entry in models:
            name = (entry.get("model") or entry.get("name")) if isinstance(entry, dict) else None
            if not name:
                continue
            http.post(f"{base}/api/generate", json={"model": name, "keep_alive": 0})
            unloaded.append(name)
    except (httpx.HTTPError, ValueError, AttributeError) as err:
        log.warning("could not ask Ollama at %s to unload models: %s", base, err)
    finally:
        if own:
            http.close()
    if unloaded:
        log.info("asked Ollama to unload %s before the image job", ", ".join(unloaded))
    return unloaded


def ollama_unload_hook(settings: Settings) -> BeforeJobHook | None:
    """The ``before_job`` hook for ``settings``, or ``None`` when unloading is off."""
    if not settings.unload_ollama_before_image:
        return None
    host = settings.ollama_host

    def hook() -> None:
        unload_ollama_models(host)

    return hook
