"""Accept an image the user attached: check it, normalise it, keep a private copy.

:func:`load_upload` is the only way an uploaded file enters the app:

1. size — empty files and files over :data:`MAX_UPLOAD_BYTES` are refused unread;
2. type — the first bytes must be PNG, JPEG, WebP, GIF, BMP, TIFF, AVIF or HEIC (HEIC
   only with the optional ``pillow-heif``); the name and the browser's declared MIME
   type are not trusted: a PDF renamed ``.png`` is still a PDF. Animated GIF/WebP and
   multi-page TIFF give their first frame;
3. pixels — the header's width × height is checked *before* decoding, so a small file
   that claims 30000×30000 (a decompression bomb) never allocates its pixels;
4. decode — truncated or damaged files become :class:`InvalidRequest`, en + ja;
5. normalise — EXIF orientation applied, transparency flattened on white, RGB, and
   scaled down to :data:`WORK_MAX_SIDE`; saved atomically as PNG under
   ``data_dir/uploads`` (the copy carries no EXIF/GPS and no text chunks);
6. metadata — generation settings in the original (A1111, ComfyUI, Fooocus) are read
   with :func:`tools.infotext.read_png_metadata` and returned as capped, control-free
   strings. They are *data* to show the user, never instructions for a model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

from tools.core.errors import InvalidRequest
from tools.core.messages import Message
from tools.core.request import ImageRequest
from tools.core.settings import Settings
from tools.infotext.png import PngMetadata, comfyui_summary, read_png_metadata
from tools.infotext.text import Reuse, reuse_infotext

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
WORK_MAX_SIDE = 2048
MAX_META_TEXT = 4000  # per prompt; real prompts are far shorter
MAX_META_VALUE = 200  # per settings value
MAX_META_PARAMS = 40

ImageKind = Literal["png", "jpeg", "webp", "gif", "bmp", "tiff", "avif", "heif"]
# What PIL may call each kind (phones write multi-picture JPEGs, which PIL names MPO).
# Image.open only tries these plugins: never EPS (Ghostscript) or other exotic readers.
_PIL_FORMATS: dict[ImageKind, tuple[str, ...]] = {
    "png": ("PNG",),
    "jpeg": ("JPEG", "MPO"),
    "webp": ("WEBP",),
    "gif": ("GIF",),
    "bmp": ("BMP",),
    "tiff": ("TIFF",),
    "avif": ("AVIF",),  # built into Pillow's wheels (libavif) since 11.2
    "heif": ("HEIF",),  # registered by the optional pillow-heif
}
HEAD_BYTES = 512
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1")
_VIDEO_BRANDS = (b"isom", b"iso2", b"mp41", b"mp42", b"M4V ", b"qt  ", b"3gp4", b"3gp5",
                 b"avc1", b"dash")
# Other signatures, only to tell the user what they sent instead (a catalogue key each).
_OTHER_KINDS: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "upload_found_pdf"),
    (b"PK\x03\x04", "upload_found_zip"),
    (b"\x1aE\xdf\xa3", "upload_found_video"),  # Matroska / WebM
    (b"RIFF", "upload_found_riff"),
    (b"8BPS", "upload_found_psd"),
)
_ID = re.compile(r"^[0-9a-f]{16}$")
# C0/C1 controls and bidi overrides (which can disguise text); newlines and tabs stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class UploadMetadata:
    """Generation settings found in an uploaded image: sanitised strings, never code.

    ``request`` is the settings as an :class:`ImageRequest` when they are usable here
    (A1111-style text only), and ``reuse`` what reusing them changes or leaves out;
    otherwise ``request_error`` says why not, in any language.
    """

    source: str
    prompt: str = ""
    negative_prompt: str = ""
    params: dict[str, str] = field(default_factory=dict)
    request: ImageRequest | None = None
    request_error: InvalidRequest | None = None
    reuse: Reuse | None = None


@dataclass(frozen=True)
class Upload:
    """A checked, normalised upload: ``path`` is the RGB PNG copy the app works with."""

    id: str
    path: Path
    width: int
    height: int
    original_name: str
    kind: ImageKind
    original_size: tuple[int, int]
    metadata: UploadMetadata | None = None
    frames: int = 1  # > 1: an animation or multi-page file; the first frame is used

    @property
    def downscaled(self) -> bool:
        return (self.width, self.height) != self.original_size

    def open(self) -> Image.Image:
        """The normalised image, loaded (RGB)."""
        with Image.open(self.path) as im:
            return im.convert("RGB")


def uploads_dir(settings: Settings) -> Path:
    """Where normalised uploads and masks live."""
    return settings.data_dir / "uploads"


def sniff(head: bytes) -> ImageKind | None:
    """The image kind from the first bytes, or None if not one Egaki opens."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 18 and head[14] in (12, 40, 52, 56, 64, 108, 124):
        return "bmp"  # "BM" + a known DIB header size: not just any text starting "BM"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if len(head) >= 12 and head[4:8] == b"ftyp":  # ISO media: AVIF, HEIC, or a video
        size = int.from_bytes(head[:4], "big")
        brands = [head[8:12]] + [head[i:i + 4] for i in range(16, min(size, len(head)), 4)]
        if any(b in _AVIF_BRANDS for b in brands):
            return "avif"
        if any(b in _HEIF_BRANDS for b in brands):
            return "heif"
    return None


