"""Quick / Balanced / Full, chosen for this machine from one measured UNet step.

After the first picture (the model is loaded then, and OpenVINO compiled) the engine
times one UNet call at the working size, with and without CFG's doubled batch, and
keeps the figures in ``<data dir>/machine_speed.json`` per model, size and runtime. From
them :func:`choose` estimates each preset's seconds per picture and picks the best one
that is quick enough to use interactively; :func:`explain` says why, in the person's
language ("This computer makes a full-quality picture in about 40 s; quick previews take
about 1 s").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from tools.core.messages import msg

log = logging.getLogger(__name__)

Preset = Literal["quick", "balanced", "full"]
PRESETS: tuple[Preset, ...] = ("quick", "balanced", "full")
CACHE = "machine_speed.json"
FULL_STEPS = 20  # the full preset: the model's usual steps with CFG
BALANCED_STEPS = 8  # a few-step adapter at its upper end, CFG 1.5 (LCM LoRA card: 1–2)
BALANCED_CFG = 1.5
QUICK_OVERHEAD = 1.15  # text encoder, scheduler and TAESD on top of the UNet calls
FULL_OVERHEAD = 1.10  # the full VAE decode on top of 20 CFG steps
INTERACTIVE_FULL_S = 20.0  # a full picture this quick is the default
INTERACTIVE_BALANCED_S = 12.0


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one UNet call at ``size``: one latent, and CFG's batch of two."""

    size: int
    single_s: float
    cfg_s: float
    quick_steps: int = 4


@dataclass(frozen=True)
class Choice:
    """The preset picked and the estimates behind it (seconds per picture)."""

    preset: Preset
    full_s: float
    balanced_s: float
    quick_s: float


def overrides(preset: str) -> dict[str, Any]:
    """Request fields for a preset ("" or unknown: none)."""
    if preset == "quick":
        return {"fast": True}
    if preset == "balanced":
        return {"fast": True, "steps": BALANCED_STEPS, "cfg_scale": BALANCED_CFG}
    if preset == "full":
        return {"fast": False}
    return {}


def choose(times: StepTimes) -> Choice:
    """Full where a full picture is interactive, else Balanced where that is, else Quick."""
    full = FULL_STEPS * times.cfg_s * FULL_OVERHEAD
    balanced = BALANCED_STEPS * times.cfg_s * QUICK_OVERHEAD
    quick = times.quick_steps * times.single_s * QUICK_OVERHEAD
    preset: Preset = ("full" if full <= INTERACTIVE_FULL_S else
                      "balanced" if balanced <= INTERACTIVE_BALANCED_S else "quick")
    return Choice(preset, full, balanced, quick)


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def explain(choice: Choice, lang: str) -> str:
    """Why this preset, in ``lang``."""
    return msg("preset_chosen", lang, full=_seconds(choice.full_s),
               quick=_seconds(choice.quick_s), preset=label(choice.preset, lang))


def label(preset: Preset, lang: str) -> str:
    """A preset's name in ``lang``."""
    if preset == "quick":
        return msg("preset_quick", lang)
    if preset == "balanced":
        return msg("preset_balanced", lang)
    return msg("preset_full", lang)


def cache_key(model_key: tuple[str, ...], size: int, runtime: str) -> str:
    return json.dumps([list(model_key), size, runtime])


def load(data_dir: Path, key: str) -> StepTimes | None:
    """The cached measurement for ``key``, if any."""
    try:
        data = json.loads((data_dir / CACHE).read_text(encoding="utf-8"))
        return StepTimes(**data[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest(data_dir: Path) -> StepTimes | None:
    """The most recent measurement of any model (what the panel starts from)."""
    try:
        data = json.loads((data_dir / CACHE).read_text(encoding="utf-8"))
        return StepTimes(**data[data["_latest"]])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(data_dir: Path, key: str, times: StepTimes) -> None:
    path = data_dir / CACHE
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    data[key] = asdict(times)
    data["_latest"] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)


def measure(unet: Any, size: int, quick_steps: int, repeat: int = 2) -> StepTimes:
    """Time one UNet call at ``size`` (the best of ``repeat`` after a first, compiling,
    call), with batch 1 and CFG's batch 2. Goes through whatever serves the UNet
    (OpenVINO's route or torch)."""
    import torch

    cfg = unet.config
    side = size // 8
    dim = int(cfg.cross_attention_dim)
    extra: dict[str, Any] = {}
    if getattr(cfg, "addition_embed_type", None) == "text_time":
        pooled = int(cfg.projection_class_embeddings_input_dim) - 6 * int(
            cfg.addition_time_embed_dim)
        extra = {"text_embeds": pooled, "time_ids": 6}
    cond = int(getattr(cfg, "time_cond_proj_dim", None) or 0)

    def once(batch: int) -> float:
        sample = torch.randn(batch, int(cfg.in_channels), side, side)
        hidden = torch.randn(batch, 77, dim)
        added = {k: torch.randn(batch, n) for k, n in extra.items()} or None
        best = float("inf")
        with torch.no_grad():
            for i in range(repeat + 1):
                t0 = time.perf_counter()
                unet(sample, torch.tensor(500.0), hidden, added_cond_kwargs=added,
                     timestep_cond=torch.randn(batch, cond) if cond else None,
                     return_dict=False)
                if i:  # the first call may compile this shape
                    best = min(best, time.perf_counter() - t0)
        return best

    return StepTimes(size, once(1), once(2), quick_steps)


def measure_once(data_dir: Path, loaded: Any, runtime: str, quick_steps: int) -> bool:
    """On a CPU, after a picture: measure this model at its native size unless done
    before (the cache), or unless LoRA adapters make the UNet run unlike usual. True when
    a new measurement was saved."""
    if loaded.device != "cpu" or loaded.loras.loaded:
        return False
    if loaded.openvino is not None and any(r.paused for r in loaded.openvino.routes):
        return False
    size = 1024 if loaded.family == "sdxl" else 512
    key = cache_key(loaded.key, size, runtime)
    if load(data_dir, key) is not None:
        return False
    try:
        times = measure(loaded.pipe.unet, size, quick_steps)
    except Exception as err:  # a measurement is a nicety, never a failure
        log.warning("could not time a UNet step: %s: %s", type(err).__name__, err)
        return False
    save(data_dir, key, times)
    log.info("this machine: one UNet step at %d² takes %.2f s (%.2f s with CFG)", size,
             times.single_s, times.cfg_s)
    return True


def measure_in_background(settings: Any, loaded: Any, source: Any, lock: threading.Lock,
                          still_current: Callable[[], bool],
                          on_saved: Callable[[], None] | None = None) -> None:
    """Time one UNet step of ``loaded`` on a thread, under the engine's run ``lock`` (so it
    never overlaps a job), unless another model is resident by then; ``on_saved`` is
    called (on that thread) once a new measurement is saved."""
    from tools.engines.diffusers.fastmodels.profile import fast_recipe

    steps = settings.fast_steps or fast_recipe(settings, source).family.steps
    runtime = "openvino" if loaded.openvino is not None else "torch"

    def run() -> None:
        with lock:
            saved = still_current() and measure_once(settings.data_dir, loaded, runtime, steps)
        if saved and on_saved is not None:  # outside the lock: the next job may start
            on_saved()

    threading.Thread(target=run, name="egaki-measure", daemon=True).start()
