"""Checking one candidate image against its constraints: the vision model, and CLIP.

:class:`VisionChecker` makes ONE structured call per image (two when the answer is
unusable): the image travels inline (JPEG, downscaled to at most 512 px, base64 in the
message's ``images``) with the constraint questions numbered, and the reply is one
yes/no (plus the count seen and a short reason) per question. A reply that stays
unusable gives a :class:`Verdict` with every answer unknown instead of stopping the loop.

:class:`ImageScorer` is the optional CLIP hook: :func:`load_clip_scorer` returns a
:class:`TransformersClipScorer` for a local CLIP folder (``transformers`` CLIPModel), or
``None`` when no folder is configured or it can't be loaded, in which case ranking
simply skips the score.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from PIL import Image
from pydantic import BaseModel, Field, field_validator

from assistant.quality.constraints import Constraint
from prompts.loader import render
from tools.core.errors import CapabilityMissing, ModelOutputError
from tools.llm.ollama_gateway import ModelStatus
from tools.llm.structured import LLMCallCounter, StructuredLLM
from vision.caption import fit_within

__all__ = [
    "CheckReply",
    "ConstraintResult",
    "ImageScorer",
    "TransformersClipScorer",
    "Verdict",
    "VisionChecker",
    "encode_image",
    "load_clip_scorer",
]

log = logging.getLogger(__name__)

MAX_CHECK_SIDE = 512
_SUGGESTED_VISION = "qwen3-vl:8b"


# --- models ----------------------------------------------------------------------------------
class Answer(BaseModel):
    """The vision model's answer to one numbered question."""

    number: int = Field(description="the question's number")
    answer: str = Field(json_schema_extra={"enum": ["yes", "no"]})
    count: int | None = Field(None, description="for counting questions: how many you see")
    reason: str = ""

    @field_validator("answer", mode="before")
    @classmethod
    def _yes_no(cls, v: object) -> object:
        if isinstance(v, bool):
            return "yes" if v else "no"
        text = str(v).strip().lower()
        return "yes" if text.startswith(("yes", "y", "true", "はい")) else "no"

    @field_validator("count", mode="before")
    @classmethod
    def _count(cls, v: object) -> object:
        if isinstance(v, str):
            digits = "".join(ch for ch in v if ch.isdigit())
            return int(digits) if digits else None
        return v

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, v: object) -> object:
        return "" if v is None else str(v)


class CheckReply(BaseModel):
    """The check step's structured output."""

    answers: list[Answer]


class ConstraintResult(BaseModel):
    """How one image fared on constraint ``index``; ``passed`` None = no usable answer."""

    index: int
    passed: bool | None
    seen: int | None = None
    reason: str = ""


class Verdict(BaseModel):
    """Every constraint's result for one image, plus the CLIP score when available."""

    results: list[ConstraintResult] = Field(default_factory=list)
    clip_score: float | None = None
    error: str = ""

    @property
    def passes(self) -> int:
        return sum(1 for r in self.results if r.passed)

    @property
    def all_passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list[ConstraintResult]:
        return [r for r in self.results if not r.passed]


# --- encoding ----------------------------------------------------------------------------------
def encode_image(image: Image.Image, max_side: int = MAX_CHECK_SIDE) -> str:
    """Base64 JPEG of ``image`` with its longest side at most ``max_side`` px.

    Deterministic for equal pixels, so tests can tell which candidate was sent.
    """
    buf = io.BytesIO()
    fit_within(image, max_side).save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --- the vision checker ---------------------------------------------------------------------
class StatusSource(Protocol):
    """Anything that reports a model's capabilities (``OllamaGateway`` does)."""

    async def status(self, model: str) -> ModelStatus: ...


def no_vision_error(model: str) -> CapabilityMissing:
    return CapabilityMissing.of("no_vision_check", model=model, suggested=_SUGGESTED_VISION)


def _all_answered(n: int) -> Any:
    def check(reply: CheckReply) -> str | None:
        numbers = {a.number for a in reply.answers}
        if numbers >= set(range(1, n + 1)) or len(reply.answers) == n:
            return None
        return f"Answer all {n} questions, each with its `number` from 1 to {n}."

    return check


