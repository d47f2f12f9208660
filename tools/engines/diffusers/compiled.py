"""A compiled UNet that never blocks the first image.

Eager diffusers on a GPU is bound by Python launch overhead; ``torch.compile`` with
``mode="reduce-overhead"`` (CUDA graphs) removes it, but costs a minute or two per shape.
:class:`CompiledUnet` routes each UNet call: shapes already warmed go to the compiled
function, everything else runs eager (so unusual sizes never trigger a recompile). A
shape is the latents' *and* the prompt's: a 154-token prompt (two 77-position chunks)
at a warmed size still runs eager unless that length was warmed too. A
background thread warms the common shapes after load. Inductor's caches live under the
data dir, so a restart reuses the compiled artefacts. Any compile or run failure of the
compiled path logs its reason and falls back to eager for good — never a failed request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Shape = tuple[int, int, int]  # (batch incl. CFG doubling, height px, width px)
PROMPT_POSITIONS = 77  # one 75-token chunk plus BOS/EOS: what most prompts encode to
COMMON_SIZES = {
    "sd15": [(512, 512), (512, 768), (768, 512)],
    "sdxl": [(1024, 1024), (832, 1216), (1216, 832)],
}


def use_inductor_cache(cache_dir: Path) -> None:
    """Point Inductor's on-disk caches (FX graph + AOTAutograd) at ``cache_dir``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Inductor reads this on every cache access; set it even if torch defaulted it earlier.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
    except Exception as err:  # pragma: no cover - older torch
        log.info("inductor cache config unavailable: %s", err)


def common_shapes(family: str, sizes: Iterable[str] = (), cfg: bool = True) -> list[Shape]:
    """The shapes worth compiling ahead: ``sizes`` ("WxH") or the family's native sizes,
    at batch 1 (×2 for classifier-free guidance)."""
    batch = 2 if cfg else 1
    pairs = [tuple(int(v) for v in s.lower().split("x")) for s in sizes]
    chosen = pairs or COMMON_SIZES.get(family, COMMON_SIZES["sd15"])
    return [(batch, h, w) for w, h in chosen]


