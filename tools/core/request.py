"""The validated image request shared by every engine, tool and the ledger.

Validation happens here, before any weights load, and errors teach rather than silently
correct (a width of 500 is rejected with the nearest valid sizes, not rounded).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tools.core.errors import InvalidRequest
from tools.core.samplers import DEFAULT_SAMPLER, canonical_sampler

MAX_SIDE = 2048
MAX_PIXELS = 2048 * 2048
MAX_SEED = 2**32 - 1  # A1111 seeds are unsigned 32-bit
_LORA_NAME = re.compile(r"^[\w .()+\-\[\]]+$", re.UNICODE)


def _check_side(v: int) -> int:
    if v % 8:
        lo, hi = v - v % 8, v - v % 8 + 8
        raise ValueError(
            f"has to be a multiple of 8 but is {v}; try {lo or 8} or {hi}"
        )
    return v


def _upscaler_name(v: str) -> str:
    if "/" in v or "\\" in v or ".." in v or not _LORA_NAME.match(v):
        raise ValueError(f"upscaler {v!r} must be Lanczos, Nearest or a file name inside the "
                         "upscalers folder (no paths)")
    return v


Side = Annotated[int, Field(ge=64, le=MAX_SIDE), AfterValidator(_check_side)]
UpscalerName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_upscaler_name)]
SamplerName = Annotated[str, AfterValidator(canonical_sampler)]
Mode = Literal["txt2img", "img2img", "inpaint"]
# "auto": only the masked area (at the model's native size) when the picture is larger
InpaintArea = Literal["auto", "masked", "whole"]
LATENT_UPSCALERS = ("Latent", "Latent (antialiased)", "Latent (bicubic)",
                    "Latent (bicubic antialiased)", "Latent (nearest)", "Latent (nearest-exact)")


class LoraRef(BaseModel):
    """A LoRA by its file stem inside the LoRA folder, and its weight."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200)
    weight: float = Field(1.0, ge=-5.0, le=5.0)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if "/" in v or "\\" in v or ".." in v or not _LORA_NAME.match(v):
            raise ValueError(
                f"LoRA name {v!r} must be a plain file name inside the LoRA folder "
                "(no paths, no '..')"
            )
        return v


class ControlUnit(BaseModel):
    """One ControlNet: its control image (already preprocessed), which preprocessor made
    it (``module``, as A1111 names them: ``canny``, ``depth_midas``, ``openpose``…;
    ``none`` = the image is the control map), the ControlNet model (a hub id, a folder, a
    file in the ControlNet folder; "" = the default for the module) and how strongly and
    during which part of the denoising it steers (A1111's guidance start/end)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: Path
    module: str = Field("none", min_length=1, max_length=64, pattern=r"^[\w.\-]+$")
    model: str = Field("", max_length=500)
    weight: float = Field(1.0, ge=0.0, le=2.0)
    guidance_start: float = Field(0.0, ge=0.0, le=1.0)
    guidance_end: float = Field(1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _start_before_end(self) -> ControlUnit:
        if self.guidance_start >= self.guidance_end:
            raise ValueError(
                f"guidance start ({self.guidance_start}) has to be below guidance end "
                f"({self.guidance_end}); e.g. 0 and 1 steer the whole denoising"
            )
        return self


class HiresFix(BaseModel):
    """A1111's hires fix: upscale the first pass by ``scale`` with ``upscaler`` (a latent
    mode, ``Lanczos``/``Nearest``, or an upscaler model's file stem), then img2img at that
    size for ``steps`` (0 = as many as the first pass) with ``denoising`` strength."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scale: float = Field(2.0, ge=1.0, le=4.0)
    upscaler: str = Field("Latent", min_length=1, max_length=200)
    steps: int = Field(0, ge=0, le=150)
    denoising: float = Field(0.5, gt=0.0, le=1.0)

    @field_validator("upscaler")
    @classmethod
    def _plain_upscaler(cls, v: str) -> str:
        if "/" in v or "\\" in v or ".." in v or not _LORA_NAME.match(v):
            raise ValueError(
                f"upscaler {v!r} must be Latent, Lanczos, Nearest or a file name inside the "
                "upscalers folder (no paths)"
            )
        return v

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The second pass's size (A1111: the scaled size, down to a multiple of 8)."""
        return int(width * self.scale) // 8 * 8, int(height * self.scale) // 8 * 8


