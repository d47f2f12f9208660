"""PNG metadata: write and read the AUTOMATIC1111 ``parameters`` infotext, recognise others.

The text we write is the one A1111 (v1.9+) writes in ``modules/processing.py``
``create_infotext``::

    <prompt, possibly several lines>
    Negative prompt: <negative>            (line omitted when the negative is empty)
    Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 123, ...

Values containing ``,``, ``:`` or a newline are written as JSON strings, exactly like
A1111's ``infotext_utils.quote``. Parsing follows ``parse_generation_parameters``: the
last line is the settings line only if it holds at least three ``key: value`` pairs.

Metadata is *data*, never instructions: readers return strings and dicts, never evaluate
anything, and every text is size-capped before it is parsed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.request import ImageRequest, parse_request
from tools.core.samplers import canonical_sampler

log = logging.getLogger(__name__)

MAX_INFOTEXT_CHARS = 64_000  # two 8000-char prompts plus a generous settings line
MAX_JSON_CHARS = 4_000_000  # ComfyUI workflows are big, but not this big
MAX_PNG_BYTES = 200 * 1024 * 1024

# Copied semantics from A1111 infotext_utils.py (re_param_code / re_imagesize).
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
# A1111 <1.9 folded the schedule into the sampler name; newer versions split it out.
_SCHEDULE_SUFFIXES = ("Karras", "Exponential")

Source = Literal["a1111", "comfyui", "fooocus"]


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
    }
    # Engine extras (e.g. "Lora hashes") go where A1111 puts extra_generation_params.
    params |= {k: v for k, v in gen.extra.items() if k not in params}
    params["Version"] = VERSION_TAG

    settings = ", ".join(
        k if k == v else f"{k}: {quote(v)}" for k, v in params.items() if v is not None
    )
    negative = f"\n{_NEGATIVE} {req.negative_prompt}" if req.negative_prompt else ""
    return f"{prompt}{negative}\n{settings}".strip()


def save_png(gen: GeneratedImage, path: str | os.PathLike[str], **format_kw: Any) -> Path:
    """Write ``gen.image`` to ``path`` with its infotext, atomically.

    The PNG goes to a temp file in the same folder and is then ``os.replace``-d into
    place, so a crash never leaves a half-written image where the gallery looks.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    info = PngInfo()
    info.add_text("parameters", format_infotext(gen, **format_kw))
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            gen.image.save(fh, format="PNG", pnginfo=info)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return target


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


def _invalid(en: str, ja: str) -> InvalidRequest:
    return InvalidRequest(en, ja)


def parse_infotext(text: str) -> ParsedInfotext:
    """Parse an A1111 ``parameters`` text (same rules as A1111's own parser).

    Raises :class:`InvalidRequest` for empty, oversized or binary text. Text without a
    settings line is returned as a prompt with empty ``params``, as A1111 pastes it.
    """
    if not isinstance(text, str) or not text.strip():
        raise _invalid(
            "That image has no generation parameters to read.",
            "この画像には生成パラメータがありません。",
        )
    if len(text) > MAX_INFOTEXT_CHARS:
        raise _invalid(
            f"The parameters text is {len(text):,} characters; the limit is "
            f"{MAX_INFOTEXT_CHARS:,}. It is probably not an A1111 infotext.",
            f"パラメータが長すぎます（{len(text):,} 文字、上限 {MAX_INFOTEXT_CHARS:,}）。",
        )
    if "\x00" in text:
        raise _invalid(
            "The parameters text contains binary data, not an A1111 infotext.",
            "パラメータにバイナリが含まれており、A1111 の形式ではありません。",
        )

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
        raise _invalid(
            f"The PNG says {key}: {raw!r}, which is not a number.",
            f"PNG の {key}: {raw!r} は数値ではありません。",
        ) from None


def infotext_to_request(parsed: ParsedInfotext, *, with_model: bool = False) -> ImageRequest:
    """Turn a parsed infotext into an :class:`ImageRequest` (validated, errors teach).

    ``<lora:…>`` tags stay in the prompt. ``Sampler`` + ``Schedule type`` are folded by
    :func:`canonical_sampler`; ``Size`` gives width/height; ``Denoising strength`` gives
    ``strength``. The model name is only copied when ``with_model`` is set, because a
    checkpoint named in someone else's PNG may not exist here.
    """
    if not parsed.prompt.strip():
        raise _invalid(
            "The PNG's parameters have no prompt.",
            "PNG のパラメータにプロンプトがありません。",
        )
    data: dict[str, object] = {"prompt": parsed.prompt, "negative_prompt": parsed.negative_prompt}
    for key, name, kind in (
        ("Steps", "steps", int),
        ("CFG scale", "cfg_scale", float),
        ("Seed", "seed", int),
        ("Denoising strength", "strength", float),
    ):
        value = _number(parsed, key, kind)
        if value is not None:
            data[name] = value
    if (size := parsed.size) is not None:
        data["width"], data["height"] = size
    elif "Size" in parsed.params:
        raise _invalid(
            f"The PNG says Size: {parsed.params['Size']!r}; expected WIDTHxHEIGHT.",
            f"PNG の Size: {parsed.params['Size']!r} は 幅x高さ の形式ではありません。",
        )
    if sampler := parsed.params.get("Sampler", "").strip():
        schedule = parsed.params.get("Schedule type", "").strip() or None
        if schedule and sampler.casefold().endswith(schedule.casefold()):
            schedule = None
        try:
            data["sampler"] = canonical_sampler(sampler, schedule)
        except ValueError as err:
            shown = f"{sampler} ({schedule})" if schedule else sampler
            raise _invalid(
                f"The PNG was made with sampler {shown!r}, which Egaki doesn't have. {err}",
                f"PNG のサンプラー {shown!r} は Egaki にはありません。{err}",
            ) from err
    if with_model and parsed.params.get("Model"):
        data["model"] = parsed.params["Model"]
    return parse_request(data)


