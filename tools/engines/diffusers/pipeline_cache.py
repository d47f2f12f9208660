"""Exactly one resident diffusers pipeline, loaded from local files, freed on switch.

:class:`PipelineCache.get` returns the :class:`LoadedModel` for a source, loading it under a
lock (two loads never overlap) and releasing the previous model first so two never share
memory. img2img and inpaint pipelines are built with ``from_pipe`` and share the same
modules: no second load. Device, dtype and memory savers come from :class:`Settings`.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tools.core.errors import ConfigError, EgakiError, EngineError
from tools.core.events import ModelLoaded, ModelLoading, Optimising
from tools.core.request import Mode
from tools.core.settings import Settings
from tools.engines.diffusers.hub import DownloadCallback, ensure_snapshot, single_file_config
from tools.engines.diffusers.lora import LoraSet
from tools.engines.diffusers.models import (
    ModelFamily,
    ModelSource,
    family_from_index,
    family_from_keys,
    read_checkpoint_header,
)

log = logging.getLogger(__name__)

_AUTO_CLASS = {
    "txt2img": "AutoPipelineForText2Image",
    "img2img": "AutoPipelineForImage2Image",
    "inpaint": "AutoPipelineForInpainting",
}


def pick_device(settings: Settings) -> str:
    """``auto`` → cuda, then mps, then cpu; an explicit choice must be available."""
    import torch

    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if settings.device == "auto":
        return next((d for d in ("cuda", "mps") if has[d]), "cpu")
    if settings.device != "cpu" and not has[settings.device]:
        raise ConfigError.of("device_unavailable", device=settings.device)
    return settings.device


def pick_dtype(settings: Settings, device: str) -> Any:
    """``auto`` → fp16 on cuda/mps, fp32 on cpu (fp16 matmuls on CPU are slow or missing)."""
    import torch

    if settings.dtype == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    if settings.dtype == "float16" and device == "cpu":
        raise ConfigError.of("float16_on_cpu")
    return getattr(torch, settings.dtype)


def dtype_kwargs(dtype: Any) -> dict[str, Any]:
    """Newer diffusers renamed pipelines' ``torch_dtype`` to ``dtype`` (the old name warns)."""
    import diffusers.utils

    return {"dtype": dtype} if hasattr(diffusers.utils, "_resolve_dtype") else {
        "torch_dtype": dtype
    }


def optimise_reporter(on_download: DownloadCallback | None, name: str
                      ) -> Callable[[str], None]:
    """A status callback telling the waiting chat a model is being optimised (OpenVINO)."""

    def status(part: str) -> None:
        if on_download is not None:
            on_download(Optimising(name))

    return status


def free_memory(device: str) -> None:
    """Return freed tensors to the OS/driver after dropping a pipeline."""
    import torch

    gc.collect()
    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps" and torch.backends.mps.is_available():
        torch.mps.empty_cache()


