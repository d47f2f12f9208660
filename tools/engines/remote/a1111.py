"""AUTOMATIC1111 (and Forge) web UI as an image engine, through its ``/sdapi/v1`` API.

``POST /sdapi/v1/txt2img`` or ``/img2img`` does the work; while it runs we poll
``GET /sdapi/v1/progress`` for steps and, on cancel, ``POST /sdapi/v1/interrupt``. The
reply carries base64 images and an ``info`` JSON string whose ``all_seeds`` gives each
image's seed and whose ``index_of_first_image`` skips the grid A1111 prepends to batches.
The web UI must be started with ``--api``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tools.core.engine import GeneratedImage, StepCallback
from tools.core.errors import EngineError, GenerationCancelled
from tools.core.request import ImageRequest
from tools.engines.diffusers.passes.inpaint_area import masked_box, wants_crop, working_size
from tools.engines.remote.control import a1111_controlnet
from tools.engines.remote.http import (
    decode_base64_image,
    error_text,
    load_input_image,
    png_bytes,
)
from tools.engines.remote.init_image import init_picture

# A1111 "Masked content": 0 fill, 1 original, 2 latent noise, 3 latent nothing.
INPAINT_ORIGINAL = 1
_SCHEDULE_SUFFIXES = ("Karras", "Exponential")


def inpaint_area_fields(request: ImageRequest, mask: Any, area: str, native: int
                        ) -> dict[str, Any]:
    """A1111's "Inpaint area": only masked (``inpaint_full_res``) with padding, the crop
    worked at ``width`` x ``height`` = the native pixel count at the crop's aspect; the
    reply is still the full picture. Whole picture: at the request's size."""
    choice = request.inpaint_area if request.inpaint_area != "auto" else area
    box = masked_box(mask, request.inpaint_padding)
    if box is None or not wants_crop(choice, mask.size, native):
        return {"inpaint_full_res": False}
    width, height = working_size((box[2] - box[0]) / (box[3] - box[1]), native)
    return {"inpaint_full_res": True, "inpaint_full_res_padding": request.inpaint_padding,
            "width": width, "height": height}


def _unreachable(url: str, err: Exception) -> EngineError:
    return EngineError.of("engine_a1111_unreachable", url=url, error=type(err).__name__)


def _num(value: float) -> str:
    return f"{value:g}"


def prompt_with_loras(request: ImageRequest) -> str:
    """The prompt with ``<lora:name:weight>`` tags for LoRAs not already written in it."""
    tags = [
        f"<lora:{lora.name}:{_num(lora.weight)}>"
        for lora in request.loras
        if f"<lora:{lora.name}:" not in request.prompt
    ]
    return " ".join([request.prompt, *tags])


