"""Inpainting masks: decode what the user painted or uploaded into a binary mask.

Every mask ends up the same way — mode ``L``, exactly 0 or 255, white = repaint, at the
image's size — whatever it came from:

* :func:`mask_from_data_url` — the ``MaskPainter`` element's ``data:image/png;base64,…``,
  painted on a canvas that may be smaller or larger than the image;
* :func:`mask_from_image` — an uploaded mask file of any size; a mask with transparency
  uses its alpha (painted = white), an opaque one its brightness;
* :func:`mask_from_box` — ``x,y,w,h`` in pixels, or in fractions of the image when every
  number is at most 1.

A mask whose shape differs from the image by more than :data:`ASPECT_TOLERANCE` is
refused (it was painted on another picture); closer ones are resized, then thresholded
at half brightness. Empty masks are refused; a mask covering almost everything is kept
with a warning. Payloads are capped before they are decoded.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tools.core.errors import InvalidRequest
from tools.core.messages import msg
from vision.uploads import MAX_UPLOAD_PIXELS, open_checked, save_atomic

MAX_MASK_BYTES = 8 * 1024 * 1024  # of decoded PNG; a 2048² 1-bit-ish PNG is ~100 KB
ASPECT_TOLERANCE = 0.02
FULL_COVERAGE = 0.98
THRESHOLD = 128
Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive), like PIL

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w=.-]+)*),", re.I)


@dataclass(frozen=True)
class Mask:
    """A binary mask at the image's size; ``coverage`` is the repainted fraction."""

    image: Image.Image
    coverage: float

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    @property
    def full(self) -> bool:
        return self.coverage >= FULL_COVERAGE

    def warnings(self, lang: str = "en") -> list[str]:
        """Things the user should know before this mask is used."""
        return [msg("mask_full", lang)] if self.full else []

    def bbox(self, pad: int = 0) -> Box:
        return mask_bbox(self.image, pad)

    def save(self, folder: Path, stem: str) -> Path:
        """Write the mask as ``folder/stem.png`` (atomically) and return the path."""
        return save_atomic(self.image, folder / f"{stem}.png")


def _aspect_gap(a: tuple[int, int], b: tuple[int, int]) -> float:
    ra, rb = a[0] / a[1], b[0] / b[1]
    return abs(ra - rb) / rb


def binarize(gray: Image.Image, size: tuple[int, int], threshold: int = THRESHOLD) -> Mask:
    """Resize a grayscale mask to ``size`` and make it exactly 0/255.

    Refuses a mask of another shape and an empty result (:class:`InvalidRequest`).
    Resizing is bilinear *then* thresholded, so thin strokes survive a downscale better
    than with nearest-neighbour and edges stay where they were painted.
    """
    gray = gray.convert("L")
    gap = _aspect_gap(gray.size, size)
    if gap > ASPECT_TOLERANCE:
        raise InvalidRequest.of(
            "mask_aspect", mask_w=gray.width, mask_h=gray.height,
            image_w=size[0], image_h=size[1], diff=gap,
        )  # fmt: skip
    if gray.size != size:
        gray = gray.resize(size, Image.Resampling.BILINEAR)
    binary = gray.point(lambda v: 255 if v >= threshold else 0)
    white = binary.histogram()[255]
    if white == 0:
        raise InvalidRequest.of("mask_empty")
    return Mask(binary, white / (size[0] * size[1]))


def alpha_or_luma(im: Image.Image) -> Image.Image:
    """The painted strokes as grayscale: alpha when the image has real transparency."""
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        alpha = im.getchannel("A")
        if alpha.histogram()[255] < alpha.width * alpha.height:
            # some transparency: the painted (opaque) part is the mask
            return alpha
    return im.convert("L")


def mask_from_image(source: Image.Image | Path | bytes, size: tuple[int, int]) -> Mask:
    """A mask from an image (file, bytes or PIL image) of any size, for an image of ``size``."""
    if isinstance(source, Image.Image):
        return binarize(alpha_or_luma(source), size)
    name = source.name if isinstance(source, Path) else "mask"
    im, _kind = open_checked(source, name, max_pixels=MAX_UPLOAD_PIXELS)
    with im:
        return binarize(alpha_or_luma(im), size)


