"""ControlNet for the remote engines: A1111's extension arguments and ComfyUI nodes.

* AUTOMATIC1111 with the sd-webui-controlnet extension reads
  ``alwayson_scripts.controlnet.args``, one dict per unit (:func:`a1111_controlnet`). The
  control map is already made here, so ``module`` is ``none``; the model is the unit's or
  the A1111 name of the default for its kind (``control_v11p_sd15_canny``).
* ComfyUI: per unit a ``LoadImage`` (the uploaded map), a ``ControlNetLoader`` and a
  ``ControlNetApplyAdvanced`` chained on the conditioning; the sampler then takes the last
  one's positive and negative (:func:`add_controlnets`). Works on the built-in workflow and on
  a person's own through its :class:`~tools.engines.remote.comfyui_workflow.NodeMap`.
"""

from __future__ import annotations

import base64
from typing import Any

from tools.core.errors import EngineError
from tools.core.request import ControlUnit, ImageRequest
from tools.engines.diffusers.control.models import DEFAULTS, KIND_OF_MODULE
from tools.engines.remote.comfyui_workflow import NodeMap
from tools.engines.remote.http import load_input_image, png_bytes

_NET_EXTS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
FIRST_NODE = 60  # node ids 60, 61, 62… stay clear of the built-in graph's


def model_name(unit: ControlUnit, request: ImageRequest) -> str:
    """The unit's model, or the A1111 name of the default ControlNet for its kind."""
    if unit.model:
        return unit.model.rsplit("/", 1)[-1] if "/" in unit.model else unit.model
    kind = KIND_OF_MODULE.get(unit.module)
    family = "sdxl" if "xl" in (request.model or "").lower() else "sd15"
    repo = DEFAULTS.get((family, kind)) if kind else None  # type: ignore[arg-type]
    if repo is None:
        raise EngineError.of("engine_remote_control_model", module=unit.module)
    return repo.split("/")[1]


def _b64(unit: ControlUnit, request: ImageRequest) -> str:
    image = load_input_image(unit.image, (request.width, request.height))
    return base64.b64encode(png_bytes(image)).decode("ascii")


def a1111_controlnet(request: ImageRequest) -> dict[str, Any]:
    """``{"alwayson_scripts": {"controlnet": {"args": [...]}}}`` for the request's units."""
    if not request.controls:
        return {}
    args = [
        {
            "enabled": True,
            "image": _b64(unit, request),
            "module": "none",  # the map is the control image already
            "model": model_name(unit, request),
            "weight": unit.weight,
            "guidance_start": unit.guidance_start,
            "guidance_end": unit.guidance_end,
            "resize_mode": "Crop and Resize",
            "processor_res": 512,
            "pixel_perfect": False,
            "control_mode": "Balanced",
        }
        for unit in request.controls
    ]
    return {"alwayson_scripts": {"controlnet": {"args": args}}}


def comfy_file(name: str) -> str:
    return name if name.lower().endswith(_NET_EXTS) else f"{name}.safetensors"


def add_controlnets(workflow: dict[str, Any], nodes: NodeMap, request: ImageRequest,
                    image_names: list[str]) -> dict[str, Any]:
    """``workflow`` with the units' ControlNet nodes between the prompts and the sampler."""
    sampler = workflow.get(nodes.sampler, {}).get("inputs")
    if not isinstance(sampler, dict) or "positive" not in sampler or "negative" not in sampler:
        raise EngineError.of("engine_comfyui_node_missing", role="sampler", node=nodes.sampler)
    positive, negative = sampler["positive"], sampler["negative"]
    vae = [nodes.checkpoint, 2] if nodes.checkpoint is not None else None
    for i, (unit, name) in enumerate(zip(request.controls, image_names, strict=True)):
        load, net, apply = (str(FIRST_NODE + 3 * i + k) for k in range(3))
        workflow[load] = {"class_type": "LoadImage", "inputs": {"image": name}}
        workflow[net] = {"class_type": "ControlNetLoader",
                         "inputs": {"control_net_name": comfy_file(model_name(unit, request))}}
        inputs: dict[str, Any] = {
            "positive": positive, "negative": negative, "control_net": [net, 0],
            "image": [load, 0], "strength": unit.weight,
            "start_percent": unit.guidance_start, "end_percent": unit.guidance_end,
        }
        if vae is not None:
            inputs["vae"] = vae
        workflow[apply] = {"class_type": "ControlNetApplyAdvanced", "inputs": inputs}
        positive, negative = [apply, 0], [apply, 1]
    sampler["positive"], sampler["negative"] = positive, negative
    return workflow
