"""What an image job tells the chat while it waits and runs, as small typed events.

The engine (on its worker thread) and the job queue emit these; the UI edge renders
each by its type. Nothing is encoded in strings::

    def show(event: ProgressEvent) -> None:
        match event:
            case QueuePosition(ahead=n): ...
            case ModelLoading(name=name): ...
            case StepProgress(step=s, total=t, preview=p): ...

:data:`EngineEvent` is the part an engine emits (model downloads, loads and
optimisation); :class:`~tools.engines.jobs.JobQueue` routes those to the caller whose
job caused them and adds :class:`QueuePosition` and :class:`StepProgress`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class QueuePosition:
    """``ahead`` jobs run before this one; 0 means it is starting now. ``owners`` names
    whose they are (the running one first; "" for a job without an owner)."""

    ahead: int
    owners: tuple[str, ...] = ()


@dataclass(frozen=True)
class Downloading:
    """Hub download progress of one file (``label``): ``done`` of ``total`` bytes."""

    label: str
    done: int
    total: int | None = None


@dataclass(frozen=True)
class ModelLoading:
    """The image model ``name`` is being loaded into memory (seconds to minutes)."""

    name: str


@dataclass(frozen=True)
class Optimising:
    """The image model ``name`` is being converted for a faster runtime (OpenVINO)."""

    name: str


@dataclass(frozen=True)
class ModelLoaded:
    """The image model ``name`` is ready; any download progress is over."""

    name: str


@dataclass(frozen=True)
class StepProgress:
    """Denoising step ``step`` of ``total`` is done; ``preview`` is a small image or None."""

    step: int
    total: int
    preview: Image.Image | None = None


@dataclass(frozen=True)
class TimeEstimate:
    """The job about to run will take about ``seconds`` (this machine's measured speed)."""

    seconds: float
    width: int
    height: int
    steps: int


EngineEvent = Downloading | ModelLoading | Optimising | ModelLoaded | TimeEstimate
ProgressEvent = QueuePosition | StepProgress | EngineEvent

# Called on the engine's worker thread; must return quickly and never raise.
EngineEventSink = Callable[[EngineEvent], None]
# Called on the submitter's event loop; may return an awaitable (it is awaited there).
EventSink = Callable[[ProgressEvent], Any]
