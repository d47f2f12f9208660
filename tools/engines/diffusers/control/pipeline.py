"""Run a job under ControlNet: the control pipeline, its arguments and what to report.

:meth:`ControlNets.prepare` resolves and loads the request's ControlNets (kept while the
image model stays resident), builds the mode's ControlNet pipeline from the resident one
with ``from_pipe`` (its modules are shared: no weights reload), opens the control images at
the target size and returns the ``__call__`` arguments: the control images (``image`` in
txt2img, ``control_image`` in img2img/inpaint), ``controlnet_conditioning_scale`` (the
weights) and ``control_guidance_start``/``_end`` (A1111's guidance start/end).

Runtimes: the ControlNet itself runs torch; its residuals feed the UNet, which the compiled
(CUDA) graph and the OpenVINO (CPU) UNet were not built with, so both step aside for the
job and the UNet runs torch too. The infotext's ``ControlNet runtime`` says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tools.core.request import ControlUnit, ImageRequest
from tools.core.settings import Settings
from tools.engines.diffusers.control.models import (
    ControlSource,
    control_hash,
    load_control,
    resolve_control,
)
from tools.engines.diffusers.hub import DownloadCallback
from tools.engines.diffusers.plan import open_image
from tools.infotext.controlnet import unit_text

log = logging.getLogger(__name__)

_AUTO_CLASS = {
    "txt2img": "AutoPipelineForText2Image",
    "img2img": "AutoPipelineForImage2Image",
    "inpaint": "AutoPipelineForInpainting",
}
MAX_RESIDENT = 4  # ControlNets kept loaded beside the image model


@dataclass
class ControlJob:
    """What :meth:`ControlNets.prepare` hands the engine for one request."""

    pipe: Any
    kwargs: dict[str, Any]
    extra: dict[str, str] = field(default_factory=dict)


class ControlNets:
    """The loaded ControlNets of the resident image model, and their pipelines."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._owner: tuple[str, ...] | None = None  # the image model they belong to
        self._nets: dict[tuple[str, ...], tuple[ControlSource, Any]] = {}
        self._pipes: dict[tuple[Any, ...], Any] = {}

    def _reset_for(self, loaded: Any) -> None:
        if self._owner != loaded.key:
            self._nets.clear()
            self._pipes.clear()
            self._owner = loaded.key

    def _net(self, loaded: Any, unit: ControlUnit, on_download: DownloadCallback | None
             ) -> tuple[ControlSource, Any]:
        source = resolve_control(unit.model, unit.module, loaded.family, self.settings)
        if source.key not in self._nets:
            if len(self._nets) >= MAX_RESIDENT:
                self._nets.pop(next(iter(self._nets)))
                self._pipes.clear()
            net = load_control(source, loaded.family, self.settings, on_download,
                               loaded.device, loaded.dtype)
            self._nets[source.key] = (source, net)
        return self._nets[source.key]

    def prepare(self, loaded: Any, request: ImageRequest,
                on_download: DownloadCallback | None = None) -> ControlJob:
        """The ControlNet pipeline and arguments for ``request`` (which has units)."""
        self._reset_for(loaded)
        found = [self._net(loaded, u, on_download) for u in request.controls]
        nets = [net for _, net in found]
        pipe = self._pipeline(loaded, request.mode, nets)
        size = (request.width, request.height)
        images = [open_image(u.image, "RGB", size) for u in request.controls]
        units = request.controls
        single = len(units) == 1
        kwargs: dict[str, Any] = {
            "image" if request.mode == "txt2img" else "control_image":
                images[0] if single else images,
            "controlnet_conditioning_scale": units[0].weight if single
            else [u.weight for u in units],
            "control_guidance_start": units[0].guidance_start if single
            else [u.guidance_start for u in units],
            "control_guidance_end": units[0].guidance_end if single
            else [u.guidance_end for u in units],
        }
        extra = {}
        for i, (unit, (source, _)) in enumerate(zip(units, found, strict=True)):
            digest = control_hash(source, self.settings.cache_dir)
            label = f"{source.name} [{digest}]" if digest else source.name
            extra[f"ControlNet {i}"] = unit_text(unit, label)
        if note := runtime_note(loaded):
            extra["ControlNet runtime"] = note
        return ControlJob(pipe, kwargs, extra)

    def _pipeline(self, loaded: Any, mode: str, nets: list[Any]) -> Any:
        key = (mode, *(id(n) for n in nets))
        if key not in self._pipes:
            import diffusers

            auto = getattr(diffusers, _AUTO_CLASS[mode])
            pipe = auto.from_pipe(loaded.pipe, controlnet=nets[0] if len(nets) == 1 else nets)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[key] = pipe
        return self._pipes[key]

    @staticmethod
    def after_loras(loaded: Any, job: ControlJob | None) -> dict[str, str]:
        """Once LoRAs are set: the compiled graph has no residual inputs, so eager for this
        job (the engine sets ``paused`` again for the next one; OpenVINO's route sends such
        calls to torch by itself). Returns the job's infotext entries."""
        if job is None:
            return {}
        if loaded.compiled is not None:
            loaded.compiled.paused = True
        return job.extra

    def clear(self) -> None:
        self._nets.clear()
        self._pipes.clear()
        self._owner = None


def runtime_note(loaded: Any) -> str:
    """Which runtime runs a ControlNet job, and why, when it is not the usual one."""
    if loaded.openvino is not None:
        return "PyTorch (the OpenVINO UNet has no ControlNet inputs)"
    if loaded.compiled is not None:
        return "PyTorch eager (the compiled UNet has no ControlNet inputs)"
    return ""
