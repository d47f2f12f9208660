"""The small protocol every image backend implements, and what it returns.

``ImageEngine.generate(request, on_step=None, cancel=None) -> list[GeneratedImage]``.
Engines are synchronous (they own a GPU or a remote box); the job queue runs them in a
worker thread. ``on_step(step, total, preview)`` reports progress; ``cancel`` is polled
between steps and makes the engine raise :class:`~tools.core.errors.GenerationCancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

from tools.core.request import ImageRequest

StepCallback = Callable[[int, int, Image.Image | None], None]


@dataclass
class GeneratedImage:
    """One image plus the exact request (with concrete seed) that made it."""

    image: Image.Image
    request: ImageRequest
    seed: int
    model_name: str = ""
    model_hash: str = ""
    duration_s: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
    ledger_id: str = ""  # set once the ledger recorded it; shown as #id
    peak_memory: str = ""  # e.g. "peak 3.2 GiB VRAM" for the request that made it


@runtime_checkable
class ImageEngine(Protocol):
    """A backend that turns an :class:`ImageRequest` into images."""

    name: str

    def generate(
        self,
        request: ImageRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]: ...
