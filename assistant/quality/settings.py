"""What the person controls in the quality loop, and the budget that enforces it.

:class:`QualitySettings` are the knobs (candidates per round, how many to show, rounds,
images, seconds, screening, a local CLIP folder); :func:`default_candidates` picks N
from how fast the device renders; :class:`Budget` decides whether one more step fits.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Budget", "QualitySettings", "Screen", "default_candidates", "engine_device"]

Screen = Literal["off", "fast", "small"]
_CANDIDATES = {"cuda": 4, "remote": 4, "mps": 2, "cpu": 2}


def default_candidates(device: str) -> int:
    """Candidates per round for a device: 4 where images are quick (CUDA, a remote
    A1111/ComfyUI box), 2 where each costs minutes (CPU, Apple MPS)."""
    return _CANDIDATES.get(device, 2)


def engine_device(settings: Any) -> str:
    """Where ``settings``' engine renders: ``cuda``/``mps``/``cpu`` or ``remote``."""
    engine = getattr(settings, "image_engine", "diffusers")
    if engine in ("a1111", "comfyui"):
        return "remote"
    if engine == "fake":
        return "cpu"
    device = str(getattr(settings, "device", "auto"))
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


class QualitySettings(BaseModel):
    """What the person controls: candidates, what to show, and the retry budget."""

    model_config = ConfigDict(extra="forbid")

    candidates: int | None = Field(
        None, ge=1, le=8, description="Images per round; None = default_candidates(device)."
    )
    show: int = Field(1, ge=1, le=2, description="How many of the best to show.")
    max_rounds: int = Field(2, ge=1, le=5, description="Rounds, the first included.")
    max_images: int = Field(12, ge=1, le=64, description="Images in all, previews included.")
    max_seconds: float = Field(600.0, gt=0, description="Wall-clock budget for the loop.")
    screen: Screen = Field(
        "off",
        description="Screen cheap previews first: 'fast' (fast mode, same size: same "
        "composition) or 'small' (smaller size and fewer steps: the final render may "
        "differ more); winners are re-rendered at full quality with the same seed.",
    )
    screen_scale: float = Field(0.5, gt=0.1, le=1.0, description="Size factor for 'small'.")
    clip_model: Path | None = Field(None, description="Local CLIP folder for tie-breaks.")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> QualitySettings:
        """From the app's settings: each field ``x`` is read from ``settings.quality_x``
        where the app defines one (e.g. ``EGAKI_QUALITY_CANDIDATES``); ``overrides`` win."""
        values = {
            name: getattr(settings, f"quality_{name}")
            for name in cls.model_fields
            if hasattr(settings, f"quality_{name}")
        }
        return cls.model_validate({**values, **overrides})


class Budget:
    """Images and seconds left; estimates the cost of the next step from past ones."""

    def __init__(self, settings: QualitySettings, clock: Callable[[], float]) -> None:
        self.max_images, self.max_seconds = settings.max_images, settings.max_seconds
        self.clock = clock
        self.start = clock()
        self.images = 0
        self.cost: dict[str, float] = {}  # slowest seen per kind of step
        self.final_ratio = 1.0  # full render cost / preview cost, from pixels × steps
        self.hit: Literal["", "images", "seconds"] = ""

    @property
    def elapsed(self) -> float:
        return self.clock() - self.start

    def seen(self, kind: str, seconds: float) -> None:
        self.cost[kind] = max(self.cost.get(kind, 0.0), seconds)

    def final_estimate(self) -> float:
        """Seconds for one full-quality render of a preview: seen, or estimated."""
        if "final" in self.cost:
            return self.cost["final"]
        return self.cost.get("preview", 0.0) * self.final_ratio

    def allows(self, seconds: float, images: int = 1) -> bool:
        """Whether ``images`` more images costing ``seconds`` in all still fit."""
        if self.images == 0:
            return True  # the person always gets one picture
        if self.images + images > self.max_images:
            self.hit = self.hit or "images"
            return False
        if self.elapsed + seconds > self.max_seconds:
            self.hit = self.hit or "seconds"
            return False
        return True
