"""Image → prompt with a vision model: whole-picture descriptions, region captions, inpaint prompts.

:class:`OllamaCaptioner` sends the picture to an Ollama vision model (through LangChain's
``ChatOllama``: an ``image_url`` content part becomes base64 in the message's ``images``)
and asks for a structured answer with :class:`tools.llm.structured.StructuredLLM`:

* :meth:`~OllamaCaptioner.describe` → :class:`ImageDescription`: an English prompt in
  parts (subject, environment, lighting, style, camera), a suggested negative and a
  short summary in the user's language;
* :meth:`~OllamaCaptioner.describe_region` → :class:`RegionCaption`: ONLY the crop around
  the mask (its bounding box plus some context) is sent, never the whole picture;
* :meth:`~OllamaCaptioner.propose_inpaint_prompt` → :class:`InpaintProposal`: a local
  prompt for the masked area only (text-only call).

Images are scaled down to :data:`SEND_MAX_SIDE` first: the model sees no more detail at
4K, it just answers slower. Without a vision-capable model, :func:`ensure_vision` raises
:class:`CapabilityMissing` naming a model to pull. Prompts live in ``prompts/*.md``.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from prompts.loader import render
from tools.core.errors import CapabilityMissing
from tools.core.messages import has_japanese, language_name
from tools.core.settings import Settings
from tools.llm.backend import LLMGateway, make_chat_model, make_gateway
from tools.llm.structured import LLMCallCounter, StructuredLLM
from tools.llm.text import dedupe_terms, lenient_text, model_prompt
from vision.masks import Box, Mask, context_box, parse_box

SEND_MAX_SIDE = 768
SUGGESTED_VISION_MODEL = "qwen3-vl:8b"
Region = Mask | Image.Image | Box | str


class _Lenient(BaseModel):
    """Small models send a list of tags where a string is expected, or null: accept both."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _lenient(cls, v: object) -> object:
        return lenient_text(v)


class ImageDescription(_Lenient):
    """A picture as an English SD prompt in parts (field order = prompt order)."""

    subject: str = Field(description="who/what, appearance, clothing, pose, action")
    environment: str = Field("", description="place, background, time of day, weather")
    lighting: str = Field("", description="light, mood, colour palette")
    style: str = Field("", description="medium and art style")
    camera: str = Field("", description="shot size, angle, lens, depth of field")
    negative: str = Field("", description="things a repainting should avoid, English")
    summary: str = Field("", description="one or two sentences in the person's language")

    @field_validator("subject", "environment", "lighting", "style", "camera", "negative")
    @classmethod
    def _honoured(cls, v: str) -> object:
        return model_prompt(v)  # only prompt syntax the engine honours

    @property
    def prompt(self) -> str:
        """The positive prompt: subject, environment, lighting, style, camera."""
        parts = [self.subject, self.environment, self.lighting, self.style, self.camera]
        return ", ".join(dedupe_terms(parts))


class RegionCaption(_Lenient):
    """What is inside the marked area now."""

    caption: str = Field(description="what is in the marked area, English phrases")
    summary: str = Field("", description="the same in a few words, person's language")


class InpaintProposal(_Lenient):
    """The local prompt for repainting only the masked area."""

    prompt: str = Field(description="only what should appear in the masked area, English")
    negative: str = Field("", description="what the repainted area must not show, English")
    summary: str = Field("", description="one sentence in the person's language")

    @field_validator("prompt", "negative")
    @classmethod
    def _honoured(cls, v: str) -> object:
        return model_prompt(v)  # only prompt syntax the engine honours


class Captioner(Protocol):
    """Anything that can turn pictures into prompts (real: Ollama; tests: the fake server)."""

    async def describe(
        self, image: Image.Image, region: Region | None = None, *, lang: str = "en"
    ) -> ImageDescription: ...

    async def describe_region(
        self, image: Image.Image, region: Region, *, lang: str = "en"
    ) -> RegionCaption: ...

    async def propose_inpaint_prompt(
        self,
        full: ImageDescription | None,
        region: RegionCaption,
        instruction: str = "",
        *,
        lang: str = "en",
    ) -> InpaintProposal: ...


# --- helpers ----------------------------------------------------------------------------------
def fit_within(image: Image.Image, max_side: int) -> Image.Image:
    """RGB copy of ``image`` with its longest side at most ``max_side`` px (for a VLM)."""
    im = image.convert("RGB")
    if max(im.size) > max_side:
        scale = max_side / max(im.size)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS)
    return im


