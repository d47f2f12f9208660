"""A torch-free :class:`~tools.core.engine.ImageEngine` for tests, demos and UI work.

Images are deterministic in (prompt, seed, size): a tiny seeded noise tile blown up to
the requested size, so the same request always gives the same pixels and different seeds
look different. It honours batches (seed, seed+1, …), reports every step, stops on the
cancel event, can sleep per step to look busy, and records every call for assertions::

    engine = FakeEngine(step_delay=0.01)
    engine.fail_next(error)   # the next generate() raises this EgakiError
    ...
    assert engine.calls[0].request.prompt == "a cat"
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from PIL import Image

from tools.core.engine import GeneratedImage, StepCallback
from tools.core.errors import GenerationCancelled
from tools.core.request import ImageRequest

_TILE = 12  # noise tile side; bicubic upscaling turns it into soft colour blobs


@dataclass
class FakeCall:
    """One ``generate`` call as the engine saw it."""

    request: ImageRequest
    thread: str
    started: float
    ended: float | None = None
    steps_done: int = 0
    outcome: str = "running"  # running | ok | cancelled | error


def fake_image(prompt: str, seed: int, width: int, height: int) -> Image.Image:
    """The deterministic picture for (prompt, seed, size)."""
    digest = hashlib.sha256(f"{prompt}\x00{seed}\x00{width}x{height}".encode()).digest()
    rng = random.Random(digest)
    tile = Image.frombytes("RGB", (_TILE, _TILE), rng.randbytes(_TILE * _TILE * 3))
    return tile.resize((width, height), Image.Resampling.BICUBIC)


@dataclass
class FakeEngine:
    """Deterministic stand-in for a real engine. Thread-safe enough for the job queue."""

    step_delay: float = 0.0
    model_name: str = "fake-model"
    name: str = "fake"
    calls: list[FakeCall] = field(default_factory=list)
    _failures: deque[BaseException] = field(default_factory=deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model_hash(self) -> str:
        """A 10-hex-digit short hash like A1111's, stable for the model name."""
        return hashlib.sha256(self.model_name.encode()).hexdigest()[:10]

    def fail_next(self, error: BaseException) -> None:
        """Make the next ``generate`` call raise ``error`` (after its first step)."""
        with self._lock:
            self._failures.append(error)

    def generate(
        self,
        request: ImageRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """Make ``request.batch_size`` images, reporting ``request.steps`` steps."""
        request = request.with_seed()
        assert request.seed is not None  # with_seed() guarantees it; narrows for mypy
        call = FakeCall(request, threading.current_thread().name, time.monotonic())
        with self._lock:
            self.calls.append(call)
            failure = self._failures.popleft() if self._failures else None
        t0 = time.perf_counter()
        try:
            for step in range(1, request.steps + 1):
                if cancel is not None and cancel.is_set():
                    call.outcome = "cancelled"
                    raise GenerationCancelled.of("generation_stopped")
                if self.step_delay:
                    time.sleep(self.step_delay)
                call.steps_done = step
                if on_step is not None:
                    on_step(step, request.steps, None)
                if failure is not None:
                    call.outcome = "error"
                    raise failure
            images = [self._one(request, request.seed + i) for i in range(request.batch_size)]
        finally:
            call.ended = time.monotonic()
        call.outcome = "ok"
        took = time.perf_counter() - t0
        return [
            GeneratedImage(
                image=img,
                request=request,
                seed=request.seed + i,
                model_name=self.model_name,
                model_hash=self.model_hash,
                duration_s=took,
            )
            for i, img in enumerate(images)
        ]

    def _one(self, request: ImageRequest, seed: int) -> Image.Image:
        image = fake_image(request.prompt, seed, request.width, request.height)
        if request.init_image is None:
            return image
        # img2img/inpaint: keep (1 - strength) of the init image so edits look like edits.
        with Image.open(request.init_image) as src:
            init = src.convert("RGB").resize(image.size)
        blended = Image.blend(init, image, request.strength)
        if request.mask_image is None:
            return blended
        with Image.open(request.mask_image) as m:
            mask = m.convert("L").resize(image.size)
        return Image.composite(blended, init, mask)
