"""OpenVINO on the CPU: the UNet and VAE decoders converted once, then run much faster.

diffusers stays in charge (text encoder, samplers, callbacks, img2img/inpaint
preparation); :class:`OvRoute` replaces a module's ``forward`` (UNet) or ``decode`` (VAE,
TAESD) and sends calls it can serve to an OpenVINO model compiled for the call's input
shapes (a few seconds, once per shape). Everything else — LoRA adapters, tiled decoding,
extra UNet inputs — runs the original torch code, and any OpenVINO failure logs its
reason and falls back to torch for good: an optimisation never fails a request.

Converted models (OpenVINO IR) are cached under the data dir, keyed by the model's
identity, so the conversion (about 30 s for SD1.5 on 2 cores) is paid once per model.

OpenVINO's telemetry (on by default in its pip packages) is blocked before it is
imported: nothing leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tools.engines.memory import drop_mapped_pages, release_heap

log = logging.getLogger(__name__)

IR_VERSION = "1"  # bump when the wrappers below change what a cached IR computes
# Compiled shapes kept per model. Each holds its own copy of the weights (~1.7 GB for an
# SD1.5 UNet in bf16); a compile per shape still beats one dynamic-shape compile, which
# ran a 512² CFG step 8-13% slower here. Two cover full-quality and quick previews.
# An axis in OvModel's ``dynamic`` (the UNet's prompt length, 77·k positions) is static at
# its usual size and dynamic otherwise: 77-position prompts keep their static compile,
# and every longer prompt shares ONE more compile per shape instead of a compile (and a
# weight copy) per length. benchmarks/openvino_seq.py, half-width SD1.5 UNet, 1 thread:
# the dynamic axis cost ~5 % per step at 256² (~50 ms a call) and was within noise
# (+1 to +4 % median) at 512², so the common short prompt keeps the static compile.
MAX_SHAPES = 2


def import_openvino() -> Any:
    """``openvino`` with its telemetry made unimportable (it and nncf then send nothing)."""
    from tools.core.imports import HEAVY_IMPORTS

    with HEAVY_IMPORTS:  # imports from worker threads never interleave (see tools.core.imports)
        if sys.modules.get("openvino_telemetry", True) is not None:
            sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
        import openvino

    return openvino


def available() -> str:
    """"" when OpenVINO can be used here, else why not."""
    try:
        import_openvino()
    except Exception as err:  # ImportError, or a broken native library
        return f"OpenVINO is not installed or can't load ({type(err).__name__}: {err})"
    return ""


def pick_precision(wanted: str) -> str:
    """``auto`` → bf16 where the CPU computes it natively, else f32."""
    if wanted != "auto":
        return wanted
    ov = import_openvino()
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in caps else "f32"


def unet_module(unet: Any, extra: Sequence[str]) -> Any:
    """A traceable UNet wrapper: positional tensors in (see :func:`unet_inputs`), noise out."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.unet = unet

        def forward(self, sample: Any, timestep: Any, hidden: Any, *rest: Any) -> Any:
            named = dict(zip(extra, rest, strict=True))
            added = {k: named[k] for k in ("text_embeds", "time_ids") if k in named}
            return self.unet(
                sample, timestep, hidden, timestep_cond=named.get("timestep_cond"),
                added_cond_kwargs=added or None, return_dict=False,
            )[0]

    return Wrapped().eval()


def unet_inputs(unet: Any) -> tuple[list[str], list[tuple[list[int], Any]], tuple[Any, ...]]:
    """(extra input names, OpenVINO input specs, example tensors) for this UNet's config."""
    import torch

    cfg = unet.config
    ch, ctx = int(cfg.in_channels), int(cfg.cross_attention_dim)
    specs: list[tuple[list[int], Any]] = [([-1, ch, -1, -1], "f32"), ([], "f32"),
                                          ([-1, -1, ctx], "f32")]
    example: list[Any] = [torch.randn(2, ch, 16, 16), torch.tensor(999.0),
                          torch.randn(2, 77, ctx)]
    extra: list[str] = []
    if getattr(cfg, "addition_embed_type", None) == "text_time":
        pooled = int(cfg.projection_class_embeddings_input_dim) - 6 * int(
            cfg.addition_time_embed_dim)
        extra += ["text_embeds", "time_ids"]
        specs += [([-1, pooled], "f32"), ([-1, 6], "f32")]
        example += [torch.randn(2, pooled), torch.randn(2, 6)]
    if getattr(cfg, "time_cond_proj_dim", None):
        dim = int(cfg.time_cond_proj_dim)
        extra.append("timestep_cond")
        specs.append(([-1, dim], "f32"))
        example.append(torch.randn(2, dim))
    return extra, specs, tuple(example)