def decode_data_url(data_url: str, max_bytes: int = MAX_MASK_BYTES) -> bytes:
    """The PNG bytes of a ``data:image/png;base64,…`` URL, checked before decoding."""
    if not isinstance(data_url, str):
        raise InvalidRequest.of("mask_malformed", detail="not text")
    # base64 is 4/3 of the bytes: refuse oversized payloads before decoding anything.
    if len(data_url) > max_bytes * 4 // 3 + 200:
        raise InvalidRequest.of(
            "mask_too_big", size_kb=len(data_url) * 3 // 4 // 1024,
            limit_kb=max_bytes // 1024,
        )  # fmt: skip
    m = _DATA_URL.match(data_url)
    if m is None:
        raise InvalidRequest.of("mask_malformed", detail="not a data: URL")
    mime = (m.group("mime") or "text/plain").lower()
    if mime != "image/png":
        raise InvalidRequest.of("mask_wrong_type", mime=mime[:40])
    if ";base64" not in m.group("params").lower():
        raise InvalidRequest.of("mask_malformed", detail="not base64")
    payload = data_url[m.end() :].strip()
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise InvalidRequest.of("mask_malformed", detail="bad base64") from err
    if not raw:
        raise InvalidRequest.of("mask_malformed", detail="no data")
    return raw


def mask_from_data_url(data_url: str, size: tuple[int, int]) -> Mask:
    """The ``MaskPainter`` payload (a PNG data URL at any display size) → binary mask."""
    return mask_from_image(decode_data_url(data_url), size)


def _numbers(box: str | Sequence[float]) -> list[float]:
    parts = re.split(r"[,\s]+", box.strip()) if isinstance(box, str) else list(box)
    return [float(p) for p in parts if p != ""]


def parse_box(box: str | Sequence[float], size: tuple[int, int]) -> Box:
    """``x,y,w,h`` (pixels, or fractions when all ≤ 1) → a clamped ``(l, t, r, b)`` box."""
    shown = box if isinstance(box, str) else ",".join(str(v) for v in box)
    try:
        values = _numbers(box)
    except (TypeError, ValueError):
        raise InvalidRequest.of("mask_box", box=shown, detail="not numbers") from None
    if len(values) != 4:
        raise InvalidRequest.of("mask_box", box=shown, detail="need 4 numbers")
    x, y, w, h = values
    if min(values) < 0 or w <= 0 or h <= 0:
        raise InvalidRequest.of("mask_box", box=shown, detail="negative or empty")
    if max(values) <= 1:
        x, w = x * size[0], w * size[0]
        y, h = y * size[1], h * size[1]
    left, top = round(x), round(y)
    right, bottom = min(size[0], round(x + w)), min(size[1], round(y + h))
    if left >= right or top >= bottom:
        raise InvalidRequest.of("mask_box", box=shown, detail="outside the image")
    return left, top, right, bottom


def mask_from_box(box: str | Sequence[float], size: tuple[int, int]) -> Mask:
    """A rectangular mask from ``x,y,w,h`` (see :func:`parse_box`)."""
    im = Image.new("L", size, 0)
    im.paste(255, parse_box(box, size))
    return binarize(im, size)


def mask_bbox(mask: Image.Image, pad: int = 0) -> Box:
    """The painted area's bounding box grown by ``pad`` pixels, clamped to the image."""
    box = mask.convert("L").point(lambda v: 255 if v >= THRESHOLD else 0).getbbox()
    if box is None:
        raise InvalidRequest.of("mask_empty")
    left, top, right, bottom = box
    w, h = mask.size
    return max(0, left - pad), max(0, top - pad), min(w, right + pad), min(h, bottom + pad)


def context_box(mask: Image.Image, frac: float = 0.15, min_pad: int = 8) -> Box:
    """:func:`mask_bbox` padded by ``frac`` of its longer side (some surroundings for a caption)."""
    left, top, right, bottom = mask_bbox(mask)
    pad = max(min_pad, round(frac * max(right - left, bottom - top)))
    return mask_bbox(mask, pad)
