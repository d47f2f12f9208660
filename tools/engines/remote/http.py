"""Small helpers shared by the remote engines (AUTOMATIC1111, ComfyUI).

Everything a remote server sends back is untrusted data: images are size-checked before
decoding and error texts are trimmed before they reach the user.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from pathlib import Path

import httpx
from PIL import Image

from tools.core.errors import EngineError

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_ERROR_CHARS = 400


def decode_image_bytes(data: bytes, *, what: str = "the server") -> Image.Image:
    """Open PNG/JPEG bytes from a server as a loaded RGB(A) image, or raise EngineError."""
    if len(data) > MAX_IMAGE_BYTES:
        raise EngineError.of("engine_remote_image_too_large_mb", what=what, mb=len(data) // 2**20)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise EngineError.of("engine_remote_image_too_many_pixels",
                                     what=what, width=im.width, height=im.height)
            im.load()
            return im.convert("RGBA" if "A" in im.getbands() else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise EngineError.of("engine_remote_not_an_image", what=what, error=err) from err


def decode_base64_image(text: str, *, what: str = "the server") -> Image.Image:
    """Decode an A1111-style base64 image (with or without a ``data:`` prefix)."""
    if text.startswith("data:"):
        text = text.partition(",")[2]
    if len(text) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise EngineError.of("engine_remote_image_too_large", what=what)
    try:
        raw = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as err:
        raise EngineError.of("engine_remote_bad_base64", what=what) from err
    return decode_image_bytes(raw, what=what)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def load_input_image(path: Path, size: tuple[int, int], *, mode: str = "RGB") -> Image.Image:
    """Open an init image or mask and resize it to the request size."""
    try:
        with Image.open(path) as im:
            return im.convert(mode).resize(size, Image.Resampling.LANCZOS)
    except (OSError, ValueError) as err:
        raise EngineError.of("engine_remote_input_unreadable", name=path.name, error=err) from err


def error_text(resp: httpx.Response) -> str:
    """The most useful short message in an error response (JSON ``error``/``detail``)."""
    text = ""
    try:
        body = resp.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    if isinstance(body, dict):
        for key in ("error", "detail", "errors", "message"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or json.dumps(value, ensure_ascii=False)
            if value:
                text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                break
    if not text:
        text = resp.text
    text = " ".join(text.split())
    return text[:MAX_ERROR_CHARS] + ("…" if len(text) > MAX_ERROR_CHARS else "")