def decoder_module(vae: Any) -> Any:
    """A traceable ``vae.decode`` (AutoencoderKL or TAESD): latents in, image out."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vae = vae

        def forward(self, z: Any) -> Any:
            return self.vae.decode(z, return_dict=False)[0]

    return Wrapped().eval()


class OvModel:
    """One converted module: IR on disk, compiled lazily per static input shape.

    ``dynamic`` maps an input's index to ``(axis, usual size)``: a call whose size on that
    axis is the usual one gets a static compile; any other size runs on a compile with
    that axis dynamic, shared by all of them (see :func:`compile_key`).
    """

    def __init__(self, ir: Path, precision: str,
                 dynamic: dict[int, tuple[int, int]] | None = None) -> None:
        ov = import_openvino()
        self.core = ov.Core()
        self.ir = ir
        self.name = ir.stem
        self.precision = precision
        self.dynamic = dict(dynamic or {})
        self._compiled: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, *arrays: Any) -> Any:
        key = compile_key([a.shape for a in arrays], self.dynamic)
        with self._lock:  # an infer request is not re-entrant
            request = self._compiled.get(key)
            if request is None:
                request = self._compile(key)
            else:
                self._compiled.move_to_end(key)
            result = request.infer(list(arrays), share_inputs=True)
            return result[0].copy()

    @property
    def model(self) -> Any:
        """The IR, read afresh (weights memory-mapped from the ``.bin``). Not kept between
        compiles: a held model pins the pages a compile touched, a second copy of the
        weights beside the compiled one."""
        return self.core.read_model(str(self.ir))

    def release(self) -> None:
        """Drop the compiled shapes (their memory); they recompile on next use."""
        with self._lock:
            self._compiled.clear()

    def _compile(self, key: tuple[Any, ...]) -> Any:
        started = time.monotonic()
        model = self.model
        model.reshape({i: list(shape) for i, shape in enumerate(key)})  # -1: stays dynamic
        compiled = self.core.compile_model(
            model, "CPU", {"INFERENCE_PRECISION_HINT": self.precision,
                           "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        del model, compiled  # the request keeps what it needs; the IR's pages go
        release_heap()  # the compile's temporary weight copies
        # The plugin keeps the IR's .bin mapped with every page the compile read still
        # resident (1.6 GiB for SD1.5's UNet), though inference reads its own copy:
        # measured, the pages stayed out over the next images.
        drop_mapped_pages(self.ir.with_suffix(".bin"))
        self._compiled[key] = request
        while len(self._compiled) > MAX_SHAPES:
            self._compiled.popitem(last=False)
        log.info("OpenVINO compiled %s for %s in %.1f s", self.name, key,
                 time.monotonic() - started)
        return request


def compile_key(shapes: Sequence[Sequence[int]], dynamic: dict[int, tuple[int, int]]
                ) -> tuple[tuple[int, ...], ...]:
    """The shapes an :class:`OvModel` compiles for a call with input ``shapes``: as given,
    except an axis of ``dynamic`` at other than its usual size becomes -1 (dynamic)."""
    key = []
    for i, shape in enumerate(shapes):
        axis, usual = dynamic.get(i, (-1, 0))
        key.append(tuple(-1 if a == axis and int(d) != usual else int(d)
                         for a, d in enumerate(shape)))
    return tuple(key)


def convert(module: Any, example: tuple[Any, ...], specs: list[tuple[list[int], Any]],
            target: Path) -> None:
    """Trace ``module`` to OpenVINO IR at ``target`` (``.xml`` + ``.bin``), atomically."""
    import torch

    ov = import_openvino()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.stem}.{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        inputs = [(ov.PartialShape(shape), getattr(ov.Type, kind)) for shape, kind in specs]
        with torch.no_grad():
            model = ov.convert_model(module, example_input=example, input=inputs)
        ov.save_model(model, str(tmp / target.name))  # weights stored as fp16
        del model
        for suffix in (".bin", ".xml"):  # the .xml last: its presence means "complete"
            (tmp / target.name).with_suffix(suffix).replace(target.with_suffix(suffix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cache_key(identity: Sequence[str], part: str, config: Any) -> str:
    """A folder name that changes with the model, its config, this module and OpenVINO."""
    ov = import_openvino()
    body = json.dumps([list(identity), part, dict(config), IR_VERSION, ov.__version__],
                      sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def prune_cache(root: Path, keep: int = 3) -> None:
    """Keep the ``keep`` most recently used model folders (each SD1.5 is ~2 GB)."""
    if not root.is_dir():
        return
    folders = sorted((p for p in root.iterdir() if p.is_dir()),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in folders[keep:]:
        log.info("removing old OpenVINO cache %s", old)
        shutil.rmtree(old, ignore_errors=True)


class OvRoute:
    """Installs itself as ``module.<method>`` and sends what OpenVINO can serve there.

    ``accepts(args, kwargs)`` → positional numpy inputs, or None to run torch;
    ``wrap(array, args, kwargs)`` turns OpenVINO's output back into what callers expect.
    """

    def __init__(self, module: Any, method: str, model: OvModel,
                 accepts: Callable[[tuple[Any, ...], dict[str, Any]], list[Any] | None],
                 wrap: Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]) -> None:
        self.module, self.method, self.model = module, method, model
        self.eager: Callable[..., Any] = getattr(module, method)
        self.accepts, self.wrap = accepts, wrap
        self.failed: str | None = None
        self.paused = False
        self.calls = 0
        # called before the torch code runs: puts released torch weights back
        self.before_eager: Callable[[], None] | None = None
        setattr(module, method, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None and not self.paused:
            feed = self.accepts(args, kwargs)
            if feed is not None:
                try:
                    out = self.model(*feed)
                except Exception as err:  # OpenVINO is an optimisation, never a failure
                    self.failed = f"{type(err).__name__}: {err}"
                    log.warning("OpenVINO %s failed (%s); using torch from now on",
                                self.method, self.failed)
                else:
                    self.calls += 1
                    return self.wrap(out, args, kwargs)
        if self.before_eager is not None:
            self.before_eager()
        return self.eager(*args, **kwargs)

    def uninstall(self) -> None:
        setattr(self.module, self.method, self.eager)