class A1111Engine:
    """An :class:`~tools.core.engine.ImageEngine` backed by a running AUTOMATIC1111 web UI."""

    name = "a1111"

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 900.0,
        poll_interval: float = 0.5,
        previews: bool = False,
        auth: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        inpaint_area: str = "auto",
        native_side: int = 512,
        upscalers_dir: Path | None = None,
    ) -> None:
        self.upscalers_dir = upscalers_dir  # "Upscale ×2": the init enlarged here first
        self.inpaint_area = inpaint_area
        self.native_side = native_side
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.previews = previews
        self._auth = auth
        self._transport = transport

    # --- payloads --------------------------------------------------------------------

    def build_payload(self, request: ImageRequest) -> dict[str, Any]:
        """The JSON body for ``request`` (needs a concrete seed; see ``with_seed``)."""
        payload: dict[str, Any] = {
            "prompt": prompt_with_loras(request),
            "negative_prompt": request.negative_prompt,
            "seed": request.seed if request.seed is not None else -1,
            "steps": request.steps,
            "cfg_scale": request.cfg_scale,
            "width": request.width,
            "height": request.height,
            "batch_size": request.batch_size,
            "n_iter": 1,
            # The combined name ("DPM++ 2M Karras") works on every A1111 version; 1.9+
            # also reads the separate scheduler field.
            "sampler_name": request.sampler,
            "send_images": True,
            "save_images": False,
        }
        for suffix in _SCHEDULE_SUFFIXES:
            if request.sampler.endswith(" " + suffix):
                payload["scheduler"] = suffix
        overrides: dict[str, Any] = {}
        if request.model:
            overrides["sd_model_checkpoint"] = request.model
        if request.clip_skip is not None:  # None: the web UI's own setting
            overrides["CLIP_stop_at_last_layers"] = request.clip_skip
        if overrides:
            payload["override_settings"] = overrides
        if request.init_image is not None:
            size = (request.width, request.height)
            init = init_picture(request, self.upscalers_dir)
            payload |= {
                "init_images": [base64.b64encode(png_bytes(init)).decode("ascii")],
                "denoising_strength": request.strength,
                "resize_mode": 0,
                "include_init_images": False,
            }
            if request.mask_image is not None:
                mask = load_input_image(request.mask_image, size, mode="L")
                payload |= {
                    "mask": base64.b64encode(png_bytes(mask)).decode("ascii"),
                    "mask_blur": 4,
                    "inpainting_fill": INPAINT_ORIGINAL,
                    "inpainting_mask_invert": 0,
                }
                payload |= inpaint_area_fields(request, mask, self.inpaint_area, self.native_side)
        if request.hires is not None:  # A1111's own hires fix, same fields as its UI
            payload |= {
                "enable_hr": True,
                "hr_scale": request.hires.scale,
                "hr_upscaler": request.hires.upscaler,
                "hr_second_pass_steps": request.hires.steps,
                "denoising_strength": request.hires.denoising,
            }
        payload |= a1111_controlnet(request)  # the sd-webui-controlnet extension's units
        return payload

    # --- the protocol ----------------------------------------------------------------

    def generate(
        self,
        request: ImageRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """Run one job on the web UI; blocks until images arrive or it is cancelled."""
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled.of("generation_stopped")
        request = request.with_seed()
        endpoint = "img2img" if request.init_image is not None else "txt2img"
        payload = self.build_payload(request)
        t0 = time.perf_counter()
        with httpx.Client(
            base_url=self.base_url, auth=self._auth, transport=self._transport, timeout=10.0
        ) as client:
            box: dict[str, Any] = {}

            def post() -> None:
                try:
                    box["resp"] = client.post(
                        f"/sdapi/v1/{endpoint}", json=payload, timeout=self.timeout
                    )
                except httpx.HTTPError as err:
                    box["error"] = err

            worker = threading.Thread(target=post, name="a1111-post", daemon=True)
            worker.start()
            interrupted = self._watch(client, worker, request, on_step, cancel)
            worker.join()

        if "error" in box:
            err = box["error"]
            if isinstance(err, httpx.TimeoutException) and not isinstance(
                err, httpx.ConnectTimeout
            ):
                raise EngineError.of("engine_a1111_timeout", seconds=self.timeout)
            raise _unreachable(self.base_url, err)
        if interrupted:
            raise GenerationCancelled.of("generation_stopped")
        return self._parse(box["resp"], request, endpoint, time.perf_counter() - t0)

    def _watch(
        self,
        client: httpx.Client,
        worker: threading.Thread,
        request: ImageRequest,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
    ) -> bool:
        """Poll progress until the POST returns; interrupt on cancel. True if cancelled."""
        interrupted = False
        last_step = -1
        while worker.is_alive():
            if cancel is not None and cancel.is_set() and not interrupted:
                interrupted = True
                # If this fails the POST still fails or finishes on its own.
                with contextlib.suppress(httpx.HTTPError):
                    client.post("/sdapi/v1/interrupt")
            worker.join(self.poll_interval)
            if on_step is None or interrupted or not worker.is_alive():
                continue
            step, total, preview = self._progress(client)
            if step is not None and total and step != last_step:
                last_step = step
                on_step(step, total, preview)
        return interrupted

    def _progress(self, client: httpx.Client) -> tuple[int | None, int, Any]:
        skip = "false" if self.previews else "true"
        try:
            resp = client.get(f"/sdapi/v1/progress?skip_current_image={skip}", timeout=5.0)
            data = resp.json()
            state = data.get("state") or {}
            step = int(state.get("sampling_step", 0))
            total = int(state.get("sampling_steps", 0))
        except (httpx.HTTPError, ValueError, TypeError, AttributeError):
            return None, 0, None
        preview = None
        current = data.get("current_image")
        if self.previews and isinstance(current, str) and current:
            try:
                preview = decode_base64_image(current, what="AUTOMATIC1111")
            except EngineError:
                preview = None
        return step, total, preview

    def _parse(
        self, resp: httpx.Response, request: ImageRequest, endpoint: str, took: float
    ) -> list[GeneratedImage]:
        """The reply's images (grid skipped), each with its seed and A1111's extras."""
        self._check_status(resp, endpoint)
        images, info = _read_reply(resp)
        first = info.get("index_of_first_image", 0)
        first = first if isinstance(first, int) and 0 <= first < len(images) else 0
        wanted = images[first : first + request.batch_size]
        seeds = info.get("all_seeds")
        if not isinstance(seeds, list) or len(seeds) < len(wanted):
            assert request.seed is not None
            seeds = [request.seed + i for i in range(len(wanted))]
        extra = info.get("extra_generation_params")
        extras = {
            k: str(v)
            for k, v in (extra.items() if isinstance(extra, dict) else ())
            if k in ("Lora hashes", "TI hashes") and isinstance(v, str)
        }
        return [
            GeneratedImage(
                image=decode_base64_image(str(b64), what="AUTOMATIC1111"),
                request=request,
                seed=int(seeds[i]),
                model_name=str(info.get("sd_model_name") or ""),
                model_hash=str(info.get("sd_model_hash") or ""),
                duration_s=took,
                extra=dict(extras),
            )
            for i, b64 in enumerate(wanted)
        ]

    def _check_status(self, resp: httpx.Response, endpoint: str) -> None:
        """Turn an HTTP error into what to do: start with --api, fix auth, read the log."""
        if resp.status_code == 404:
            raise EngineError.of("engine_a1111_no_api", url=self.base_url, endpoint=endpoint)
        if resp.status_code in (401, 403):
            raise EngineError.of("engine_a1111_auth")
        if resp.status_code >= 400:
            raise EngineError.of(
                "engine_a1111_failed", status=resp.status_code, detail=error_text(resp)
            )


def _read_reply(resp: httpx.Response) -> tuple[list[Any], dict[str, Any]]:
    """The reply's base64 ``images`` (at least one) and its decoded ``info``."""
    try:
        body = resp.json()
        images = body["images"]
        info_raw = body.get("info") or "{}"
        info = json.loads(info_raw) if isinstance(info_raw, str) else dict(info_raw)
    except (ValueError, KeyError, TypeError) as err:
        raise EngineError.of("engine_a1111_unreadable") from err
    if not isinstance(images, list) or not images:
        raise EngineError.of("engine_a1111_no_images")
    return images, info
