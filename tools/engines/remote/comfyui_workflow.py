"""ComfyUI API-format workflows: the built-in graph, node maps and sampler names.

ComfyUI's ``/prompt`` takes a graph ``{node_id: {"class_type", "inputs"}}`` where links
are ``[node_id, output_index]``. :func:`default_workflow` builds txt2img / img2img /
inpaint graphs (with LoRA loaders) in the shape of ComfyUI's own
``script_examples/websockets_api_example.py``; :func:`apply_request` writes a request's
values into any graph through a :class:`NodeMap`, so users can bring their own workflow.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tools.core.errors import EngineError
from tools.core.request import ImageRequest, LoraRef

# A1111 sampler name → (ComfyUI sampler_name, scheduler). Names from comfy/samplers.py.
COMFY_SAMPLERS: dict[str, tuple[str, str]] = {
    "DPM++ 2M": ("dpmpp_2m", "normal"),
    "DPM++ 2M Karras": ("dpmpp_2m", "karras"),
    "DPM++ 2M SDE": ("dpmpp_2m_sde", "normal"),
    "DPM++ 2M SDE Karras": ("dpmpp_2m_sde", "karras"),
    "DPM++ SDE": ("dpmpp_sde", "normal"),
    "DPM++ SDE Karras": ("dpmpp_sde", "karras"),
    "DPM++ 2S a": ("dpmpp_2s_ancestral", "normal"),
    "DPM2": ("dpm_2", "normal"),
    "DPM2 Karras": ("dpm_2", "karras"),
    "DPM2 a": ("dpm_2_ancestral", "normal"),
    "DPM2 a Karras": ("dpm_2_ancestral", "karras"),
    "Euler": ("euler", "normal"),
    "Euler a": ("euler_ancestral", "normal"),
    "Heun": ("heun", "normal"),
    "LMS": ("lms", "normal"),
    "LMS Karras": ("lms", "karras"),
    "DDIM": ("ddim", "ddim_uniform"),
    "UniPC": ("uni_pc", "normal"),
    "DEIS": ("deis", "normal"),
    "LCM": ("lcm", "sgm_uniform"),
}
_LORA_EXTS = (".safetensors", ".ckpt", ".pt", ".bin")


def comfy_sampler(name: str) -> tuple[str, str]:
    """``"DPM++ 2M Karras"`` → ``("dpmpp_2m", "karras")``, or EngineError if ComfyUI lacks it."""
    try:
        return COMFY_SAMPLERS[name]
    except KeyError:
        choices = ", ".join(COMFY_SAMPLERS)
        raise EngineError.of("engine_comfyui_no_sampler", name=name, choices=choices) from None


@dataclass(frozen=True)
class NodeMap:
    """Which node ids of an API-format workflow receive which request fields."""

    positive: str  # CLIPTextEncode-like: inputs.text
    sampler: str  # KSampler-like: seed/steps/cfg/sampler_name/scheduler/denoise
    negative: str | None = None
    latent: str | None = None  # EmptyLatentImage: width/height/batch_size
    checkpoint: str | None = None  # CheckpointLoaderSimple: ckpt_name
    init_image: str | None = None  # LoadImage: image
    mask_image: str | None = None  # LoadImageMask: image
    output: str | None = None  # SaveImage whose files we fetch; None = all "output" files
    seed_input: str = "seed"  # "noise_seed" for KSamplerAdvanced


def _link(node: str, slot: int = 0) -> list[Any]:
    return [node, slot]


def default_workflow(
    mode: str, loras: list[LoraRef] | None = None
) -> tuple[dict[str, Any], NodeMap]:
    """The built-in workflow for ``mode`` (txt2img | img2img | inpaint) and its node map."""
    wf: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ""}},
    }
    model, clip = _link("4", 0), _link("4", 1)
    for i, lora in enumerate(loras or []):
        node = str(20 + i)
        wf[node] = {
            "class_type": "LoraLoader",
            "inputs": {
                "model": model,
                "clip": clip,
                "lora_name": lora_file(lora.name),
                "strength_model": lora.weight,
                "strength_clip": lora.weight,
            },
        }
        model, clip = _link(node, 0), _link(node, 1)
    wf["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}}
    wf["7"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}}
    init = mask = latent_node = None
    if mode == "txt2img":
        latent_node = "5"
        wf["5"] = {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 512, "height": 512, "batch_size": 1},
        }
        latent = _link("5")
    else:
        init = "10"
        wf["10"] = {"class_type": "LoadImage", "inputs": {"image": ""}}
        wf["11"] = {
            "class_type": "VAEEncode",
            "inputs": {"pixels": _link("10"), "vae": _link("4", 2)},
        }
        latent = _link("11")
        if mode == "inpaint":
            mask = "12"
            # White = repaint, as in A1111 and diffusers; the red channel carries it.
            wf["12"] = {"class_type": "LoadImageMask", "inputs": {"image": "", "channel": "red"}}
            wf["13"] = {
                "class_type": "SetLatentNoiseMask",
                "inputs": {"samples": latent, "mask": _link("12")},
            }
            latent = _link("13")
    wf["3"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": 0,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": model,
            "positive": _link("6"),
            "negative": _link("7"),
            "latent_image": latent,
        },
    }
    wf["8"] = {"class_type": "VAEDecode", "inputs": {"samples": _link("3"), "vae": _link("4", 2)}}
    wf["9"] = {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "egaki", "images": _link("8")},
    }
    nodes = NodeMap(
        positive="6",
        negative="7",
        sampler="3",
        latent=latent_node,
        checkpoint="4",
        init_image=init,
        mask_image=mask,
        output="9",
    )
    return wf, nodes


def lora_file(name: str) -> str:
    """ComfyUI wants the LoRA's file name; assume .safetensors when none is given."""
    return name if name.lower().endswith(_LORA_EXTS) else f"{name}.safetensors"


def apply_request(
    workflow: dict[str, Any],
    nodes: NodeMap,
    request: ImageRequest,
    seed: int,
    *,
    checkpoint: str | None = None,
    init_name: str | None = None,
    mask_name: str | None = None,
) -> dict[str, Any]:
    """A copy of ``workflow`` with the request's values written into the mapped nodes."""
    wf = copy.deepcopy(workflow)

    def inputs(node: str | None, role: str) -> dict[str, Any]:
        entry = wf.get(str(node)) if node is not None else None
        if not isinstance(entry, dict) or not isinstance(entry.get("inputs"), dict):
            raise EngineError.of("engine_comfyui_node_missing", role=role, node=node)
        return entry["inputs"]

    sampler_name, scheduler = comfy_sampler(request.sampler)
    inputs(nodes.positive, "positive")["text"] = request.prompt
    if nodes.negative is not None:
        inputs(nodes.negative, "negative")["text"] = request.negative_prompt
    ks = inputs(nodes.sampler, "sampler")
    ks[nodes.seed_input] = seed
    ks.update(
        steps=request.steps, cfg=request.cfg_scale, sampler_name=sampler_name, scheduler=scheduler
    )
    if "denoise" in ks or request.init_image is not None:
        ks["denoise"] = 1.0 if request.init_image is None else request.strength
    if nodes.latent is not None:
        inputs(nodes.latent, "latent").update(
            width=request.width, height=request.height, batch_size=1
        )
    if checkpoint and nodes.checkpoint is not None:
        inputs(nodes.checkpoint, "checkpoint")["ckpt_name"] = checkpoint
    if init_name is not None:
        inputs(nodes.init_image, "init image")["image"] = init_name
    if mask_name is not None:
        inputs(nodes.mask_image, "mask")["image"] = mask_name
    return wf