# --- reading PNGs -------------------------------------------------------------------------


@dataclass(frozen=True)
class PngMetadata:
    """What a PNG says about how it was made, and which tool said it."""

    source: Source
    text: str  # the raw chunk text (A1111 infotext, or JSON)
    parsed: ParsedInfotext | None = None  # A1111-style text only
    data: dict[str, Any] | None = None  # decoded JSON (ComfyUI prompt/workflow, Fooocus)


def _load_json(text: str) -> Any:
    if len(text) > MAX_JSON_CHARS:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _text_chunks(source: str | os.PathLike[str] | Image.Image) -> dict[str, str]:
    if isinstance(source, Image.Image):
        return _chunks_of(source)
    path = Path(source)
    if path.stat().st_size > MAX_PNG_BYTES:
        raise _invalid(
            f"{path.name} is larger than {MAX_PNG_BYTES // 2**20} MB; not reading it.",
            f"{path.name} は {MAX_PNG_BYTES // 2**20} MB を超えるため読み込みません。",
        )
    with Image.open(path) as im:
        return _chunks_of(im)


def _chunks_of(im: Image.Image) -> dict[str, str]:
    chunks = {k: v for k, v in im.info.items() if isinstance(k, str) and isinstance(v, str)}
    if not chunks and im.format == "PNG":
        # Text after IDAT is only seen once the image is loaded (PIL bounds its size).
        with contextlib.suppress(OSError, ValueError, Image.DecompressionBombError):
            chunks = {k: str(v) for k, v in getattr(im, "text", {}).items()}
    return chunks


def read_png_metadata(source: str | os.PathLike[str] | Image.Image) -> PngMetadata | None:
    """Recognise A1111, Fooocus (JSON ``parameters``) and ComfyUI (``prompt``/``workflow``).

    Returns ``None`` when the image carries none of them or the file is not an image.
    """
    try:
        chunks = _text_chunks(source)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        log.info("no readable PNG metadata: %s", err)
        return None

    params = chunks.get("parameters")
    if params is not None and len(params) <= MAX_JSON_CHARS:
        stripped = params.lstrip()
        scheme = chunks.get("fooocus_scheme", "")
        if stripped.startswith("{") or scheme == "fooocus":
            data = _load_json(params)
            if isinstance(data, dict):
                return PngMetadata("fooocus", params, data=data)
        try:
            parsed = parse_infotext(params)
        except InvalidRequest:
            parsed = None
        if parsed is not None:
            source_name: Source = "fooocus" if scheme else "a1111"
            return PngMetadata(source_name, params, parsed=parsed)

    comfy: dict[str, Any] = {}
    for key in ("prompt", "workflow"):
        if key in chunks:
            value = _load_json(chunks[key])
            if isinstance(value, dict):
                comfy[key] = value
    if comfy:
        return PngMetadata("comfyui", chunks.get("prompt") or chunks["workflow"], data=comfy)
    return None


def read_png_parameters(source: str | os.PathLike[str] | Image.Image) -> str | None:
    """The A1111-style ``parameters`` text of a PNG, or ``None`` (JSON schemes excluded)."""
    meta = read_png_metadata(source)
    return meta.text if meta is not None and meta.parsed is not None else None


def comfyui_summary(graph: dict[str, Any]) -> dict[str, object]:
    """Best-effort prompt/seed/steps from a ComfyUI API graph (the PNG ``prompt`` chunk).

    Follows the first KSampler's ``positive``/``negative`` links to their text nodes.
    Pure dictionary reading: nothing in the graph is executed or fetched.
    """
    out: dict[str, object] = {}
    nodes = {k: v for k, v in graph.items() if isinstance(v, dict)}
    sampler = next(
        (n for n in nodes.values() if str(n.get("class_type", "")).startswith("KSampler")), None
    )
    if sampler is None:
        return out
    inputs = sampler.get("inputs", {})
    if not isinstance(inputs, dict):
        return out
    for key in ("seed", "noise_seed", "steps", "cfg", "sampler_name", "scheduler", "denoise"):
        value = inputs.get(key)
        if isinstance(value, (int, float, str)):
            out[key] = value
    for role in ("positive", "negative"):
        link = inputs.get(role)
        if isinstance(link, list) and link and str(link[0]) in nodes:
            text = nodes[str(link[0])].get("inputs", {}).get("text")
            if isinstance(text, str):
                out[role] = text[:MAX_INFOTEXT_CHARS]
    return out
