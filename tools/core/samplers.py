"""AUTOMATIC1111 sampler names mapped to diffusers schedulers.

Users (and PNG infotexts) speak A1111 names such as "DPM++ 2M Karras"; diffusers wants a
scheduler class plus config overrides. The map is data so that engines and the request
validator share one source of truth. Newer A1111/Forge infotexts split the schedule type
("Sampler: DPM++ 2M, Schedule type: Karras"); :func:`canonical_sampler` folds that back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplerSpec:
    """How to build one A1111 sampler with diffusers."""

    scheduler: str
    config: dict[str, Any] = field(default_factory=dict)
    # LCM needs an LCM-distilled model or LoRA to look right; engines may warn.
    needs_lcm_model: bool = False


_K = {"use_karras_sigmas": True}

SAMPLERS: dict[str, SamplerSpec] = {
    "DPM++ 2M": SamplerSpec("DPMSolverMultistepScheduler"),
    "DPM++ 2M Karras": SamplerSpec("DPMSolverMultistepScheduler", _K),
    "DPM++ 2M SDE": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}
    ),
    "DPM++ 2M SDE Karras": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", **_K}
    ),
    "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler"),
    "DPM++ SDE Karras": SamplerSpec("DPMSolverSDEScheduler", _K),
    "DPM++ 2S a": SamplerSpec("DPMSolverSinglestepScheduler"),
    "DPM2": SamplerSpec("KDPM2DiscreteScheduler"),
    "DPM2 Karras": SamplerSpec("KDPM2DiscreteScheduler", _K),
    "DPM2 a": SamplerSpec("KDPM2AncestralDiscreteScheduler"),
    "DPM2 a Karras": SamplerSpec("KDPM2AncestralDiscreteScheduler", _K),
    "Euler": SamplerSpec("EulerDiscreteScheduler"),
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler"),
    "Heun": SamplerSpec("HeunDiscreteScheduler"),
    "LMS": SamplerSpec("LMSDiscreteScheduler"),
    "LMS Karras": SamplerSpec("LMSDiscreteScheduler", _K),
    "DDIM": SamplerSpec("DDIMScheduler"),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": SamplerSpec("UniPCMultistepScheduler"),
    "DEIS": SamplerSpec("DEISMultistepScheduler"),
    "LCM": SamplerSpec("LCMScheduler", needs_lcm_model=True),
    "TCD": SamplerSpec("TCDScheduler", needs_lcm_model=True),
}

DEFAULT_SAMPLER = "DPM++ 2M Karras"
_BY_FOLDED = {name.casefold().replace(" ", ""): name for name in SAMPLERS}


def canonical_sampler(name: str, schedule_type: str | None = None) -> str:
    """Return the canonical A1111 name, or raise ``ValueError`` listing the valid ones.

    Matching ignores case and spaces ("euler A" → "Euler a"); a separate schedule type
    ("Karras") is appended the way older A1111 names carried it.
    """
    raw = name.strip()
    if schedule_type and schedule_type.strip().lower() not in ("", "automatic", "normal"):
        raw = f"{raw} {schedule_type.strip()}"
    found = _BY_FOLDED.get(raw.casefold().replace(" ", ""))
    if found is None:
        choices = ", ".join(SAMPLERS)
        raise ValueError(f"Unknown sampler {name!r}. Choose one of: {choices}.")
    return found


def build_scheduler(name: str, base_config: Any) -> Any:
    """Instantiate the diffusers scheduler for ``name`` from a pipeline's scheduler config."""
    import diffusers  # local import: keep torch out of light modules' import time

    spec = SAMPLERS[canonical_sampler(name)]
    cls = getattr(diffusers, spec.scheduler)
    return cls.from_config(base_config, **spec.config)
