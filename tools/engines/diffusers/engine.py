"""The local Stable Diffusion engine (SD1.x and SDXL) on top of diffusers.

``DiffusersEngine(settings).generate(request, on_step, cancel)`` reads as steps:

1. plan — validate everything that needs no weights: LoRA tags and files, init/mask
   images, the model spec, fast-mode settings; give the request a concrete seed;
2. load — get the one resident pipeline from
   :class:`~tools.engines.diffusers.pipeline_cache.PipelineCache`
   (img2img/inpaint share its modules via ``from_pipe``);
3. prepare — sampler from the pipeline's original scheduler config, LoRAs, decoder
   (TAESD in fast/tiny mode), one CPU ``torch.Generator`` per image (seed, seed+1, …);
4. denoise — ``callback_on_step_end`` reports progress/previews and honours ``cancel``;
5. finish — paste the original back outside an inpaint mask; one
   :class:`~tools.core.engine.GeneratedImage` per image with the request that reproduces it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from tools.core.engine import GeneratedImage, StepCallback
from tools.core.errors import EgakiError, EngineError, GenerationCancelled, InvalidRequest
from tools.core.request import MAX_SEED, ImageRequest
from tools.core.samplers import SAMPLERS, build_scheduler
from tools.core.settings import Settings
from tools.engines.diffusers.fast_lora import is_distilled, resolve_fast_lora
from tools.engines.diffusers.hub import DownloadCallback
from tools.engines.diffusers.lora import (
    ResolvedLora,
    add_trigger_words,
    extract_lora_tags,
    merge_loras,
    resolve_loras,
)
from tools.engines.diffusers.models import (
    ModelFile,
    ModelSource,
    list_checkpoints,
    list_loras,
    lora_hash,
    model_hash,
)
from tools.engines.diffusers.models import resolve_model as _resolve_model
from tools.engines.diffusers.pipeline_cache import LoadedModel, PipelineCache, optimise_reporter
from tools.engines.diffusers.previews import make_preview, tiny_decode, tiny_vae_ref
from tools.engines.diffusers.vae_precision import tile_large_decodes
from tools.engines.memory import PeakMeter

log = logging.getLogger(__name__)

FAST_SAMPLER = "LCM"
FAST_MAX_STEPS = 8  # a fast request asking for more gets settings.fast_steps
FAST_CFG = 1.0  # used when the request's CFG is above FAST_MAX_CFG (1.0 also skips CFG)
FAST_MAX_CFG = 1.5


def _cancelled() -> GenerationCancelled:
    return GenerationCancelled("Image generation was stopped.", "画像生成を停止しました。")


@dataclass
class _Plan:
    """A validated job: everything decided before any weights are touched."""

    request: ImageRequest  # what to report: concrete seed, tags moved into ``loras``
    prompt: str  # what the text encoder sees (trigger words added)
    loras: list[ResolvedLora]
    source: ModelSource
    init: Image.Image | None
    mask: Image.Image | None
    tiny_decoder: bool


class DiffusersEngine:
    """An :class:`~tools.core.engine.ImageEngine` running diffusers in this process.

    ``preview_every`` = k sends a low-res preview with every k-th step (0 = never);
    ``on_download`` receives hub download progress ``(label, done, total)``.
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

    # --- catalogue ---------------------------------------------------------------------

    def list_models(self) -> list[ModelFile]:
        return list_checkpoints(self.settings.models_dir)

    def list_loras(self) -> list[ModelFile]:
        return list_loras(self.settings.lora_dir)

    def resolve_model(self, spec: str | None = None) -> ModelSource:
        """Where ``spec`` (default: the configured model) lives; nothing is loaded."""
        spec = spec or self.settings.image_model
        return _resolve_model(spec, self.settings, trusted=spec == self.settings.image_model)

    def unload(self) -> None:
        """Free the resident model (e.g. before a large language model needs the GPU)."""
        self.cache.clear()

    # --- generation --------------------------------------------------------------------

    def generate(
        self,
        request: ImageRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        plan = self._plan(request)
        if cancel is not None and cancel.is_set():
            raise _cancelled()
        with self._run_lock:
            loaded = self.cache.get(plan.source, self.on_download)
            if cancel is not None and cancel.is_set():
                raise _cancelled()
            return self._run(loaded, plan, on_step, cancel)

    def _plan(self, request: ImageRequest) -> _Plan:
        req = request.with_seed()
        prompt, tag_refs = extract_lora_tags(req.prompt)
        refs = merge_loras(req.loras, tag_refs)
        loras = resolve_loras(refs, self.settings.lora_dir)
        # Report the prompt the text encoder saw (trigger words in, tags out): pasted into
        # A1111 it gives the same result, and re-running it here adds no words twice.
        used = add_trigger_words(prompt, loras)
        update: dict[str, Any] = {"prompt": used or req.prompt, "loras": refs}
        fast = req.fast or self.settings.fast_mode
        if fast:
            update.update(
                fast=True,
                sampler=FAST_SAMPLER,
                steps=req.steps if req.steps <= FAST_MAX_STEPS else self.settings.fast_steps,
                cfg_scale=req.cfg_scale if req.cfg_scale <= FAST_MAX_CFG else FAST_CFG,
            )
        req = req.model_copy(update=update)
        if req.mode != "txt2img" and int(req.steps * req.strength) < 1:
            raise InvalidRequest(
                f"With strength {req.strength} and {req.steps} steps no denoising step would "
                "run; raise the steps or the strength.",
                f"強さ {req.strength}・{req.steps} ステップでは処理が 1 ステップも行われません。"
                "ステップ数か強さを上げてください。",
            )
        size = (req.width, req.height)
        init = _open_image(req.init_image, "RGB", size) if req.init_image else None
        mask = _open_image(req.mask_image, "L", size) if req.mask_image else None
        return _Plan(
            request=req,
            prompt=used,
            loras=loras,
            source=self.resolve_model(req.model),
            init=init,
            mask=mask,
            tiny_decoder=fast or self.settings.decoder == "tiny",
        )

    def _run(
        self,
        loaded: LoadedModel,
        plan: _Plan,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
    ) -> list[GeneratedImage]:
        import torch

        req, mode = plan.request, plan.request.mode
        if loaded.is_inpaint_model and mode != "inpaint":
            raise InvalidRequest(
                f"{loaded.source.name} is an inpainting model: it needs an image and a mask. "
                "Choose a regular model for new pictures.",
                f"{loaded.source.name} はインペイント専用モデルです（画像とマスクが必要）。"
                "新しい画像には通常のモデルを選んでください。",
            )
        seeds = [(req.seed or 0) + i for i in range(req.batch_size)]
        seeds = [s % (MAX_SEED + 1) for s in seeds]  # stay valid A1111 seeds

        # 3. prepare
        pipe = loaded.pipeline_for(mode)
        pipe.scheduler = self._scheduler(req.sampler, loaded, seeds)
        loras, fast_lora = list(plan.loras), None
        if req.fast and not is_distilled(loaded.pipe.unet, loaded.source.name):
            fast_lora = resolve_fast_lora(self.settings, loaded.family, self.on_download)
            loras += [fast_lora] if fast_lora is not None else []
        loaded.loras.apply(pipe, loras)
        if loaded.compiled is not None:
            # LoRA adapters change the UNet's modules: the compiled graph would not match.
            loaded.compiled.paused = bool(loras)
        if loaded.openvino is not None:
            loaded.openvino.select(loaded.pipe, loras, fast_lora,
                                   optimise_reporter(self.on_download, loaded.source.name))
        extra = self._infotext_extras(loras)
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

        def on_step_end(p: Any, i: int, _t: Any, kw: dict[str, Any]) -> dict[str, Any]:
            done, total = i + 1, int(getattr(p, "_num_timesteps", 0) or req.steps)
            if on_step is not None:
                every = self.preview_every
                preview = None
                if every and done % every == 0 and done < total:
                    preview = make_preview(kw["latents"], loaded.family, preview_vae)
                on_step(done, total, preview)
            if cancel is not None and cancel.is_set():
                p._interrupt = True  # belt and braces: raising below skips the VAE decode
                raise _cancelled()
            return {}

        kwargs: dict[str, Any] = {
            "prompt": plan.prompt,
            "negative_prompt": req.negative_prompt or None,
            "num_inference_steps": req.steps,
            "guidance_scale": req.cfg_scale,
            "num_images_per_prompt": req.batch_size,
            "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds],
            "callback_on_step_end": on_step_end,
            "output_type": "pil",
        }
        if mode != "img2img":  # img2img takes its size from the (resized) init image
            kwargs.update(width=req.width, height=req.height)
        if mode != "txt2img":
            kwargs.update(image=plan.init, strength=req.strength)
        if mode == "inpaint":
            kwargs["mask_image"] = plan.mask

        if tiny is not None:
            kwargs["output_type"] = "latent"  # decoded below by TAESD

        tile_large_decodes(pipe.vae, req.width, req.height, self.settings.vae_tile_above_px,
                           self.settings.vae_tiling)

        # 4. denoise
        started = time.monotonic()
        meter = PeakMeter(loaded.device)
        try:
            loaded.activate(pipe)
            with meter:
                images = pipe(**kwargs).images
                if tiny is not None:
                    images = tiny_decode(images, tiny, pipe.image_processor)
        except EgakiError:
            raise
        except torch.OutOfMemoryError as err:
            raise EngineError(
                "The GPU ran out of memory. Try a smaller size or batch, or turn on "
                "cpu_offload / attention_slicing / vae_tiling.",
                "GPU メモリが不足しました。サイズやバッチ数を減らすか、cpu_offload / "
                "attention_slicing / vae_tiling を有効にしてください。",
            ) from err
        except Exception as err:
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise EngineError(
                f"Image generation failed ({type(err).__name__}: {first}).",
                f"画像生成に失敗しました（{type(err).__name__}）。",
            ) from err
        elapsed = time.monotonic() - started
        peak = str(meter.result or "")
        log.info("%d image(s) %dx%d, %d steps in %.1f s, %s", req.batch_size, req.width,
                 req.height, req.steps, elapsed, peak or "peak memory unknown")

        # 5. finish
        if mode == "inpaint" and plan.init is not None and plan.mask is not None:
            images = [Image.composite(im, plan.init, plan.mask) for im in images]
        if loaded.hash is None:
            loaded.hash = model_hash(loaded.source, self.settings.cache_dir)
        out = []
        for image, seed in zip(images, seeds, strict=True):
            out.append(
                GeneratedImage(
                    image=image,
                    request=req.model_copy(update={"seed": seed, "batch_size": 1}),
                    seed=seed,
                    model_name=loaded.source.name,
                    model_hash=loaded.hash,
                    duration_s=elapsed,
                    extra=dict(extra),
                    peak_memory=peak,
                )
            )
        return out

    def _infotext_extras(self, loras: list[ResolvedLora]) -> dict[str, str]:
        """A1111 ``extra_generation_params`` for the PNG infotext (e.g. "Lora hashes")."""
        extra: dict[str, str] = {}
        hashes = [
            f"{lo.name.replace(':', '').replace(',', '')}: {h}"
            for lo in loras
            if (h := lora_hash(lo.path, self.settings.cache_dir))
        ]
        if hashes:
            extra["Lora hashes"] = ", ".join(hashes)
        return extra

    @staticmethod
    def _scheduler(sampler: str, loaded: LoadedModel, seeds: list[int]) -> Any:
        config = dict(loaded.scheduler_config)
        if SAMPLERS[sampler].scheduler == "DPMSolverSDEScheduler":
            # Its Brownian-tree noise is seeded from config, not from the generators; one
            # seed per image keeps each image reproducible on its own.
            config["noise_sampler_seed"] = seeds if len(seeds) > 1 else seeds[0]
        try:
            return build_scheduler(sampler, config)
        except Exception as err:
            raise EngineError(
                f"The sampler {sampler} can't be used with this model ({err}).",
                f"サンプラー {sampler} はこのモデルでは使えません（{err}）。",
            ) from err


def _open_image(path: Path, mode: str, size: tuple[int, int]) -> Image.Image:
    """Open, convert and resize an init image or mask (A1111 resizes to the target size)."""
    try:
        with Image.open(path) as raw:
            im = raw.convert(mode)
    except (OSError, UnidentifiedImageError) as err:
        raise InvalidRequest(
            f"The image {path.name} can't be opened ({type(err).__name__}).",
            f"画像 {path.name} を開けません（{type(err).__name__}）。",
        ) from err
    if im.size != size:
        smooth = Image.Resampling.LANCZOS if mode == "RGB" else Image.Resampling.BILINEAR
        im = im.resize(size, smooth)
    return im