@dataclass
class LoadedModel:
    """The resident model: its txt2img pipeline plus what depends on it."""

    source: ModelSource
    family: ModelFamily
    pipe: Any
    device: str
    dtype: Any
    offload: bool
    scheduler_config: dict[str, Any]
    key: tuple[str, ...]
    loras: LoraSet = field(default_factory=LoraSet)
    hash: str | None = None
    _derived: dict[str, Any] = field(default_factory=dict)
    _tiny: tuple[Any | None, str] | None = None
    _offload_owner: int | None = None
    compiled: Any = None  # compiled.CompiledUnet while the UNet is being compiled
    openvino: Any = None  # openvino.pipeline.OpenVinoPipeline on the CPU, if used

    @property
    def is_inpaint_model(self) -> bool:
        """An inpainting UNet (image + mask + latents = 9 input channels)."""
        return int(self.pipe.unet.config.in_channels) == 9

    def pipeline_for(self, mode: Mode) -> Any:
        """The pipeline for ``mode``, sharing every module with the txt2img one."""
        if mode == "txt2img":
            return self.pipe
        if mode not in self._derived:
            import diffusers

            auto = getattr(diffusers, _AUTO_CLASS[mode])
            derived = auto.from_pipe(self.pipe)
            derived.set_progress_bar_config(disable=True)
            self._derived[mode] = derived
        return self._derived[mode]

    def tiny_vae(self, settings: Settings) -> tuple[Any | None, str]:
        """(TAESD, "") or (None, reason); loaded once per resident model."""
        if self._tiny is None:
            from tools.engines.diffusers.previews import load_tiny_vae, tiny_vae_ref

            self._tiny = load_tiny_vae(settings, self.family, self.device, self.dtype)
            if self._tiny[0] is None:
                log.info("no tiny VAE: %s", self._tiny[1])
            elif self.openvino is not None:
                ref = tiny_vae_ref(settings, self.family)
                self.openvino.add_decoder(self._tiny[0], ("tiny-vae", ref))
        return self._tiny

    def activate(self, pipe: Any) -> None:
        """With CPU offload, (re)attach hooks for the pipeline about to run.

        All mode pipelines share modules, and offload hooks belong to one pipeline's chain.
        """
        if self.offload and id(pipe) != self._offload_owner:
            pipe.enable_model_cpu_offload(device=self.device)
            self._offload_owner = id(pipe)

    def close(self) -> None:
        """Drop every reference this object holds to models."""
        if self.compiled is not None:
            self.compiled.failed = "model unloaded"  # stops a warm-up between shapes
            self.compiled = None
        if self.openvino is not None:
            self.openvino.close()
            self.openvino = None
        self._derived.clear()
        self._tiny = None
        self.pipe = None


def _source_key(source: ModelSource) -> tuple[str, ...]:
    """Identity of a model: a local file/folder changes identity when it is replaced."""
    if source.kind != "hub" and source.path is not None and source.path.exists():
        return (source.kind, str(source.path), str(source.path.stat().st_mtime_ns))
    return (source.kind, source.ref)


def _fp16_variant(folder: Any, dtype: Any) -> str | None:
    """Use the ``.fp16`` weights when they exist and fit (or are the only ones)."""
    import torch

    unet = folder / "unet"
    has_fp16 = any(unet.glob("*.fp16.safetensors")) or any(unet.glob("*.fp16.bin"))
    has_full = any(
        (unet / n).is_file()
        for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
    ) or any(unet.glob("diffusion_pytorch_model-*.safetensors"))
    return "fp16" if has_fp16 and (dtype == torch.float16 or not has_full) else None


