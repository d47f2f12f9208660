"""ControlNet units in the infotext, the way A1111's sd-webui-controlnet extension writes them.

One entry per unit, quoted as a whole (its value holds ``,`` and ``:``)::

    ControlNet 0: "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1,
    Resize Mode: Crop and Resize, Guidance Start: 0, Guidance End: 1, ..."

:func:`controlnet_params` writes them from a request's units (an engine that knows the
model's hash writes the same keys into ``extra`` first and wins); :func:`parse_controlnet`
reads them back from a parsed infotext. The control image itself is never in the text (A1111
does not store it either), so reading gives the settings, not a runnable unit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tools.core.request import ControlUnit, ImageRequest

KEY = re.compile(r"^ControlNet \d+$")
_MODEL_HASH = re.compile(r"^(?P<name>.*?)\s*\[(?P<hash>[0-9a-fA-F]{6,64})\]$")
_FIELD = re.compile(r"\s*([\w][\w \-/]*):\s*([^,]*)(?:,|$)")


@dataclass(frozen=True)
class ControlSettings:
    """One unit as written in an infotext: no image, the model by name (and hash)."""

    module: str
    model: str
    model_hash: str = ""
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0

    def describe(self) -> str:
        """``canny → control_v11p_sd15_canny, weight 1, steps 0–1`` for a chat card."""
        return (f"{self.module} → {self.model or '?'}, weight {self.weight:g}, "
                f"{self.guidance_start:g}–{self.guidance_end:g}")


def _num(value: float) -> str:
    return f"{value:g}"


def unit_text(unit: ControlUnit, model_label: str | None = None) -> str:
    """The unquoted value of one ``ControlNet N`` entry (A1111's field order)."""
    model = model_label if model_label is not None else (unit.model or "None")
    fields = {
        "Module": unit.module,
        "Model": model,
        "Weight": _num(unit.weight),
        "Resize Mode": "Crop and Resize",
        "Processor Res": 512,
        "Threshold A": 100 if unit.module == "canny" else 0.5,
        "Threshold B": 200 if unit.module == "canny" else 0.5,
        "Guidance Start": _num(unit.guidance_start),
        "Guidance End": _num(unit.guidance_end),
        "Pixel Perfect": "False",
        "Control Mode": "Balanced",
    }
    return ", ".join(f"{k}: {v}" for k, v in fields.items())


def controlnet_params(request: ImageRequest) -> dict[str, str]:
    """``{"ControlNet 0": "Module: …", …}`` for the request's units (model names only)."""
    return {f"ControlNet {i}": unit_text(u) for i, u in enumerate(request.controls)}


def _float(fields: dict[str, str], key: str, default: float) -> float:
    try:
        return float(fields.get(key, default))
    except ValueError:
        return default


def parse_unit(text: str) -> ControlSettings | None:
    """One entry's value back into settings; None when it names no module."""
    fields = {k.strip(): v.strip() for k, v in _FIELD.findall(text)}
    module = fields.get("Module", "").strip()
    if not module:
        return None
    model, model_hash = fields.get("Model", "").strip(), ""
    if (m := _MODEL_HASH.match(model)) is not None:
        model, model_hash = m.group("name"), m.group("hash")
    if model == "None":
        model = ""
    return ControlSettings(
        module=module, model=model, model_hash=model_hash,
        weight=_float(fields, "Weight", 1.0),
        guidance_start=_float(fields, "Guidance Start", 0.0),
        guidance_end=_float(fields, "Guidance End", 1.0),
    )


def parse_controlnet(params: dict[str, str]) -> list[ControlSettings]:
    """Every ``ControlNet N`` entry of a parsed infotext, in unit order."""
    units = []
    for key in sorted((k for k in params if KEY.match(k)), key=lambda k: int(k.split()[1])):
        if (unit := parse_unit(params[key])) is not None:
            units.append(unit)
    return units
