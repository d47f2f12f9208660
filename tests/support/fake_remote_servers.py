"""Small local stand-ins for the AUTOMATIC1111 and ComfyUI HTTP APIs.

Each runs an aiohttp app on 127.0.0.1 (ephemeral port) in a background thread, checks the
payloads it receives the way the real server would reject them, records them for
assertions, and answers with real PNG bytes. Shapes follow A1111 ``modules/api`` and
ComfyUI ``server.py`` / ``script_examples/websockets_api_example.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

REQUIRED_A1111 = (
    "prompt",
    "negative_prompt",
    "seed",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "batch_size",
    "sampler_name",
)
COMFY_SAMPLERS = {
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "ddim",
    "uni_pc",
    "deis",
    "lcm",
}
COMFY_SCHEDULERS = {"normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform"}


def png(width: int, height: int, seed: int) -> bytes:
    """A solid PNG whose colour encodes the seed, so tests can tell images apart."""
    color = (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256)
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.copy()


class ServerThread:
    """Run an aiohttp app on its own loop in a daemon thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-server")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(10)
        return self.url

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# --- AUTOMATIC1111 ----------------------------------------------------------------------


@dataclass
class FakeA1111:
    """``/sdapi/v1`` with txt2img, img2img, progress and interrupt."""

    step_time: float = 0.0
    return_grid: bool = True  # A1111's default opts.return_grid prepends a grid to batches
    api_enabled: bool = True
    payloads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    decoded: dict[str, Image.Image] = field(default_factory=dict)
    interrupts: int = 0
    progress_polls: int = 0
    _step: int = 0
    _steps: int = 0
    _interrupted: bool = False

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        if self.api_enabled:
            app.router.add_post("/sdapi/v1/txt2img", self._txt2img)
            app.router.add_post("/sdapi/v1/img2img", self._img2img)
            app.router.add_get("/sdapi/v1/progress", self._progress)
            app.router.add_post("/sdapi/v1/interrupt", self._interrupt)
        return app

    async def _txt2img(self, request: web.Request) -> web.Response:
        return await self._generate("txt2img", await request.json())

    async def _img2img(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not body.get("init_images"):
            return web.json_response({"detail": "Init image not found"}, status=404)
        self.decoded["init"] = decode_png(base64.b64decode(body["init_images"][0]))
        if body.get("mask"):
            self.decoded["mask"] = decode_png(base64.b64decode(body["mask"]))
        return await self._generate("img2img", body)

    async def _generate(self, endpoint: str, body: dict[str, Any]) -> web.Response:
        self.payloads.append((endpoint, body))
        missing = [k for k in REQUIRED_A1111 if k not in body]
        if missing:
            return web.json_response(
                {"detail": [{"loc": ["body", k], "msg": "field required"} for k in missing]},
                status=422,
            )
        self._interrupted, self._step, self._steps = False, 0, int(body["steps"])
        for step in range(1, self._steps + 1):
            if self._interrupted:
                break
            self._step = step
            if self.step_time:
                await asyncio.sleep(self.step_time)
        seed, batch = int(body["seed"]), int(body["batch_size"])
        w, h = int(body["width"]), int(body["height"])
        seeds = [seed + i for i in range(batch)]
        images = [base64.b64encode(png(w, h, s)).decode() for s in seeds]
        first = 0
        if self.return_grid and batch > 1:
            images.insert(0, base64.b64encode(png(w * batch, h, 999)).decode())
            first = 1
        info = {
            "prompt": body["prompt"],
            "all_seeds": seeds,
            "seed": seed,
            "index_of_first_image": first,
            "sd_model_name": "fake_sd15",
            "sd_model_hash": "abcdef1234",
            "extra_generation_params": {"Lora hashes": "detail: 0123456789ab"}
            if "<lora:" in body["prompt"]
            else {},
            "infotexts": [f"{body['prompt']}\nSteps: {body['steps']}, Seed: {s}" for s in seeds],
        }
        self._step = self._steps = 0
        return web.json_response({"images": images, "parameters": body, "info": json.dumps(info)})

    async def _progress(self, request: web.Request) -> web.Response:
        self.progress_polls += 1
        total = self._steps or 1
        return web.json_response(
            {
                "progress": self._step / total,
                "eta_relative": 0.0,
                "state": {
                    "skipped": False,
                    "interrupted": self._interrupted,
                    "job": "",
                    "job_count": 1,
                    "job_no": 0,
                    "sampling_step": self._step,
                    "sampling_steps": self._steps,
                },
                "current_image": None,
                "textinfo": None,
            }
        )

    async def _interrupt(self, request: web.Request) -> web.Response:
        self.interrupts += 1
        self._interrupted = True
        return web.json_response({})


# --- ComfyUI -----------------------------------------------------------------------------


@dataclass
class FakeComfyUI:
    """``/prompt``, ``/ws``, ``/history``, ``/view``, ``/upload/image``, ``/interrupt``."""

    step_time: float = 0.0
    checkpoints: list[str] = field(default_factory=lambda: ["v1-5-pruned-emaonly.safetensors"])
    fail_with: str | None = None  # exception_message for an execution_error
    prompts: list[dict[str, Any]] = field(default_factory=list)
    client_ids: list[str] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    interrupts: list[Any] = field(default_factory=list)
    queue_deletes: list[str] = field(default_factory=list)
    history: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    _interrupted: bool = False
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{prompt_id}", self._history)
        app.router.add_get("/view", self._view)
        app.router.add_post("/upload/image", self._upload)
        app.router.add_post("/interrupt", self._interrupt)
        app.router.add_post("/queue", self._queue)
        app.router.add_get("/object_info/CheckpointLoaderSimple", self._object_info)
        return app

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        await ws.send_json(
            {
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid},
            }
        )
        async for _ in ws:
            pass
        self.sockets.pop(sid, None)
        return ws

    async def _object_info(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "CheckpointLoaderSimple": {
                    "input": {
                        "required": {"ckpt_name": [self.checkpoints, {"tooltip": "checkpoint"}]}
                    }
                }
            }
        )

    def _validate(self, wf: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}

        def bad(node: str, cls: str, message: str, details: str) -> None:
            errors[node] = {
                "errors": [{"type": "value_not_in_list", "message": message, "details": details}],
                "class_type": cls,
            }

        for node_id, node in wf.items():
            cls, inputs = node["class_type"], node["inputs"]
            for value in inputs.values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) not in wf:
                    bad(node_id, cls, "Link to missing node", str(value[0]))
            if cls == "CheckpointLoaderSimple" and inputs["ckpt_name"] not in self.checkpoints:
                bad(node_id, cls, "Value not in list", f"ckpt_name: '{inputs['ckpt_name']}'")
            if cls.startswith("KSampler"):
                for key, allowed in (
                    ("sampler_name", COMFY_SAMPLERS),
                    ("scheduler", COMFY_SCHEDULERS),
                ):
                    if inputs[key] not in allowed:
                        bad(node_id, cls, "Value not in list", f"{key}: {inputs[key]}")
            if cls in ("LoadImage", "LoadImageMask") and inputs["image"] not in self.uploads:
                bad(node_id, cls, "Invalid image file", f"image - {inputs['image']}")
        return errors

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        wf = body["prompt"]
        self.prompts.append(wf)
        self.client_ids.append(body.get("client_id", ""))
        node_errors = self._validate(wf)
        if node_errors:
            return web.json_response(
                {
                    "error": {
                        "type": "prompt_outputs_failed_validation",
                        "message": "Prompt outputs failed validation",
                        "details": "",
                        "extra_info": {},
                    },
                    "node_errors": node_errors,
                },
                status=400,
            )
        prompt_id = str(uuid.uuid4())
        task = asyncio.ensure_future(self._run(prompt_id, wf, body.get("client_id", "")))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(
            {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}}
        )

    async def _send(self, sid: str, kind: str, data: dict[str, Any]) -> None:
        ws = self.sockets.get(sid)
        if ws is not None and not ws.closed:
            await ws.send_json({"type": kind, "data": data})

    async def _run(self, prompt_id: str, wf: dict[str, Any], sid: str) -> None:
        self._interrupted = False
        await self._send(sid, "execution_start", {"prompt_id": prompt_id})
        sampler = next(n for n in wf.values() if n["class_type"].startswith("KSampler"))
        steps = int(sampler["inputs"]["steps"])
        ws = self.sockets.get(sid)
        for value in range(1, steps + 1):
            if self._interrupted:
                await self._send(
                    sid, "execution_interrupted", {"prompt_id": prompt_id, "node_id": "3"}
                )
                return
            await self._send(
                sid, "progress", {"value": value, "max": steps, "prompt_id": prompt_id, "node": "3"}
            )
            if ws is not None and not ws.closed:
                await ws.send_bytes(b"\x00\x00\x00\x01\x00\x00\x00\x01preview")
            if self.step_time:
                await asyncio.sleep(self.step_time)
        if self.fail_with:
            await self._send(
                sid,
                "execution_error",
                {
                    "prompt_id": prompt_id,
                    "node_id": "3",
                    "node_type": "KSampler",
                    "exception_message": self.fail_with,
                    "exception_type": "RuntimeError",
                    "traceback": ["..."],
                },
            )
            return
        w, h = self._size(wf)
        name = f"egaki_{len(self.files):05}_.png"
        self.files[name] = png(w, h, int(sampler["inputs"].get("seed", 0)))
        save = next(k for k, n in wf.items() if n["class_type"] == "SaveImage")
        self.history[prompt_id] = {
            "prompt": [len(self.prompts), prompt_id, wf, {"client_id": sid}, [save]],
            "outputs": {save: {"images": [{"filename": name, "subfolder": "", "type": "output"}]}},
            "status": {"status_str": "success", "completed": True, "messages": []},
        }
        await self._send(sid, "executing", {"node": save, "prompt_id": prompt_id})
        await self._send(sid, "executing", {"node": None, "prompt_id": prompt_id})

    def _size(self, wf: dict[str, Any]) -> tuple[int, int]:
        for node in wf.values():
            if node["class_type"] == "EmptyLatentImage":
                return int(node["inputs"]["width"]), int(node["inputs"]["height"])
            if node["class_type"] == "LoadImage":
                return decode_png(self.uploads[node["inputs"]["image"]]).size
        return 64, 64

    async def _history(self, request: web.Request) -> web.Response:
        pid = request.match_info["prompt_id"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _view(self, request: web.Request) -> web.Response:
        name = request.query.get("filename", "")
        if request.query.get("type") != "output" or name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="image/png")

    async def _upload(self, request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return web.Response(status=400)
        self.uploads[image.filename] = image.file.read()
        return web.json_response(
            {"name": image.filename, "subfolder": "", "type": post.get("type", "input")}
        )

    async def _interrupt(self, request: web.Request) -> web.Response:
        self.interrupts.append(await request.json() if request.can_read_body else None)
        self._interrupted = True
        return web.Response(status=200)

    async def _queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.queue_deletes.extend(body.get("delete", []))
        return web.Response(status=200)