def encode_image(image: Image.Image, max_side: int = SEND_MAX_SIDE) -> str:
    """``data:image/png;base64,…`` of ``image`` scaled to at most ``max_side`` a side."""
    buf = io.BytesIO()
    fit_within(image, max_side).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def region_box(image: Image.Image, region: Region) -> Box:
    """The crop sent for ``region``: a mask's bounding box plus context, or a box as is."""
    if isinstance(region, Mask):
        return context_box(region.image)
    if isinstance(region, Image.Image):
        return context_box(region)
    if isinstance(region, str):
        return parse_box(region, image.size)
    return region


def _image_message(text: str, image: Image.Image, max_side: int) -> HumanMessage:
    return HumanMessage(
        content=[
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": encode_image(image, max_side)},
        ]
    )


def _english(*fields: str) -> Any:
    """A :class:`StructuredLLM` check: these fields must be English (no kana/kanji)."""

    def check(answer: Any) -> str | None:
        bad = [f for f in fields if has_japanese(str(getattr(answer, f, "")))]
        if bad:
            return f"The fields {', '.join(bad)} contain Japanese; write them in English."
        if not str(getattr(answer, fields[0], "")).strip():
            return f"`{fields[0]}` is empty; fill it in English."
        return None

    return check


async def ensure_vision(gateway: LLMGateway, model: str) -> None:
    """Raise :class:`CapabilityMissing` (en + ja, naming a model to pull) unless ``model`` sees."""
    status = await gateway.status(model)
    if not status.vision:
        raise CapabilityMissing.of(
            "no_vision_describe", model=model, suggested=SUGGESTED_VISION_MODEL
        )


# --- the Ollama captioner -----------------------------------------------------------------------
class OllamaCaptioner:
    """:class:`Captioner` on an Ollama vision model; ``counter`` counts every LLM call.

    With a ``gateway``, the model's ``vision`` capability is checked once, before the
    first image is sent (so a text-only model fails with a clear message, not nonsense).
    """

    def __init__(
        self,
        model: BaseChatModel,
        counter: LLMCallCounter | None = None,
        *,
        gateway: LLMGateway | None = None,
        model_name: str = "",
        max_side: int = SEND_MAX_SIDE,
    ) -> None:
        self.llm = StructuredLLM(model, counter)
        self.gateway = gateway
        self.model_name = model_name or str(getattr(model, "model", ""))
        self.max_side = max_side
        self._checked = gateway is None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        counter: LLMCallCounter | None = None,
        gateway: LLMGateway | None = None,
    ) -> OllamaCaptioner:
        """The captioner for ``settings.effective_vision_model`` (capability-checked)."""
        name = settings.effective_vision_model
        gateway = gateway or make_gateway(settings)
        model = make_chat_model(settings, name, gateway=gateway)
        return cls(model, counter, gateway=gateway, model_name=name)

    @property
    def counter(self) -> LLMCallCounter:
        return self.llm.counter

    async def _ready(self) -> None:
        if not self._checked and self.gateway is not None:
            await ensure_vision(self.gateway, self.model_name)
            self._checked = True

    async def describe(
        self, image: Image.Image, region: Region | None = None, *, lang: str = "en"
    ) -> ImageDescription:
        """The whole picture (or the crop of ``region``) as an :class:`ImageDescription`."""
        await self._ready()
        if region is not None:
            image = image.crop(region_box(image, region))
        messages: list[BaseMessage] = [
            SystemMessage(render("caption.md", language=language_name(lang))),
            _image_message("Describe this picture.", image, self.max_side),
        ]
        return await self.llm.ask(
            ImageDescription,
            messages,
            purpose="caption",
            check=_english("subject", "environment", "lighting", "style", "camera", "negative"),
        )

    async def describe_region(
        self, image: Image.Image, region: Region, *, lang: str = "en"
    ) -> RegionCaption:
        """Caption ONLY the crop around ``region`` (its bounding box plus context)."""
        await self._ready()
        box = region_box(image, region)
        crop = image.crop(box)
        messages: list[BaseMessage] = [
            SystemMessage(render("region.md", language=language_name(lang))),
            _image_message("What is in the marked area?", crop, self.max_side),
        ]
        return await self.llm.ask(
            RegionCaption, messages, purpose="region", check=_english("caption")
        )

    async def propose_inpaint_prompt(
        self,
        full: ImageDescription | None,
        region: RegionCaption,
        instruction: str = "",
        *,
        lang: str = "en",
    ) -> InpaintProposal:
        """A prompt for the masked area only (one text-only call)."""
        data = {
            "whole_picture": full.prompt if full is not None else "",
            "marked_area_now": region.caption,
            "persons_request": instruction.strip()[:2000],
        }
        messages: list[BaseMessage] = [
            SystemMessage(render("inpaint.md", language=language_name(lang))),
            HumanMessage(json.dumps(data, ensure_ascii=False, indent=1)),
        ]
        return await self.llm.ask(
            InpaintProposal, messages, purpose="inpaint", check=_english("prompt", "negative")
        )
