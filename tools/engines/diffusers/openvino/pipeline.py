"""Wire a loaded diffusers pipeline to OpenVINO: UNet, VAE decoder and TAESD.

:func:`accelerate` converts (or finds in the cache) the pipeline's UNet and VAE decoder
and installs :class:`~tools.engines.diffusers.openvino.runtime.OvRoute` on them; the returned
:class:`OpenVinoPipeline` also converts a TAESD on request and can be paused (LoRA
adapters live in the torch modules, so a request with LoRAs runs torch).

What runs where:

* UNet — OpenVINO for plain calls (SD1.x, SDXL's text/time embeddings, LCM's
  ``timestep_cond``) of any prompt length (one-chunk prompts and longer ones each get a
  compile per latent shape); torch when a call carries anything else (LoRA scales,
  ControlNet residuals) or when paused;
* VAE / TAESD decode — OpenVINO unless tiled decoding is on;
* text encoder(s) — OpenVINO, the token lookup in torch
  (:mod:`~tools.engines.diffusers.openvino.text_encoder`); torch for a LoRA with a
  text-encoder part;
* VAE encoder (img2img, inpaint), samplers — torch, unchanged.

Each weight is held once: after the routes are installed, the torch UNet, VAE decoder
and text encoders are released (:mod:`~tools.engines.diffusers.openvino.weights`) and
come back, memory-mapped, only when a fallback runs torch (a LoRA request, an odd latent
size, a tiled decode, a failed route). Fast mode's fused UNet is converted once with the
LoRA loaded; after that the LoRA is not loaded into torch at all.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tools.engines.diffusers.lora import LoraSet, ResolvedLora, load_weights
from tools.engines.diffusers.openvino import text_encoder as te_route
from tools.engines.diffusers.openvino.runtime import (
    OvModel,
    OvRoute,
    cache_key,
    convert,
    decoder_module,
    prune_cache,
    unet_inputs,
    unet_module,
)
from tools.engines.diffusers.openvino.weights import TorchWeights, read_header
from tools.engines.memory import release_heap

log = logging.getLogger(__name__)

StatusCallback = Callable[[str], None]
# The UNet's prompt length (encoder_hidden_states, input 2, axis 1: 77 positions per
# 75-token chunk): static for one-chunk prompts, dynamic for longer ones, so 154, 231…
# positions (long prompts, BREAK) share one compile per latent shape instead of adding a
# compile (and a weight copy) each; see runtime.MAX_SHAPES and benchmarks/openvino_seq.py.
UNET_DYNAMIC = {2: (1, 77)}
_UNET_KWARGS = {"sample", "timestep", "encoder_hidden_states", "timestep_cond",
                "added_cond_kwargs", "return_dict", "cross_attention_kwargs"}


def _np(x: Any) -> Any:
    return x.detach().to("cpu").float().contiguous().numpy()


def unet_accepts(extra: Sequence[str], up_factor: int
                 ) -> Callable[[tuple[Any, ...], dict[str, Any]], list[Any] | None]:
    """Positional OpenVINO inputs for a UNet call, or None when torch must run it.

    Latents whose sides are not multiples of ``up_factor`` (e.g. 520 px → 65) make the
    UNet pass explicit upsample sizes, a branch the traced graph doesn't have: torch.
    """

    def accepts(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        import torch

        names = ("sample", "timestep", "encoder_hidden_states")
        if len(args) > len(names):
            return None
        given = dict(zip(names, args, strict=False)) | kwargs
        if any(v is not None and k not in _UNET_KWARGS for k, v in given.items()):
            return None  # e.g. ControlNet residuals: torch only
        if given.get("cross_attention_kwargs"):
            return None  # LoRA scale and friends
        sample, hidden = given.get("sample"), given.get("encoder_hidden_states")
        if sample is None or hidden is None or sample.device.type != "cpu":
            return None
        if sample.shape[-1] % up_factor or sample.shape[-2] % up_factor:
            return None
        t = torch.as_tensor(given.get("timestep")).float().cpu()
        if t.ndim == 1 and t.numel() and bool((t == t[0]).all()):
            t = t[0]
        if t.ndim != 0:
            return None
        added = given.get("added_cond_kwargs") or {}
        values = {"timestep_cond": given.get("timestep_cond"), **added}
        if values["timestep_cond"] is not None and "timestep_cond" not in extra:
            return None
        feed = [_np(sample), _np(t), _np(hidden)]
        for name in extra:
            if values.get(name) is None:
                return None
            feed.append(_np(values[name]))
        return feed

    return accepts


def unet_wrap(out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import torch
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

    sample = args[0] if args else kwargs["sample"]
    tensor = torch.from_numpy(out).to(sample.dtype)
    return UNet2DConditionOutput(sample=tensor) if kwargs.get("return_dict", True) else (tensor,)


def decode_accepts(vae: Any) -> Callable[[tuple[Any, ...], dict[str, Any]], list[Any] | None]:
    def accepts(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        z = args[0] if args else kwargs.get("z", kwargs.get("x"))
        if z is None or getattr(vae, "use_tiling", False) or z.device.type != "cpu":
            return None
        return [_np(z)]

    return accepts


def decode_wrap(out: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import torch
    from diffusers.models.autoencoders.vae import DecoderOutput

    z = args[0] if args else kwargs["z"] if "z" in kwargs else kwargs["x"]
    tensor = torch.from_numpy(out).to(z.dtype)
    return DecoderOutput(sample=tensor) if kwargs.get("return_dict", True) else (tensor,)


def _decoder_inputs(vae: Any) -> tuple[list[tuple[list[int], Any]], tuple[Any, ...]]:
    import torch

    ch = int(vae.config.latent_channels)
    return [([-1, ch, -1, -1], "f32")], (torch.randn(1, ch, 16, 16),)


@dataclass
class OpenVinoPipeline:
    """The routes installed on one pipeline's modules."""

    root: Path
    precision: str
    identity: tuple[str, ...]
    routes: list[OvRoute] = field(default_factory=list)
    unet_models: dict[str, OvModel] = field(default_factory=dict)  # "base", LoRA-fused ones
    int8: bool = False
    weights: dict[str, TorchWeights] = field(default_factory=dict)  # "unet", "decoder"…
    served_by: dict[str, OvRoute] = field(default_factory=dict)  # same keys
    keep_torch: bool = False  # True: never release the torch modules (old behaviour)

    def add_decoder(self, vae: Any, identity: tuple[str, ...], on_status: StatusCallback | None
                    = None) -> bool:
        """Route ``vae.decode`` (e.g. a TAESD loaded later) through OpenVINO."""
        specs, example = _decoder_inputs(vae)
        ir = _ensure_ir(self.root, identity, "decoder", vae.config,
                        lambda: decoder_module(vae), example, specs, on_status)
        if ir is None:
            return False
        model = OvModel(ir, self.precision)
        self.routes.append(OvRoute(vae, "decode", model, decode_accepts(vae), decode_wrap))
        return True

    def track(self, name: str, weights: TorchWeights, route: OvRoute) -> None:
        """Let ``weights`` leave memory while ``route`` serves; the route's torch fallback
        puts them back first."""
        self.weights[name] = weights
        self.served_by[name] = route
        route.before_eager = weights.ensure

    def add_text_encoders(self, pipe: Any, model_dir: Path | None,
                          on_status: StatusCallback | None = None) -> None:
        """Route each text encoder through OpenVINO (see :mod:`.text_encoder`)."""
        for part in te_route.PARTS:
            te = getattr(pipe, part, None)
            if te is None or not hasattr(te, "get_input_embeddings"):
                continue
            specs, example = te_route.encoder_inputs(te)
            ir = _ensure_ir(self.root, self.identity, part, te.config.to_dict(),
                            partial(te_route.encoder_module, te), example, specs, on_status)
            if ir is None:
                continue
            route = OvRoute(te, "forward", OvModel(ir, self.precision),
                            te_route.accepts(te), te_route.wrap(te))
            self.routes.append(route)
            self.track(part, TorchWeights(
                te, part.replace("_", " "), te_route.weight_files(model_dir, part),
                ir.parent / f"torch-{part}.safetensors", keep=te_route.KEEP), route)

    def release_torch(self) -> None:
        """Drop the torch copies OpenVINO replaced (not those of a failed route)."""
        if self.keep_torch:
            return
        for name, weights in self.weights.items():
            if not self.served_by[name].failed:
                weights.release()

    def need_torch(self, loras: Sequence[ResolvedLora] = ()) -> None:
        """Put the torch UNet back (memory-mapped) before adapters go into it, and the
        text encoders too when one of ``loras`` changes them."""
        names = ["unet"] + (list(te_route.PARTS) if any(not _unet_only(lo) for lo in loras)
                            else [])
        for name in names:
            if name in self.weights:
                self.weights[name].ensure()

    def prepare(self, pipe: Any, lora_set: LoraSet, loras: Sequence[ResolvedLora],
                fusable: ResolvedLora | None, on_status: StatusCallback | None = None
                ) -> None:
        """Load the request's LoRAs and choose what serves its UNet calls: the base
        OpenVINO UNet without LoRAs; a converted copy with ``fusable`` fused in when it is
        the only LoRA (fast mode's LCM LoRA, UNet-only); both with the torch UNet
        released. Otherwise torch, with the adapters live in its modules."""
        route = self.served_by.get("unet")  # not a text encoder's (also a "forward")
        served = route is not None and not route.failed and (not loras or (
            fusable is not None and list(loras) == [fusable]))
        if served:
            assert route is not None
            lora_set.clear(pipe)
            key = "base" if not loras else self._fused(pipe, route, lora_set, loras[0],
                                                       on_status)
            if key:
                route.paused = False
                if route.model is not self.unet_models[key]:
                    route.model.release()  # one compiled UNet in memory at a time
                    route.model = self.unet_models[key]
                if loras and not _unet_only(loras[0]):  # its text-encoder part: torch
                    self.need_torch(loras)
                    lora_set.apply(pipe, list(loras))
                else:
                    self.release_torch()
                return
        self.need_torch(loras)
        lora_set.apply(pipe, list(loras))
        if route is not None:
            route.paused = True

    def _fused(self, pipe: Any, route: OvRoute, lora_set: LoraSet, lora: ResolvedLora,
               on_status: StatusCallback | None) -> str:
        """Key of the OpenVINO UNet with ``lora`` fused, converting it once; "" if not."""
        key = f"lora:{lora.path}:{lora.path.stat().st_mtime_ns}:{lora.weight}"
        if key in self.unet_models:
            return key
        unet = pipe.unet
        extra, specs, example = unet_inputs(unet)
        fused: list[bool] = []

        def build() -> Any:
            self.need_torch([lora])
            lora_set.apply(pipe, [lora])
            pipe.fuse_lora(components=["unet"], lora_scale=lora.weight,
                           adapter_names=[lora.adapter_name])
            fused.append(True)
            return unet_module(unet, extra)

        route.paused = True  # trace torch, not the installed OpenVINO route
        try:
            ir = _ensure_ir(self.root, (*self.identity, key), "unet", unet.config, build,
                            example, specs, on_status)
        finally:
            if fused:
                pipe.unfuse_lora(components=["unet"])
            lora_set.clear(pipe)  # OpenVINO carries it from here on
        if ir is None:
            return ""
        model = OvModel(ir, self.precision, UNET_DYNAMIC)
        if self.int8:  # calibrated like the base model, with the LoRA's UNet serving
            from tools.engines.diffusers.openvino.int8 import ensure_int8

            base, route.model, route.paused = route.model, model, False
            try:
                quantized = ensure_int8(pipe, route, ir, on_status)
            finally:
                route.model = base
            if quantized is not None:
                model = OvModel(quantized, self.precision, UNET_DYNAMIC)
        self.unet_models[key] = model
        return key

    def close(self) -> None:
        for r in self.routes:
            r.uninstall()
        self.routes.clear()
        self.weights.clear()
        self.served_by.clear()