class PipelineCache:
    """Holds at most one :class:`LoadedModel`; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._current: LoadedModel | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def get(self, source: ModelSource, on_download: DownloadCallback | None = None) -> LoadedModel:
        """The loaded model for ``source``, loading (and freeing the previous one) if needed."""
        with self._lock:
            key = _source_key(source)
            if self._current is not None and self._current.key == key:
                return self._current  # a resident hub model is not re-checked online
            if source.kind == "hub":
                path = ensure_snapshot(source.ref, self.settings, on_download)
                source = replace(source, path=path)
            self._free()
            if on_download is not None:
                on_download(ModelLoading(source.name))  # "loading the model…" for the UI
            self._current = self._load(source, key, on_download)
            if on_download is not None:
                on_download(ModelLoaded(source.name))
            return self._current

    def clear(self) -> None:
        """Unload the resident model and give its memory back."""
        with self._lock:
            self._free()

    def _free(self) -> None:
        old, self._current = self._current, None
        if old is not None:
            device = old.device
            log.info("unloading image model %s", old.source.name)
            old.close()
            del old
            free_memory(device)

    def _load(
        self, source: ModelSource, key: tuple[str, ...], on_download: DownloadCallback | None
    ) -> LoadedModel:
        from tools.core.imports import import_diffusers

        diffusers = import_diffusers()

        assert source.path is not None
        device = pick_device(self.settings)
        dtype = pick_dtype(self.settings, device)
        log.info("loading image model %s on %s (%s)", source.name, device, dtype)
        try:
            if source.kind == "single_file":
                header = read_checkpoint_header(source.path)
                family = family_from_keys(header, source.path.name)
                config = single_file_config(header, self.settings, on_download)
                cls = (
                    diffusers.StableDiffusionXLPipeline if family == "sdxl"
                    else diffusers.StableDiffusionPipeline
                )
                pipe = cls.from_single_file(
                    str(source.path), config=str(config), local_files_only=True,
                    **dtype_kwargs(dtype), **self._extra(family),
                )
            else:
                family = family_from_index(source.path)
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(
                    source.path, local_files_only=True, **dtype_kwargs(dtype),
                    variant=_fp16_variant(source.path, dtype), **self._extra(family),
                )
        except EgakiError:
            raise
        except Exception as err:  # diffusers raises many types for the same user problem
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise EngineError.of(
                "model_load_failed", name=source.name, error=f"{type(err).__name__}: {first}"
            ) from err
        offload = self._configure(pipe, device)
        return LoadedModel(
            source=source, family=family, pipe=pipe, device=device, dtype=dtype,
            offload=offload, scheduler_config=dict(pipe.scheduler.config), key=key,
            _offload_owner=id(pipe) if offload else None,
            compiled=None if offload else self._compile(pipe, device, family),
            openvino=self._openvino(pipe, source, key, device, family, on_download),
        )

    def _openvino(self, pipe: Any, source: ModelSource, key: tuple[str, ...], device: str,
                  family: ModelFamily, on_download: DownloadCallback | None) -> Any:
        """Route the UNet and VAE decoder through OpenVINO when chosen; None = torch."""
        from tools.engines.diffusers.openvino.runtime import available, pick_precision

        wanted = self.settings.cpu_runtime
        if device != "cpu" or wanted == "torch" or (wanted == "auto" and family != "sd15"):
            return None  # auto: SDXL's conversion needs more RAM than most CPU boxes have
        why = available()
        if why:
            (log.warning if wanted == "openvino" else log.info)("%s; running torch", why)
            return None
        from tools.engines.diffusers.openvino.pipeline import accelerate

        status = optimise_reporter(on_download, source.name)
        try:
            precision = pick_precision(self.settings.openvino_precision)
            return accelerate(pipe, key, self.settings.cache_dir / "openvino", precision,
                              status, int8=self.settings.openvino_int8,
                              model_dir=source.path if source.kind != "single_file" else None)
        except Exception as err:  # an optimisation, never a failure
            log.warning("OpenVINO unavailable (%s: %s); running torch", type(err).__name__, err)
            return None

    def _compile(self, pipe: Any, device: str, family: ModelFamily) -> Any:
        """Start the background UNet compile when wanted; None means eager only."""
        mode = self.settings.compile_unet
        if mode == "off" or (mode == "auto" and device != "cuda"):
            return None
        try:
            import torch

            from tools.engines.diffusers.compiled import (
                CompiledUnet,
                common_shapes,
                use_inductor_cache,
            )

            use_inductor_cache(self.settings.cache_dir / "inductor")
            if device == "cuda":
                pipe.unet.to(memory_format=torch.channels_last)
            compiled = CompiledUnet(pipe.unet, mode=self.settings.compile_mode)
            compiled.warm(common_shapes(family, self.settings.compile_sizes))
            return compiled
        except Exception as err:  # compiling is an optimisation, never a failure
            log.warning("UNet compile unavailable (%s: %s); running eager", type(err).__name__, err)
            return None

    @staticmethod
    def _extra(family: ModelFamily) -> dict[str, Any]:
        # SD1.x ships a safety checker; like A1111 we don't load it (1.2 GB, black images).
        if family != "sd15":
            return {}
        return {"safety_checker": None, "requires_safety_checker": False}

    def _configure(self, pipe: Any, device: str) -> bool:
        s = self.settings
        pipe.set_progress_bar_config(disable=True)
        if s.attention_slicing:
            pipe.enable_attention_slicing()
        from tools.engines.diffusers.vae_precision import keep_vae_in_bf16

        keep_vae_in_bf16(pipe.vae, device)
        if s.cpu_offload and device != "cpu":
            pipe.enable_model_cpu_offload(device=device)
            return True
        if s.cpu_offload:
            log.info("cpu_offload ignored: the model already runs on the CPU")
        pipe.to(device)
        return False
