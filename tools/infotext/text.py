"""The AUTOMATIC1111 ``parameters`` infotext: write it, parse it, turn it into a request.

The text we write is the one A1111 (v1.9+) writes in ``modules/processing.py``
``create_infotext``::

    <prompt, possibly several lines>
    Negative prompt: <negative>            (line omitted when the negative is empty)
    Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 123, ...

Values containing ``,``, ``:`` or a newline are written as JSON strings, exactly like
A1111's ``infotext_utils.quote``. Parsing follows ``parse_generation_parameters``: the
last line is the settings line only if it holds at least three ``key: value`` pairs.

Metadata is *data*, never instructions: the parser returns strings and dicts, never
evaluates anything, and every text is size-capped before it is parsed. Saving and
reading PNGs is :mod:`tools.infotext.png`; the prompt syntax inside the text is
:mod:`tools.infotext.prompt_syntax`.

:func:`reuse_infotext` turns a parsed text into a request and says what reusing it
changes: a size that is not a multiple of 8 is snapped to the nearest one (as A1111's own
latents are), and the settings Egaki does not honour are listed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.messages import msg
from tools.core.request import ImageRequest, parse_request
from tools.core.samplers import canonical_sampler
from tools.infotext.controlnet import KEY as CONTROLNET_KEY
from tools.infotext.controlnet import ControlSettings, controlnet_params, parse_controlnet
from tools.infotext.hires import HIRES_KEYS, INPAINT_KEYS, hires_from_params, hires_params
from tools.infotext.prompt_syntax import Unsupported, find_unsupported

MAX_INFOTEXT_CHARS = 64_000  # two 8000-char prompts plus a generous settings line

# Copied semantics from A1111 infotext_utils.py (re_param_code / re_imagesize).
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
# A1111 <1.9 folded the schedule into the sampler name; newer versions split it out.
_SCHEDULE_SUFFIXES = ("Karras", "Exponential")
# Settings a reused infotext honours, and entries that only describe the picture (hashes
# of files it used, the writer's version): neither is listed as ignored.
HONOURED = frozenset({"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size",
                      "Denoising strength", "Clip skip", "Pad conds"}) | HIRES_KEYS
DESCRIPTIVE = frozenset({"Model hash", "Lora hashes", "TI hashes", "Version", "VAE hash",
                         "ControlNet runtime"}) | INPAINT_KEYS


def _version() -> str:
    try:
        return importlib_metadata.version("egaki")
    except importlib_metadata.PackageNotFoundError:
        return "0"


# Not a parseable version number on purpose: A1111's backcompat code would otherwise
# treat it as an ancient webui release and switch on legacy behaviours when pasting.
VERSION_TAG = f"Egaki {_version()}"


def quote(value: object) -> str:
    """A1111's ``quote``: JSON-encode values that contain ``,``, ``:`` or a newline."""
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """A1111's ``unquote``: decode a JSON string value, leave anything else alone."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _num(value: float) -> str:
    """Numbers the way people type them: 7 not 7.0, 0.75 stays 0.75."""
    return f"{value:g}"


def split_sampler(name: str) -> tuple[str, str]:
    """``"DPM++ 2M Karras"`` → ``("DPM++ 2M", "Karras")``; others get ``"Automatic"``."""
    for suffix in _SCHEDULE_SUFFIXES:
        if name.endswith(" " + suffix):
            return name[: -len(suffix) - 1], suffix
    return name, "Automatic"


def _lora_tags(request: ImageRequest) -> str:
    tags = [
        f"<lora:{lora.name}:{_num(lora.weight)}>"
        for lora in request.loras
        if f"<lora:{lora.name}:" not in request.prompt
    ]
    return " ".join(tags)


def format_infotext(gen: GeneratedImage, *, legacy_sampler: bool = False) -> str:
    """The A1111 ``parameters`` text for one generated image.

    ``legacy_sampler=True`` writes ``Sampler: DPM++ 2M Karras`` (A1111 < 1.9) instead of
    the modern ``Sampler: DPM++ 2M, Schedule type: Karras``. LoRAs from ``request.loras``
    are appended to the prompt as ``<lora:name:weight>`` tags, as A1111 users write them.
    """
    req = gen.request
    prompt = req.prompt
    if tags := _lora_tags(req):
        prompt = f"{prompt} {tags}"

    params: dict[str, object | None] = {"Steps": req.steps}
    if legacy_sampler:
        params["Sampler"] = req.sampler
    else:
        params["Sampler"], params["Schedule type"] = split_sampler(req.sampler)
    params |= {
        "CFG scale": _num(req.cfg_scale),
        "Seed": gen.seed,
        "Size": f"{gen.image.width}x{gen.image.height}",
        "Model hash": gen.model_hash or None,
        "Model": gen.model_name or None,
        "Denoising strength": _num(req.strength) if req.mode != "txt2img" else None,
        "Clip skip": req.clip_skip if (req.clip_skip or 1) > 1 else None,  # as A1111
    }
    params |= hires_params(req)  # first-pass size, the second pass's denoising
    # Engine extras (e.g. "Lora hashes") go where A1111 puts extra_generation_params.
    params |= {k: v for k, v in gen.extra.items() if k not in params}
    params |= {k: v for k, v in controlnet_params(req).items() if k not in params}
    params["Version"] = VERSION_TAG

    settings = ", ".join(
        k if k == v else f"{k}: {quote(v)}" for k, v in params.items() if v is not None
    )
    negative = f"\n{_NEGATIVE} {req.negative_prompt}" if req.negative_prompt else ""
    return f"{prompt}{negative}\n{settings}".strip()


@dataclass(frozen=True)
class ParsedInfotext:
    """An A1111 infotext split into prompt, negative and the raw ``key → value`` dict."""

    prompt: str
    negative_prompt: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def has_settings(self) -> bool:
        return bool(self.params)

    @property
    def size(self) -> tuple[int, int] | None:
        m = _RE_SIZE.match(self.params.get("Size", ""))
        return (int(m.group(1)), int(m.group(2))) if m else None

    @property
    def lora_hashes(self) -> dict[str, str]:
        """``Lora hashes: "a: 123, b: 456"`` → ``{"a": "123", "b": "456"}``."""
        out: dict[str, str] = {}
        for part in self.params.get("Lora hashes", "").split(","):
            name, sep, value = part.partition(":")
            if sep and name.strip():
                out[name.strip()] = value.strip()
        return out


def parse_infotext(text: str) -> ParsedInfotext:
    """Parse an A1111 ``parameters`` text (same rules as A1111's own parser).

    Raises :class:`InvalidRequest` for empty, oversized or binary text. Text without a
    settings line is returned as a prompt with empty ``params``, as A1111 pastes it.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest.of("infotext_empty")
    if len(text) > MAX_INFOTEXT_CHARS:
        raise InvalidRequest.of("infotext_too_long", chars=len(text), limit=MAX_INFOTEXT_CHARS)
    if "\x00" in text:
        raise InvalidRequest.of("infotext_binary")

    *lines, last = text.strip().replace("\r\n", "\n").split("\n")
    if len(_RE_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""

    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(_NEGATIVE):
            in_negative = True
            line = line[len(_NEGATIVE) :].strip()
        (negative if in_negative else prompt).append(line)

    params: dict[str, str] = {}
    for key, value in _RE_PARAM.findall(last):
        params[key.strip()] = unquote(value.strip())
    return ParsedInfotext("\n".join(prompt), "\n".join(negative), params)


def _number(parsed: ParsedInfotext, key: str, kind: type[int] | type[float]) -> Any:
    raw = parsed.params.get(key)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise InvalidRequest.of("infotext_not_a_number", key=key, value=raw) from None


def snap_to_8(value: int) -> int:
    """The nearest multiple of 8, halves going down (A1111's latents floor the size)."""
    return (value + 3) // 8 * 8


@dataclass(frozen=True)
class Reuse:
    """An infotext as a request, and what reusing it changes or leaves out.

    ``snapped``: (the size written, the size used) when that is not a multiple of 8;
    ``ignored``: infotext settings Egaki does not honour; ``unsupported``: prompt syntax
    its engine reads as plain words.
    """

    request: ImageRequest
    snapped: tuple[tuple[int, int], tuple[int, int]] | None = None
    ignored: list[str] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    controls: list[ControlSettings] = field(default_factory=list)


def reuse_infotext(parsed: ParsedInfotext, *, with_model: bool = False) -> Reuse:
    """Turn a parsed infotext into a request (validated, errors teach), with notes.

    ``<lora:…>`` tags stay in the prompt. ``Sampler`` + ``Schedule type`` are folded by
    :func:`canonical_sampler`; ``Size`` gives width/height (snapped to multiples of 8);
    ``Denoising strength`` gives ``strength``; ``Clip skip`` gives ``clip_skip`` (1 when
    absent, as A1111 reads it). The model name is only copied when ``with_model`` is
    set, because a checkpoint named in someone else's PNG may not exist here.
    """
    if not parsed.prompt.strip():
        raise InvalidRequest.of("infotext_no_prompt")
    data: dict[str, object] = {"prompt": parsed.prompt, "negative_prompt": parsed.negative_prompt,
                               "clip_skip": 1}
    for key, name, kind in (
        ("Steps", "steps", int),
        ("CFG scale", "cfg_scale", float),
        ("Seed", "seed", int),
        ("Denoising strength", "strength", float),
        ("Clip skip", "clip_skip", int),
    ):
        value = _number(parsed, key, kind)
        if value is not None:
            data[name] = value
    snapped = None
    if (size := parsed.size) is not None:
        data["width"], data["height"] = used = (snap_to_8(size[0]), snap_to_8(size[1]))
        snapped = (size, used) if used != size else None
    elif "Size" in parsed.params:
        raise InvalidRequest.of("infotext_bad_size", value=parsed.params["Size"])
    if sampler := parsed.params.get("Sampler", "").strip():
        schedule = parsed.params.get("Schedule type", "").strip() or None
        if schedule and sampler.casefold().endswith(schedule.casefold()):
            schedule = None
        try:
            data["sampler"] = canonical_sampler(sampler, schedule)
        except ValueError as err:
            shown = f"{sampler} ({schedule})" if schedule else sampler
            raise InvalidRequest.of(
                "infotext_unknown_sampler", sampler=shown, reason=str(err)
            ) from err
    if hires := hires_from_params(parsed.params):
        data |= hires
        data.pop("strength", None)  # the second pass's, now in hires
    if with_model and parsed.params.get("Model"):
        data["model"] = parsed.params["Model"]
    return Reuse(
        request=parse_request(data),
        snapped=snapped,
        ignored=_ignored(parsed.params, with_model),
        unsupported=find_unsupported(parsed.prompt) + find_unsupported(parsed.negative_prompt),
        controls=parse_controlnet(parsed.params),
    )


def _ignored(params: dict[str, str], with_model: bool) -> list[str]:
    """The infotext settings a reuse leaves out (in the order written)."""
    out = []
    for key, value in params.items():
        if key in HONOURED or key in DESCRIPTIVE or (key == "Model" and with_model):
            continue
        if CONTROLNET_KEY.match(key):
            continue  # told apart by reuse_notes: it needs a control image
        if key == "Emphasis" and value.strip() == "Original":
            continue  # A1111's default weighting, which Egaki's engine uses
        out.append(key)
    return out


def reuse_notes(reuse: Reuse | None, lang: str, *, limit: int = 6) -> list[str]:
    """What a person should know before reusing an infotext, one sentence each (plain
    text, in ``lang``): a snapped size, settings left out, syntax read as plain words."""
    notes: list[str] = []
    if reuse is None:
        return notes
    if reuse.snapped is not None:
        (width, height), (new_width, new_height) = reuse.snapped
        notes.append(msg("reuse_size_snapped", lang, width=width, height=height,
                         new_width=new_width, new_height=new_height))
    if reuse.ignored:
        shown = [k[:40] for k in reuse.ignored[:limit]] + ["…"] * (len(reuse.ignored) > limit)
        notes.append(msg("reuse_ignored", lang, fields=", ".join(shown)))
    if reuse.controls:
        units = "; ".join(u.describe() for u in reuse.controls)
        notes.append(msg("reuse_controlnet", lang, units=units))
    if reuse.unsupported:
        found = list(dict.fromkeys(u.text[:60] for u in reuse.unsupported))
        shown = found[:limit] + ["…"] * (len(found) > limit)
        notes.append(msg("prompt_syntax_unsupported", lang, found=", ".join(shown)))
    return notes


def infotext_to_request(parsed: ParsedInfotext, *, with_model: bool = False) -> ImageRequest:
    """Just the request of :func:`reuse_infotext`."""
    return reuse_infotext(parsed, with_model=with_model).request