def _unet_only(lora: ResolvedLora) -> bool:
    """True when a LoRA file changes only the UNet (its fused OpenVINO copy is then all of
    it); a text-encoder part needs torch adapters."""
    if lora.path.suffix.lower() != ".safetensors":
        return "text" not in " ".join(load_weights(lora.path))
    try:
        names = read_header(lora.path)[0]
    except (OSError, ValueError):
        return False
    return not any(n.startswith(("lora_te", "text_encoder", "te_")) for n in names)


def _ensure_ir(root: Path, identity: Sequence[str], part: str, config: Any,
               build: Callable[[], Any], example: tuple[Any, ...],
               specs: list[tuple[list[int], Any]], on_status: StatusCallback | None
               ) -> Path | None:
    """The cached IR for ``part`` of this model, converting ``build()`` first if needed."""
    folder = root / cache_key(identity, part, config)
    ir = folder / f"{part}.xml"
    failed = folder / "failed.txt"
    if failed.exists():
        log.info("OpenVINO %s skipped: conversion failed before (%s)", part,
                 failed.read_text(encoding="utf-8").strip()[:200])
        return None
    if ir.exists():
        os.utime(folder)  # most recently used: kept by prune_cache
        return ir
    if on_status is not None:
        on_status(part)
    log.info("converting %s to OpenVINO (once per model) -> %s", part, folder)
    try:
        convert(build(), example, specs, ir)
    except Exception as err:
        reason = f"{type(err).__name__}: {str(err).strip()[:500]}"
        log.warning("OpenVINO conversion of %s failed; torch runs it (%s)", part, reason)
        folder.mkdir(parents=True, exist_ok=True)
        failed.write_text(reason + "\n", encoding="utf-8")
        return None
    finally:
        release_heap()
    prune_cache(root, keep=8)  # SD1.5 fast: UNet, fused UNet, 2 decoders, text encoder
    return ir