class ImageRequest(BaseModel):
    """Everything needed to make (and later reproduce) one batch of images."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=8000)
    negative_prompt: str = Field("", max_length=8000)
    width: Side = 512
    height: Side = 512
    steps: int = Field(25, ge=1, le=150)
    cfg_scale: float = Field(7.0, ge=0.0, le=30.0)
    sampler: SamplerName = DEFAULT_SAMPLER
    seed: int | None = Field(None, ge=-1, le=MAX_SEED, description="None or -1 = random")
    batch_size: int = Field(1, ge=1, le=8)
    init_image: Path | None = None
    strength: float = Field(0.75, gt=0.0, le=1.0)
    mask_image: Path | None = None
    loras: list[LoraRef] = Field(default_factory=list, max_length=8)
    model: str | None = Field(None, description="Override the configured image model")
    fast: bool = False
    clip_skip: int | None = Field(
        None, ge=1, le=12, description="A1111 clip skip (1 = none); None = the configured one"
    )
    controls: list[ControlUnit] = Field(default_factory=list, max_length=4)
    hires: HiresFix | None = None
    inpaint_area: InpaintArea = "auto"
    inpaint_padding: int = Field(32, ge=0, le=256, description="px around the masked area")
    # "Upscale ×2": the init image enlarged to the request's size by this upscaler (a
    # model's file stem in the upscalers folder, or Lanczos/Nearest) inside the job
    init_upscaler: UpscalerName | None = None

    @model_validator(mode="after")
    def _check_combination(self) -> ImageRequest:
        if self.width * self.height > MAX_PIXELS:
            raise ValueError(
                f"{self.width}x{self.height} is more than {MAX_PIXELS:,} pixels; "
                "generate smaller and upscale"
            )
        if self.mask_image is not None and self.init_image is None:
            raise ValueError("a mask needs an init image to paint into")
        if self.init_upscaler is not None and self.init_image is None:
            raise ValueError("an init upscaler enlarges the init image: it needs one")
        if self.hires is not None:
            self._check_hires(self.hires)
        if self.seed == -1:
            self.seed = None
        return self

    def _check_hires(self, hires: HiresFix) -> None:
        if self.init_image is not None:
            raise ValueError("hires fix is for text-to-image; to enlarge a picture, use "
                             "img2img at the larger size or the Upscale button")
        w, h = hires.target(self.width, self.height)
        fits = min(MAX_SIDE / max(self.width, self.height),
                   (MAX_PIXELS / (self.width * self.height)) ** 0.5)
        if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
            raise ValueError(
                f"hires fix to {w}x{h} is larger than {MAX_SIDE} px a side or "
                f"{MAX_PIXELS:,} pixels; use a scale of at most {int(fits * 100) / 100:g}"
            )

    @property
    def output_size(self) -> tuple[int, int]:
        """The size of the images made: the hires target when hires fix is on."""
        if self.hires is not None:
            return self.hires.target(self.width, self.height)
        return self.width, self.height

    @property
    def mode(self) -> Mode:
        if self.mask_image is not None:
            return "inpaint"
        return "img2img" if self.init_image is not None else "txt2img"

    def with_seed(self) -> ImageRequest:
        """A copy with a concrete seed (random when unset), so it can always be reported."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(MAX_SEED)})


def format_validation_error(err: ValidationError) -> str:
    """Turn pydantic's error list into one readable sentence per problem."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "request"
        msg = str(e["msg"]).removeprefix("Value error, ").rstrip(".")
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def parse_request(data: dict[str, object]) -> ImageRequest:
    """Validate ``data`` into an :class:`ImageRequest` or raise :class:`InvalidRequest`."""
    try:
        return ImageRequest.model_validate(data)
    except ValidationError as err:
        text = format_validation_error(err)
        raise InvalidRequest.of("request_invalid", detail=text) from err
