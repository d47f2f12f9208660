"""The local Stable Diffusion engine (SD1.x and SDXL) on top of diffusers.

``DiffusersEngine(settings).generate(request, on_step, cancel)`` reads as steps, one
method each:

1. plan — validate everything that needs no weights: LoRA tags and files, init/mask
   images, the model spec, fast-mode settings; give the request a concrete seed
   (:func:`~tools.engines.diffusers.plan.plan_request`);
2. load — get the one resident pipeline from
   :class:`~tools.engines.diffusers.pipeline_cache.PipelineCache`
   (img2img/inpaint share its modules via ``from_pipe``);
3. prepare — check the model fits the mode; sampler from the pipeline's original
   scheduler config, LoRAs, decoder (TAESD in fast/tiny mode), one CPU
   ``torch.Generator`` per image (seed, seed+1, …);
4. denoise — the prompts encoded the AUTOMATIC1111 way (75-token chunks, ``(word:1.2)``
   weights, ``BREAK``, textual-inversion embeddings, clip skip; see
   :mod:`tools.engines.diffusers.prompts`), then ``callback_on_step_end`` reports
   progress/previews and honours ``cancel``;
5. finish — paste the original back outside an inpaint mask; one
   :class:`~tools.core.engine.GeneratedImage` per image with the request that reproduces it.

Hires fix runs 3-5 twice (:mod:`.passes.hires`); an inpaint on a picture larger than the
model's native size runs them on the masked area only (:mod:`.passes.inpaint_area`);
a job estimated to take a minute or more is announced first (:mod:`.passes.timing`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from tools.core.engine import GeneratedImage, StepCallback
from tools.core.errors import EgakiError, EngineError, GenerationCancelled
from tools.core.request import MAX_SEED, ImageRequest
from tools.core.settings import Settings
from tools.engines.diffusers.control.pipeline import ControlNets
from tools.engines.diffusers.fast_lora import is_distilled, resolve_fast_lora
from tools.engines.diffusers.hub import DownloadCallback
from tools.engines.diffusers.lora import ResolvedLora
from tools.engines.diffusers.models import (
    ModelFile,
    ModelSource,
    list_checkpoints,
    list_loras,
)
from tools.engines.diffusers.models import resolve_model as _resolve_model
from tools.engines.diffusers.passes.enlarge import check_init_upscaler, enlarge_init
from tools.engines.diffusers.passes.hires import check_hires, run_hires
from tools.engines.diffusers.passes.inpaint_area import crop_plan, native_side
from tools.engines.diffusers.passes.timing import StepTimes
from tools.engines.diffusers.pipeline_cache import LoadedModel, PipelineCache, optimise_reporter
from tools.engines.diffusers.plan import Plan, plan_request, scheduler_for
from tools.engines.diffusers.previews import make_preview, tiny_decode, tiny_vae_ref
from tools.engines.diffusers.prompts.a1111 import TokenCount
from tools.engines.diffusers.prompts.counter import TokenCounter
from tools.engines.diffusers.prompts.encoding import encode
from tools.engines.diffusers.prompts.textual_inversion import EmbeddingRegistry
from tools.engines.diffusers.steps import (
    Denoised,
    Prepared,
    StepEnd,
    check_cancel,
    check_mode,
    finish,
    lora_hashes,
    pipe_kwargs,
)
from tools.engines.diffusers.vae_precision import tile_large_decodes
from tools.engines.memory import PeakMeter
from tools.engines.upscalers.tiled import load_upscaler

log = logging.getLogger(__name__)



class DiffusersEngine:
    """An :class:`~tools.core.engine.ImageEngine` running diffusers in this process.

    ``preview_every`` = k sends a low-res preview with every k-th step (0 = never);
    ``on_download`` hears the engine events of :mod:`tools.core.events` (download, load).
    """

    name = "diffusers"

    def __init__(
        self,
        settings: Settings,
        *,
        preview_every: int = 5,
        on_download: DownloadCallback | None = None,
        cache: PipelineCache | None = None,
    ) -> None:
        self.settings = settings
        self.preview_every = preview_every
        self.on_download = on_download
        self.cache = cache or PipelineCache(settings)
        self._run_lock = threading.Lock()  # one job at a time: the pipeline is stateful
        self.measure_presets = settings.measure_machine  # time a UNet step once (presets)
        self.on_measured: Callable[[], None] | None = None  # told when that is saved
        self.embeddings = EmbeddingRegistry(settings.embeddings_dir)
        self.controlnets = ControlNets(settings)
        self.step_times = StepTimes(settings.cache_dir / "step_times.json")
        self.counter = TokenCounter(settings, self._resident_pipe, self.embeddings,
                                    settings.comma_padding_backtrack)

    # --- catalogue ---------------------------------------------------------------------

    def list_models(self) -> list[ModelFile]:
        return list_checkpoints(self.settings.models_dir)

    def list_loras(self) -> list[ModelFile]:
        return list_loras(self.settings.lora_dir)

    def resolve_model(self, spec: str | None = None) -> ModelSource:
        """Where ``spec`` (default: the configured model) lives; nothing is loaded."""
        spec = spec or self.settings.image_model
        return _resolve_model(spec, self.settings, trusted=spec == self.settings.image_model)

    def count_tokens(self, text: str) -> TokenCount | None:
        """A1111's token count for a prompt card (None when no tokenizer is on disk)."""
        return self.counter.count(text)

    def _resident_pipe(self) -> Any:
        current = self.cache.current
        return current.pipe if current is not None else None

    def unload(self) -> None:
        """Free the resident model (e.g. before a large language model needs the GPU)."""
        self.cache.clear()
        self.controlnets.clear()

    # --- generation --------------------------------------------------------------------

    def generate(
        self,
        request: ImageRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        # 1. plan
        plan = plan_request(request, self.settings, self.resolve_model)
        if plan.request.hires is not None:
            check_hires(plan.request.hires, plan.request.steps, self.settings.upscalers_dir)
        check_init_upscaler(plan.request.init_upscaler, self.settings.upscalers_dir)
        check_cancel(cancel)
        with self._run_lock:
            # 2. load
            loaded = self.cache.get(plan.source, self.on_download)
            plan = enlarge_init(plan, self._upscale_with, self.settings.upscalers_dir)  # ×2
            check_cancel(cancel)
            check_mode(loaded, plan.request)
            crop = crop_plan(plan, native_side(loaded.pipe), self.settings.inpaint_area)
            if plan.request.hires is not None:  # two passes (passes/hires.py)
                done = run_hires(plan, lambda p: self._run(loaded, p, on_step, cancel),
                                 lambda: loaded.pipeline_for("img2img"), self._upscale_with,
                                 self.settings.upscalers_dir)
            elif crop is not None:  # only the masked area, at the native size
                done = crop.paste(self._run(loaded, crop.plan, on_step, cancel))
            else:
                done = self._run(loaded, plan, on_step, cancel)
        if self.measure_presets and loaded.device == "cpu":
            from tools.engines.diffusers.fastmodels.machine import measure_in_background

            self.measure_presets = False  # once per engine; the cache remembers across runs
            measure_in_background(self.settings, loaded, plan.source, self._run_lock,
                                  lambda: self.cache.current is loaded, self.on_measured)
        return done

    def _run(self, loaded: LoadedModel, plan: Plan, on_step: StepCallback | None,
             cancel: threading.Event | None) -> list[GeneratedImage]:
        """Steps 3-5 for one pass of ``plan`` on the resident model."""
        # 3. prepare
        prepared = self._prepare(loaded, plan, on_step)
        # 4. denoise
        step_end = self._step_end(loaded, prepared, plan.request, on_step, cancel)
        kwargs = pipe_kwargs(plan, prepared, step_end)
        measured = self.step_times.announce(
            f"{loaded.device}:{'openvino' if loaded.openvino else 'torch'}:{loaded.family}",
            plan.request, self.on_download)
        denoised = self._denoise(loaded, prepared, plan.request, kwargs)
        measured(denoised.elapsed)
        # 5. finish
        return finish(loaded, plan, prepared, denoised, self.settings.cache_dir)

    def _upscale_with(self, path: Path, image: Image.Image, scale: float) -> Image.Image:
        """An upscaler model from the folder on this engine's device, tiled."""
        device = self.cache.current.device if self.cache.current else "cpu"
        return load_upscaler(path, device).upscale(image, scale)

    def _prepare(
        self, loaded: LoadedModel, plan: Plan, on_step: StepCallback | None
    ) -> Prepared:
        """Step 3: sampler, LoRAs (with the fast LoRA), decoders and VAE tiling."""
        req = plan.request
        seeds = [(req.seed or 0) + i for i in range(req.batch_size)]
        seeds = [s % (MAX_SEED + 1) for s in seeds]  # stay valid A1111 seeds
        control = self.controlnets.prepare(loaded, req, self.on_download) if req.controls else None
        pipe = control.pipe if control else loaded.pipeline_for(req.mode)
        pipe.scheduler = scheduler_for(req.sampler, loaded.scheduler_config, seeds, plan.scheduler)
        loras = self._apply_loras(loaded, pipe, plan)
        extra = lora_hashes(loras, self.settings.cache_dir)
        extra.update(self.controlnets.after_loras(loaded, control))
        tiny = None
        if plan.tiny_decoder:
            tiny, why = loaded.tiny_vae(self.settings)
            if tiny is None:
                log.warning("tiny VAE unavailable, decoding with the full VAE: %s", why)
            else:
                extra["VAE"] = Path(tiny_vae_ref(self.settings, loaded.family)).name
        preview_vae = tiny
        if preview_vae is None and on_step is not None and self.preview_every:
            preview_vae = loaded.tiny_vae(self.settings)[0]
        tile_large_decodes(pipe.vae, req.width, req.height, self.settings.vae_tile_above_px,
                           self.settings.vae_tiling)
        return Prepared(pipe, seeds, extra, tiny, preview_vae, control.kwargs if control else {})

    def _apply_loras(self, loaded: LoadedModel, pipe: Any, plan: Plan) -> list[ResolvedLora]:
        """Load the plan's LoRAs (plus the fast LoRA for a non-distilled model in fast
        mode) into ``pipe``; returns every LoRA applied."""
        loras, fast_lora = list(plan.loras), None
        if plan.request.fast and not is_distilled(loaded.pipe.unet, loaded.source.name,
                                                  loaded.source.path):
            fast_lora = resolve_fast_lora(self.settings, loaded.family, self.on_download)
            loras += [fast_lora] if fast_lora is not None else []
        if loaded.openvino is not None:  # it loads the LoRAs (into torch only if needed)
            loaded.openvino.prepare(loaded.pipe, loaded.loras, loras, fast_lora,
                                    optimise_reporter(self.on_download, loaded.source.name))
            return loras
        loaded.loras.apply(pipe, loras)
        if loaded.compiled is not None:
            # LoRA adapters change the UNet's modules: the compiled graph would not match.
            loaded.compiled.paused = bool(loras)
        return loras

    def _step_end(
        self,
        loaded: LoadedModel,
        prepared: Prepared,
        req: ImageRequest,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
    ) -> StepEnd:
        """The ``callback_on_step_end``: progress, a preview every k steps, cancel."""

        def on_step_end(p: Any, i: int, _t: Any, kw: dict[str, Any]) -> dict[str, Any]:
            done, total = i + 1, int(getattr(p, "_num_timesteps", 0) or req.steps)
            if on_step is not None:
                every = self.preview_every
                preview = None
                if every and done % every == 0 and done < total:
                    preview = make_preview(kw["latents"], loaded.family, prepared.preview_vae)
                on_step(done, total, preview)
            if cancel is not None and cancel.is_set():
                p._interrupt = True  # belt and braces: raising below skips the VAE decode
                raise GenerationCancelled.of("engine_diffusers_stopped")
            return {}

        return on_step_end

    def _denoise(
        self, loaded: LoadedModel, prepared: Prepared, req: ImageRequest, kwargs: dict[str, Any]
    ) -> Denoised:
        """Step 4: run the pipeline (and TAESD), measuring time and peak memory."""
        import torch

        pipe, tiny = prepared.pipe, prepared.tiny
        started = time.monotonic()
        meter = PeakMeter(loaded.device)
        try:
            loaded.activate(pipe)
            with meter:
                prepared.extra.update(self._encode(pipe, req, kwargs))
                images = pipe(**kwargs).images
                if tiny is not None:
                    images = tiny_decode(images, tiny, pipe.image_processor)
        except EgakiError:
            raise
        except torch.OutOfMemoryError as err:
            raise EngineError.of("engine_diffusers_out_of_memory") from err
        except Exception as err:
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise EngineError.of(
                "engine_diffusers_failed", error=type(err).__name__, detail=first
            ) from err
        elapsed = time.monotonic() - started
        peak = str(meter.result or "")
        log.info("%d image(s) %dx%d, %d steps in %.1f s, %s", req.batch_size, req.width,
                 req.height, req.steps, elapsed, peak or "peak memory unknown")
        return Denoised(images, elapsed, peak)

    def _encode(self, pipe: Any, req: ImageRequest, kwargs: dict[str, Any]) -> dict[str, str]:
        """Step 4a: swap ``prompt``/``negative_prompt`` in ``kwargs`` for their A1111
        encoding; returns what the infotext needs to reproduce it in A1111."""
        # diffusers skips the negative without CFG (scale <= 1, or an LCM-distilled UNet)
        guided = req.cfg_scale > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
        encoded = encode(
            pipe, kwargs.pop("prompt"), kwargs.pop("negative_prompt") or "",
            clip_skip=req.clip_skip or 1, embeddings=self.embeddings,
            comma_backtrack=self.settings.comma_padding_backtrack, with_negative=guided,
        )
        kwargs.update(encoded.kwargs)
        extra: dict[str, str] = {}
        if encoded.padded:  # A1111 pads cond/uncond to one length only with this option
            extra["Pad conds"] = "True"
        if encoded.embeddings:
            extra["TI hashes"] = self.embeddings.hashes(encoded.embeddings)
        return extra