class CompiledUnet:
    """Installs itself as ``unet.forward`` and routes calls eager/compiled by shape."""

    def __init__(self, unet: Any, *, mode: str = "reduce-overhead", warm_calls: int = 3) -> None:
        import torch

        self.unet = unet
        self.eager: Callable[..., Any] = unet.forward
        self.compiled: Callable[..., Any] = torch.compile(self.eager, mode=mode, dynamic=False)
        self.mode = mode
        self.warm_calls = warm_calls
        self.ready: set[tuple[Any, ...]] = set()
        self.failed: str | None = None
        self.warm_seconds: dict[Shape, float] = {}
        self._lock = threading.Lock()  # one compiled call at a time (CUDA graph replay)
        self._thread: threading.Thread | None = None
        self.paused = False  # e.g. while LoRA adapters change the module structure
        unet.forward = self.route

    @staticmethod
    def key(sample: Any, hidden: Any = None) -> tuple[Any, ...]:
        """What a compiled graph is specialised on: latents and prompt length (77·k)."""
        positions = int(hidden.shape[1]) if hidden is not None else PROMPT_POSITIONS
        return (tuple(sample.shape), str(sample.dtype), str(sample.device), positions)

    def route(self, sample: Any, timestep: Any, *args: Any, **kwargs: Any) -> Any:
        """The UNet's forward: compiled for warmed shapes, eager otherwise."""
        hidden = args[0] if args else kwargs.get("encoder_hidden_states")
        usable = (self.failed is None and not self.paused
                  and self.key(sample, hidden) in self.ready)
        if usable and self._lock.acquire(False):
            try:
                t = _as_timestep(timestep, sample)  # one dtype: samplers differ (int/float)
                out = self.compiled(sample, t, *args, **kwargs)
                return _clone_outputs(out)  # CUDA-graph outputs are overwritten next replay
            except Exception as err:
                self._fail(f"compiled UNet failed at run time: {type(err).__name__}: {err}")
            finally:
                self._lock.release()
        return self.eager(sample, timestep, *args, **kwargs)

    def _fail(self, reason: str) -> None:
        self.failed = reason
        self.ready.clear()
        log.warning("%s; using the eager UNet from now on", reason)

    # --- warm-up -------------------------------------------------------------------------

    def warm(self, shapes: Iterable[Shape], *, background: bool = True,
             positions: Iterable[int] = (PROMPT_POSITIONS,)) -> None:
        """Compile ``shapes`` for prompts of ``positions`` (77 per 75-token chunk), in a
        daemon thread unless ``background`` is False."""
        todo = [(shape, n) for shape in shapes for n in positions]
        if background:
            self._thread = threading.Thread(
                target=self._warm_all, args=(todo,), name="egaki-unet-warmup", daemon=True
            )
            self._thread.start()
        else:
            self._warm_all(todo)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _warm_all(self, shapes: list[tuple[Shape, int]]) -> None:
        for shape, positions in shapes:
            if self.failed is not None:
                return
            try:
                self._warm_one(shape, positions)
            except Exception as err:
                log.debug("UNet compile traceback", exc_info=True)
                self._fail(f"compiling the UNet for {shape} failed: {type(err).__name__}: {err}")

    def _warm_one(self, shape: Shape, positions: int = PROMPT_POSITIONS) -> None:
        import torch

        sample, t, kwargs = dummy_inputs(self.unet, shape, positions)
        started = time.monotonic()
        with self._lock, torch.inference_mode():
            for _ in range(self.warm_calls):  # CUDA graphs record on a later call
                self.compiled(sample, _as_timestep(t, sample), **kwargs)
        self.warm_seconds[shape] = time.monotonic() - started
        self.ready.add(self.key(sample, kwargs["encoder_hidden_states"]))
        log.info("UNet compiled for %s, %d prompt positions, in %.0f s", shape, positions,
                 self.warm_seconds[shape])


def _clone_outputs(out: Any) -> Any:
    if isinstance(out, tuple):
        return tuple(o.clone() if hasattr(o, "clone") else o for o in out)
    sample = getattr(out, "sample", None)
    if sample is not None and hasattr(sample, "clone"):
        out.sample = sample.clone()
    return out


def _as_timestep(t: Any, sample: Any) -> Any:
    import torch

    return torch.as_tensor(t, device=sample.device, dtype=torch.float32)


def dummy_inputs(unet: Any, shape: Shape, positions: int = PROMPT_POSITIONS
                 ) -> tuple[Any, Any, dict[str, Any]]:
    """(sample, timestep, kwargs) exactly as the SD/SDXL pipelines call the UNet, with a
    prompt encoded to ``positions`` (77 per chunk)."""
    import torch

    batch, height, width = shape
    cfg = unet.config
    device, dtype = unet.device, unet.dtype
    scale = 8  # the VAE's downsampling: latents are 1/8 of the image
    sample = torch.randn(batch, cfg.in_channels, height // scale, width // scale,
                         device=device, dtype=dtype)
    added = None
    if cfg.addition_embed_type == "text_time":
        text_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        added = {
            "text_embeds": torch.randn(batch, text_dim, device=device, dtype=dtype),
            "time_ids": torch.tensor([[height, width, 0, 0, height, width]] * batch,
                                     device=device, dtype=dtype),
        }
    kwargs = {
        "encoder_hidden_states": torch.randn(batch, positions, cfg.cross_attention_dim,
                                             device=device, dtype=dtype),
        "timestep_cond": None,
        "cross_attention_kwargs": None,
        "added_cond_kwargs": added,
        "return_dict": False,
    }
    return sample, torch.tensor(999, device=device), kwargs
