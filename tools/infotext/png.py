"""PNGs and their metadata: save an image with its infotext, read what a PNG says.

:func:`save_png` writes the A1111 ``parameters`` chunk (atomically);
:func:`read_png_metadata` recognises A1111, Fooocus (JSON ``parameters``) and ComfyUI
(``prompt``/``workflow``) chunks. Metadata is *data*, never instructions: readers return
strings and dicts, never evaluate anything, and every file and text is size-capped
before it is read or parsed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.infotext.text import MAX_INFOTEXT_CHARS, ParsedInfotext, format_infotext, parse_infotext

log = logging.getLogger(__name__)

MAX_JSON_CHARS = 4_000_000  # ComfyUI workflows are big, but not this big
MAX_PNG_BYTES = 200 * 1024 * 1024

Source = Literal["a1111", "comfyui", "fooocus"]


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
        raise InvalidRequest.of(
            "infotext_png_too_big", name=path.name, limit_mb=MAX_PNG_BYTES // 2**20
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