def accelerate(pipe: Any, identity: tuple[str, ...], root: Path, precision: str,
               on_status: StatusCallback | None = None, *, int8: bool = False,
               model_dir: Path | None = None,
               keep_torch: bool = False) -> OpenVinoPipeline | None:
    """Route ``pipe``'s UNet and VAE decoder through OpenVINO; None if neither converts.

    ``int8`` swaps in a quantized UNet (built once from calibration runs, see
    :mod:`tools.engines.diffusers.openvino.int8`). The torch modules replaced are released
    unless ``keep_torch``; ``model_dir`` (a diffusers folder) may hold their weights as
    loaded, else a copy is saved beside the IR to reload them from.
    """
    accel = OpenVinoPipeline(root=root, precision=precision, identity=identity, int8=int8,
                             keep_torch=keep_torch)
    unet = pipe.unet
    extra, specs, example = unet_inputs(unet)
    ir = _ensure_ir(root, identity, "unet", unet.config, lambda: unet_module(unet, extra),
                    example, specs, on_status)
    if ir is not None:
        route = OvRoute(unet, "forward", OvModel(ir, precision, UNET_DYNAMIC),
                        unet_accepts(extra, 2 ** (len(unet.config.up_block_types) - 1)),
                        unet_wrap)
        accel.routes.append(route)
        accel.unet_models["base"] = route.model
        if int8:
            from tools.engines.diffusers.openvino.int8 import ensure_int8

            quantized = ensure_int8(pipe, route, ir, on_status)
            if quantized is not None:
                route.model = accel.unet_models["base"] = OvModel(quantized, precision,
                                                                  UNET_DYNAMIC)
        accel.track("unet", TorchWeights(unet, "UNet", _own_file(model_dir, "unet", ""),
                                         ir.parent / "torch.safetensors"), route)
    if accel.add_decoder(pipe.vae, identity, on_status):
        route = accel.routes[-1]
        accel.track("decoder", TorchWeights(
            pipe.vae.decoder, "VAE decoder", _own_file(model_dir, "vae", "decoder."),
            route.model.ir.parent / "torch-decoder.safetensors"), route)
    accel.add_text_encoders(pipe, model_dir if model_dir and model_dir.is_dir() else None,
                            on_status)
    if not accel.routes:
        return None
    accel.release_torch()
    return accel


def _own_file(model_dir: Path | None, part: str, prefix: str) -> list[tuple[Path, str]]:
    if model_dir is None or not model_dir.is_dir():
        return []
    return [(model_dir / part / "diffusion_pytorch_model.safetensors", prefix)]
