"""How long a job will take on this machine, from its own measured runs.

After every denoise the engine records seconds per step for its path (device, runtime,
model family) and the pixels it ran at, in ``cache_dir/step_times.json``. Before a job,
:meth:`StepTimes.estimate` scales the nearest measured size by pixels and steps; when the
estimate is :data:`ANNOUNCE_ABOVE_S` or more the engine emits a
:class:`~tools.core.events.TimeEstimate` that the chat shows in the person's language.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from tools.core.events import EngineEventSink, TimeEstimate
from tools.core.request import ImageRequest

log = logging.getLogger(__name__)

ANNOUNCE_ABOVE_S = 60.0  # "a job that will run for minutes"
_KEEP = 8  # sizes remembered per path


class StepTimes:
    """Measured seconds per step, by path and pixel count; persisted as small JSON."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, float]] = {}
        if path is not None and path.is_file():
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
                self._data = {str(k): {str(p): float(s) for p, s in v.items()}
                              for k, v in raw.items() if isinstance(v, dict)}
            except (OSError, ValueError, AttributeError, TypeError) as err:
                log.info("step times unreadable, starting afresh: %s", err)

    def record(self, key: str, pixels: int, steps: int, seconds: float) -> None:
        """One run: ``steps`` denoising steps over ``pixels`` (batch included) took ``seconds``."""
        if steps < 1 or pixels < 1 or seconds <= 0:
            return
        with self._lock:
            sizes = self._data.setdefault(key, {})
            sizes[str(pixels)] = seconds / steps
            while len(sizes) > _KEEP:
                sizes.pop(next(iter(sizes)))
            self._save()

    def estimate(self, key: str, pixels: int, steps: int) -> float | None:
        """Seconds for ``steps`` at ``pixels`` on path ``key``; None before any run there."""
        sizes = self._data.get(key)
        if not sizes:
            return None
        near = min(sizes, key=lambda p: abs(int(p) - pixels))
        return sizes[near] * pixels / int(near) * steps

    def announce(self, key: str, req: ImageRequest, sink: EngineEventSink | None
                 ) -> Callable[[float], None]:
        """Before a pass of ``req`` on path ``key``: tell ``sink`` the estimate when it is a
        minute or more. Returns the function to call with the seconds it really took."""
        steps = max(1, int(req.steps * (req.strength if req.mode != "txt2img" else 1.0)))
        pixels = req.width * req.height * req.batch_size
        eta = self.estimate(key, pixels, steps)
        if sink is not None and eta is not None and eta >= ANNOUNCE_ABOVE_S:
            sink(TimeEstimate(eta, req.width, req.height, steps))
        return lambda seconds: self.record(key, pixels, steps, seconds)

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._data), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as err:
            log.info("step times not saved: %s", err)