def _what_is(head: bytes) -> Message | str:
    """What the bytes are instead of a usable picture (a catalogue message), or ""."""
    for magic, key in _OTHER_KINDS:
        if head.startswith(magic):
            return Message(key)
    if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in _VIDEO_BRANDS:
        return Message("upload_found_video")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    if "<svg" in text.lower():
        return Message("upload_found_svg")
    return Message("upload_found_text") if text.strip() else ""


_HEIF_READY: bool | None = None


def heif_available() -> bool:
    """Whether HEIC/HEIF can be opened: the optional pillow-heif, registered once."""
    global _HEIF_READY
    if _HEIF_READY is None:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _HEIF_READY = False
        else:
            register_heif_opener()
            _HEIF_READY = True
    return _HEIF_READY


def clean_text(value: object, limit: int = MAX_META_TEXT) -> str:
    """Metadata text made safe to display: NFC, no control/bidi characters, capped."""
    text = unicodedata.normalize("NFC", str(value))
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def open_checked(
    data: bytes | Path, name: str, *, max_pixels: int = MAX_UPLOAD_PIXELS
) -> tuple[Image.Image, ImageKind]:
    """Open and fully decode PNG/JPEG/WebP bytes or a file, refusing anything else.

    The kind comes from the bytes; the header's size is checked before pixels are
    decoded. Raises :class:`InvalidRequest` (en + ja) with what to do next.
    """
    head = data[:HEAD_BYTES] if isinstance(data, bytes) else _read_head(data)
    kind = sniff(head)
    if kind is None:
        raise InvalidRequest.of("upload_not_image", name=name, found=_what_is(head))
    if kind == "heif" and not heif_available():
        raise InvalidRequest.of("upload_heic_missing", name=name)
    try:
        im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data,
                        formats=_PIL_FORMATS[kind])
    except Image.DecompressionBombError as err:  # PIL's own cap, far above ours
        width, height = _png_size(head) or (0, 0)
        raise InvalidRequest.of(
            "upload_too_many_pixels", name=name, width=width or "?",
            height=height or "?", mp=(width * height or 2 * (Image.MAX_IMAGE_PIXELS or 0)) / 1e6,
            limit_mp=max_pixels // 1_000_000,
        ) from err  # fmt: skip
    except (OSError, UnidentifiedImageError) as err:
        raise InvalidRequest.of("upload_corrupt", name=name, error=type(err).__name__) from err
    try:
        width, height = im.size
        if im.format not in _PIL_FORMATS[kind]:
            raise InvalidRequest.of("upload_not_image", name=name, found="")
        if width * height > max_pixels:
            raise InvalidRequest.of(
                "upload_too_many_pixels", name=name, width=width, height=height,
                mp=width * height / 1e6, limit_mp=max_pixels // 1_000_000,
            )  # fmt: skip
        im.load()
    except InvalidRequest:
        im.close()
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        im.close()
        detail = str(err).split("\n")[0][:80] or type(err).__name__
        raise InvalidRequest.of("upload_corrupt", name=name, error=detail) from err
    return im, kind


