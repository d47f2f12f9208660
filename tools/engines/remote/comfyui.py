"""ComfyUI as an image engine, through its HTTP + websocket API.

For each image: open ``/ws?clientId=…``, ``POST /prompt`` with an API-format workflow,
follow ``progress`` messages until ``executing`` with ``node: null`` (or
``execution_error``), then ``GET /history/{prompt_id}`` and ``/view`` for the files. Init
images and masks go up through ``POST /upload/image``; cancel is ``POST /interrupt``.

A built-in workflow covers txt2img, img2img and inpaint (with LoRA loaders). Users may
bring their own API-format workflow plus a :class:`NodeMap` naming which node ids hold
the prompt text, the sampler settings, the latent size and so on. Batches run as one
prompt per image (seed, seed+1, …) so every image's seed reproduces it alone. The graph
building lives in :mod:`tools.engines.remote.comfyui_workflow`.

Not passed to ComfyUI (its built-in workflow has no such nodes): inpainting of only the
masked area (ComfyUI inpaints the whole picture at the request's size) and hires fix
(the first pass alone is made; both are logged).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from tools.core.engine import GeneratedImage, StepCallback
from tools.core.errors import EngineError, GenerationCancelled
from tools.core.request import ImageRequest
from tools.engines.remote.comfyui_workflow import (
    COMFY_SAMPLERS,
    NodeMap,
    apply_request,
    comfy_sampler,
    default_workflow,
)
from tools.engines.remote.control import add_controlnets
from tools.engines.remote.http import decode_image_bytes, error_text, load_input_image, png_bytes
from tools.engines.remote.init_image import init_picture

__all__ = ["COMFY_SAMPLERS", "ComfyUIEngine", "NodeMap", "comfy_sampler", "default_workflow"]

_HISTORY_POLL_S = 5.0  # fall back to /history if a websocket message went missing

log = logging.getLogger(__name__)


class ComfyUIEngine:
    """An :class:`~tools.core.engine.ImageEngine` backed by a running ComfyUI server."""

    name = "comfyui"

    def __init__(
        self,
        base_url: str,
        workflow: dict[str, Any] | None = None,
        node_map: NodeMap | None = None,
        *,
        checkpoint: str | None = None,
        timeout: float = 900.0,
        upscalers_dir: Path | None = None,
    ) -> None:
        self.upscalers_dir = upscalers_dir  # "Upscale ×2": the init enlarged here first
        if workflow is not None and node_map is None:
            raise EngineError.of("engine_comfyui_needs_node_map")
        self.base_url = base_url.rstrip("/")
        self.workflow = workflow
        self.node_map = node_map
        self.checkpoint = checkpoint
        self.timeout = timeout

    def _unreachable(self, err: BaseException) -> EngineError:
        return EngineError.of(
            "engine_comfyui_unreachable", url=self.base_url, error=type(err).__name__
        )

    # --- the protocol ----------------------------------------------------------------

    def generate(
        self,
        request: ImageRequest,
        on_step: StepCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[GeneratedImage]:
        """Queue one prompt per image and collect the results."""
        request = request.with_seed()
        client_id = uuid.uuid4().hex
        ws_url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={client_id}"
        # Connect the websocket before queueing so no progress message is missed.
        try:
            ws = connect(ws_url, open_timeout=10, max_size=2**24)
        except (OSError, WebSocketException) as err:
            raise self._unreachable(err) from err
        with ws, httpx.Client(base_url=self.base_url, timeout=30.0) as http:
            try:
                return self._run(http, ws, client_id, request, on_step, cancel)
            except httpx.TransportError as err:
                raise self._unreachable(err) from err

    def _run(
        self,
        http: httpx.Client,
        ws: ClientConnection,
        client_id: str,
        request: ImageRequest,
        on_step: StepCallback | None,
        cancel: threading.Event | None,
    ) -> list[GeneratedImage]:
        assert request.seed is not None
        t0 = time.perf_counter()
        if self.workflow is not None and self.node_map is not None:
            workflow, nodes = self.workflow, self.node_map
        else:
            workflow, nodes = default_workflow(request.mode, request.loras)
        checkpoint = request.model or self.checkpoint
        if checkpoint is None and self.workflow is None:
            checkpoint = self._first_checkpoint(http)
        size = (request.width, request.height)
        names: dict[str, str] = {}
        if request.init_image is not None:
            init = init_picture(request, self.upscalers_dir)
            names["init_name"] = self._upload(http, png_bytes(init))
        if request.hires is not None or (request.mask_image and request.inpaint_area == "masked"):
            log.warning("ComfyUI: hires fix / masked-area inpaint not in the built-in workflow")
        if request.mask_image is not None:
            mask = load_input_image(request.mask_image, size, mode="L").convert("RGB")
            names["mask_name"] = self._upload(http, png_bytes(mask))
        controls = [self._upload(http, png_bytes(load_input_image(u.image, size)))
                    for u in request.controls]
        total = request.steps * request.batch_size
        results: list[GeneratedImage] = []
        for i in range(request.batch_size):
            seed = request.seed + i
            wf = apply_request(workflow, nodes, request, seed, checkpoint=checkpoint, **names)
            wf = add_controlnets(wf, nodes, request, controls) if controls else wf
            prompt_id = self._queue(http, wf, client_id)
            offset = i * request.steps

            def step(value: int, _max: int, offset: int = offset) -> None:
                if on_step is not None:
                    on_step(offset + min(value, request.steps), total, None)

            self._wait(http, ws, prompt_id, step, cancel)
            results.extend(
                GeneratedImage(
                    image=image,
                    request=request,
                    seed=seed,
                    model_name=checkpoint or "",
                    duration_s=time.perf_counter() - t0,
                )
                for image in self._outputs(http, prompt_id, nodes.output)
            )
        return results

    # --- HTTP pieces -----------------------------------------------------------------

    def _first_checkpoint(self, http: httpx.Client) -> str:
        resp = http.get("/object_info/CheckpointLoaderSimple")
        try:
            spec = resp.json()["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
            # Classic nodes list the choices first; V3 nodes say ["COMBO", {"options": [...]}].
            options = spec[1]["options"] if spec[0] == "COMBO" else spec[0]
        except (ValueError, KeyError, IndexError, TypeError):
            options = []
        if not isinstance(options, list) or not options:
            raise EngineError.of("engine_comfyui_no_checkpoints")
        return str(options[0])

    def _upload(self, http: httpx.Client, data: bytes) -> str:
        name = f"egaki-{hashlib.sha256(data).hexdigest()[:16]}.png"
        resp = http.post(
            "/upload/image",
            files={"image": (name, data, "image/png")},
            data={"type": "input", "overwrite": "true"},
        )
        if resp.status_code >= 400:
            raise EngineError.of(
                "engine_comfyui_upload_refused", status=resp.status_code, detail=error_text(resp)
            )
        body = resp.json()
        sub = body.get("subfolder") or ""
        return f"{sub}/{body['name']}" if sub else str(body["name"])

    def _queue(self, http: httpx.Client, workflow: dict[str, Any], client_id: str) -> str:
        resp = http.post("/prompt", json={"prompt": workflow, "client_id": client_id})
        if resp.status_code >= 400:
            detail = error_text(resp)
            nodes = _node_errors(resp)
            raise EngineError.of("engine_comfyui_workflow_rejected", detail=detail, nodes=nodes)
        try:
            return str(resp.json()["prompt_id"])
        except (ValueError, KeyError) as err:
            raise EngineError.of("engine_comfyui_no_prompt_id") from err

    def _interrupt(self, http: httpx.Client, prompt_id: str) -> None:
        for path, body in (
            ("/interrupt", {"prompt_id": prompt_id}),
            ("/queue", {"delete": [prompt_id]}),
        ):
            with contextlib.suppress(httpx.HTTPError):  # best effort: we stop waiting anyway
                http.post(path, json=body, timeout=5.0)

    def _wait(
        self,
        http: httpx.Client,
        ws: ClientConnection,
        prompt_id: str,
        on_step: Any,
        cancel: threading.Event | None,
    ) -> None:
        deadline = time.monotonic() + self.timeout
        next_history = time.monotonic() + _HISTORY_POLL_S
        while True:
            if cancel is not None and cancel.is_set():
                self._interrupt(http, prompt_id)
                raise GenerationCancelled.of("generation_stopped")
            now = time.monotonic()
            if now > deadline:
                self._interrupt(http, prompt_id)
                raise EngineError.of("engine_comfyui_timeout", seconds=self.timeout)
            try:
                raw = ws.recv(timeout=0.2)
            except TimeoutError:
                if now > next_history:
                    next_history = now + _HISTORY_POLL_S
                    if self._history(http, prompt_id) is not None:
                        return
                continue
            except ConnectionClosed as err:
                raise EngineError.of("engine_comfyui_connection_closed") from err
            if isinstance(raw, bytes):
                continue  # binary preview frames
            try:
                msg = json.loads(raw)
                kind, data = msg.get("type"), msg.get("data") or {}
            except (ValueError, AttributeError):
                continue
            if not isinstance(data, dict) or data.get("prompt_id", prompt_id) != prompt_id:
                continue
            if kind == "progress":
                on_step(int(data.get("value", 0)), int(data.get("max", 0)))
            elif (kind == "executing" and data.get("node") is None) or kind == "execution_success":
                return
            elif kind == "execution_interrupted":
                raise GenerationCancelled.of("engine_comfyui_interrupted")
            elif kind == "execution_error":
                what = f"{data.get('exception_type', 'error')}: {data.get('exception_message', '')}"
                where = data.get("node_type") or data.get("node_id") or "?"
                text = " ".join(str(what).split())[:400]
                raise EngineError.of("engine_comfyui_node_failed", node=where, error=text)

    def _history(self, http: httpx.Client, prompt_id: str) -> dict[str, Any] | None:
        resp = http.get(f"/history/{prompt_id}")
        try:
            entry = resp.json().get(prompt_id)
        except (ValueError, AttributeError):
            return None
        return entry if isinstance(entry, dict) and entry.get("outputs") is not None else None

    def _outputs(self, http: httpx.Client, prompt_id: str, output: str | None) -> list[Any]:
        entry = self._history(http, prompt_id)
        if entry is None:
            raise EngineError.of("engine_comfyui_no_history")
        images = []
        for node_id, node_out in (entry.get("outputs") or {}).items():
            if output is not None and str(node_id) != output:
                continue
            for ref in (node_out or {}).get("images") or []:
                if output is None and ref.get("type") != "output":
                    continue  # PreviewImage nodes write temp files
                params = {k: ref.get(k, "") for k in ("filename", "subfolder", "type")}
                resp = http.get("/view", params=params)
                if resp.status_code >= 400:
                    raise EngineError.of("engine_comfyui_view_failed",
                                         filename=params["filename"], status=resp.status_code)
                images.append(decode_image_bytes(resp.content, what="ComfyUI"))
        if not images:
            raise EngineError.of("engine_comfyui_no_image")
        return images


def _node_errors(resp: httpx.Response) -> str:
    try:
        node_errors = resp.json().get("node_errors") or {}
    except (ValueError, AttributeError):
        return ""
    parts = []
    if isinstance(node_errors, dict):
        for node_id, info in list(node_errors.items())[:3]:
            errs = info.get("errors") if isinstance(info, dict) else None
            first = errs[0] if isinstance(errs, list) and errs else {}
            msg = f"{first.get('message', '')} {first.get('details', '')}".strip()
            parts.append(f"node {node_id} ({info.get('class_type', '?')}): {msg}"[:200])
    return ("; " + "; ".join(parts)) if parts else ""