class VisionChecker:
    """Asks a vision model whether an image meets each constraint (one call per image).

    ``gateway`` (optional) lets :meth:`ensure_vision` confirm the model can see images
    before any image is made; ``model_name`` names it in messages.
    """

    def __init__(
        self,
        model: BaseChatModel | StructuredLLM,
        *,
        model_name: str = "",
        gateway: StatusSource | None = None,
        counter: LLMCallCounter | None = None,
        max_side: int = MAX_CHECK_SIDE,
    ) -> None:
        self.llm = model if isinstance(model, StructuredLLM) else StructuredLLM(model, counter)
        self.model_name = model_name or str(getattr(model, "model", "") or "the vision model")
        self.gateway = gateway
        self.max_side = max_side
        self._vision_ok = False

    @property
    def counter(self) -> LLMCallCounter:
        return self.llm.counter

    async def ensure_vision(self) -> None:
        """Raise :class:`CapabilityMissing` when the model can't take images (once)."""
        if self._vision_ok or self.gateway is None:
            return
        status = await self.gateway.status(self.model_name)
        if not status.vision:
            raise no_vision_error(self.model_name)
        self._vision_ok = True

    def messages(self, image: Image.Image, constraints: list[Constraint]) -> list[BaseMessage]:
        questions = "\n".join(f"{i}. {c.question}" for i, c in enumerate(constraints, 1))
        data_url = "data:image/jpeg;base64," + encode_image(image, self.max_side)
        content: list[str | dict[str, Any]] = [
            {"type": "text", "text": f"Questions about the attached image:\n{questions}"},
            {"type": "image_url", "image_url": {"url": data_url}},
        ]
        return [
            SystemMessage(render("quality_check.md", n=len(constraints))),
            HumanMessage(content=content),
        ]

    async def check(self, image: Image.Image, constraints: list[Constraint]) -> Verdict:
        """The verdict for ``image``; no call at all when there is nothing to check."""
        if not constraints:
            return Verdict()
        n = len(constraints)
        try:
            reply = await self.llm.ask(
                CheckReply,
                self.messages(image, constraints),
                purpose="check",
                check=_all_answered(n),
            )
        except ModelOutputError as err:
            log.warning("check: no usable verdict (%s)", err)
            unknown = [ConstraintResult(index=i, passed=None) for i in range(n)]
            return Verdict(results=unknown, error=err.message)
        by_number = {a.number: a for a in reply.answers if 1 <= a.number <= n}
        if len(by_number) < n and len(reply.answers) == n:  # numbering garbled: use order
            by_number = {i: a for i, a in enumerate(reply.answers, 1)}
        results = []
        for i, c in enumerate(constraints):
            a = by_number.get(i + 1)
            if a is None:
                results.append(ConstraintResult(index=i, passed=None))
                continue
            passed = a.answer == "yes"
            if c.kind == "count" and a.count is not None and isinstance(c.expected, int):
                passed = a.count == c.expected  # the count seen beats a careless "yes"
            results.append(
                ConstraintResult(index=i, passed=passed, seen=a.count, reason=a.reason[:200])
            )
        return Verdict(results=results)


# --- CLIP hook --------------------------------------------------------------------------------
class ImageScorer(Protocol):
    """Scores how well an image matches a text (higher is better)."""

    def score(self, image: Image.Image, text: str) -> float: ...


class TransformersClipScorer:
    """CLIPScore (100 × cosine similarity) with a local ``transformers`` CLIP folder.

    Loads lazily on first use, from local files only (never the hub), on the CPU: the
    model is small next to the image pipeline and must not compete for its VRAM.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._model: Any = None
        self._processor: Any = None

    def _load(self) -> None:
        from transformers import CLIPModel, CLIPProcessor

        self._model = CLIPModel.from_pretrained(self.path, local_files_only=True).eval()
        self._processor = CLIPProcessor.from_pretrained(self.path, local_files_only=True)

    def score(self, image: Image.Image, text: str) -> float:
        import torch

        if self._model is None:
            self._load()
        inputs = self._processor(
            text=[text],
            images=image.convert("RGB"),
            return_tensors="pt",
            padding=True,
            truncation=True,
        )
        with torch.no_grad():
            out = self._model(**inputs)
        img = out.image_embeds / out.image_embeds.norm(dim=-1, keepdim=True)
        txt = out.text_embeds / out.text_embeds.norm(dim=-1, keepdim=True)
        return float(100.0 * (img * txt).sum())

    async def ascore(self, image: Image.Image, text: str) -> float:
        return await asyncio.to_thread(self.score, image, text)


def load_clip_scorer(path: Path | None) -> ImageScorer | None:
    """A CLIP scorer for the folder at ``path``, or None (silently) when unavailable."""
    if path is None or not (Path(path) / "config.json").is_file():
        return None
    config = Path(path) / "config.json"
    try:  # cheap look before importing torch: is this a transformers CLIP folder?
        if json.loads(config.read_text(encoding="utf-8")).get("model_type") != "clip":
            log.info("%s is not a transformers CLIP folder; ranking without CLIP", path)
            return None
    except (OSError, ValueError, AttributeError):
        return None
    scorer = TransformersClipScorer(Path(path))
    try:
        scorer._load()
    except (OSError, ValueError, ImportError, RuntimeError, KeyError) as err:
        # a broken or partial folder just means "no CLIP": ranking goes on without it
        log.info("CLIP scorer unavailable at %s: %s", path, err)
        return None
    return scorer