def _png_size(head: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk (bytes 16-24), without decoding."""
    if sniff(head) != "png" or len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _read_head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(HEAD_BYTES)


def normalise(im: Image.Image, max_side: int = WORK_MAX_SIDE) -> Image.Image:
    """Upright (EXIF), RGB (transparency on white), at most ``max_side`` pixels a side."""
    im = ImageOps.exif_transpose(im) or im
    if im.mode.startswith("I"):  # 16-bit grayscale: keep the top 8 bits, not clip at 255
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.mode in ("P", "LA", "PA") or (im.mode == "L" and "transparency" in im.info):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        canvas = Image.new("RGB", im.size, (255, 255, 255))
        canvas.paste(im, mask=im.getchannel("A"))
        im = canvas
    im = im.convert("RGB")
    if max(im.size) > max_side:
        scale = max_side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS)
    return im


def save_atomic(image: Image.Image, target: Path) -> Path:
    """Write ``image`` as PNG to ``target`` via a temp file + ``os.replace``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def extract_metadata(meta: PngMetadata | None) -> UploadMetadata | None:
    """Sanitised, capped settings from whatever tool wrote ``meta``."""
    if meta is None:
        return None
    prompt, negative, params = "", "", {}
    data = meta.data or {}
    graph = data.get("prompt")
    if meta.parsed is not None:
        prompt, negative = meta.parsed.prompt, meta.parsed.negative_prompt
        params = dict(meta.parsed.params)
    elif meta.source == "comfyui" and isinstance(graph, dict):
        summary = comfyui_summary(graph)
        prompt = str(summary.pop("positive", ""))
        negative = str(summary.pop("negative", ""))
        params = {k: str(v) for k, v in summary.items()}
    elif meta.source == "fooocus":
        prompt = str(data.get("prompt", "") or "")
        negative = str(data.get("negative_prompt", "") or "")
        params = {
            str(k): str(v)
            for k, v in data.items()
            if isinstance(v, (str, int, float)) and k not in ("prompt", "negative_prompt")
        }
    reuse: Reuse | None = None
    problem: InvalidRequest | None = None
    if meta.parsed is not None:
        try:
            reuse = reuse_infotext(meta.parsed)
        except InvalidRequest as err:
            problem = err
    clean_params = {
        clean_text(k, 60): clean_text(v, MAX_META_VALUE)
        for k, v in list(params.items())[:MAX_META_PARAMS]
    }
    return UploadMetadata(
        source=meta.source,
        prompt=clean_text(prompt),
        negative_prompt=clean_text(negative),
        params=clean_params,
        request=reuse.request if reuse is not None else None,
        request_error=problem,
        reuse=reuse,
    )


def load_upload(
    path: Path,
    settings: Settings,
    *,
    name: str | None = None,
    mime: str | None = None,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_pixels: int = MAX_UPLOAD_PIXELS,
    max_side: int = WORK_MAX_SIDE,
) -> Upload:
    """Check, normalise and store the uploaded file at ``path`` (see the module doc).

    ``mime`` is what the browser declared; it is ignored for the decision (the bytes
    decide) and kept only for logs. Raises :class:`InvalidRequest` with en + ja text.
    """
    del mime  # declared types are not trusted; see sniff()
    shown = clean_text(name or path.name, 120)
    size = path.stat().st_size
    if size == 0:
        raise InvalidRequest.of("upload_empty", name=shown)
    if size > max_bytes:
        raise InvalidRequest.of(
            "upload_too_big", name=shown, size_mb=size / 2**20,
            limit_mb=max_bytes // 2**20,
        )  # fmt: skip
    raw = path.read_bytes()
    im, kind = open_checked(raw, shown, max_pixels=max_pixels)
    with im:
        original_size = im.size
        frames = int(getattr(im, "n_frames", 1) or 1)
        meta = extract_metadata(read_png_metadata(im)) if kind == "png" else None
        work = normalise(im, max_side)
    image_id = hashlib.sha256(raw).hexdigest()[:16]
    target = save_atomic(work, uploads_dir(settings) / f"{image_id}.png")
    return Upload(
        id=image_id,
        path=target,
        width=work.width,
        height=work.height,
        original_name=shown,
        kind=kind,
        original_size=original_size,
        metadata=meta,
        frames=frames,
    )


def upload_path(settings: Settings, image_id: str) -> Path:
    """The stored copy of ``image_id`` (ids come from the browser: checked strictly)."""
    path = uploads_dir(settings) / f"{image_id}.png"
    if not _ID.match(str(image_id)) or not path.is_file():
        raise InvalidRequest.of("upload_unknown", image_id=clean_text(image_id, 40))
    return path
