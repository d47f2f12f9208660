"""The studio's part of a chat's state: plain, serialisable data, shared by reference.

:class:`StudioSession` is what a :class:`~assistant.studio.flow.Studio` reads and writes:
the user's language and the :class:`StudioState` (interview, prompt spec, variations,
the images last shown). The chat's own state (:class:`assistant.chat.state.ChatState`)
extends it, so the studio, the vision flow and the ledger commands of one chat all
work on one object, and saving that object is saving the chat.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from assistant.prompting.interview import InterviewState
from assistant.prompting.spec import PromptSpec
from tools.core.engine import GeneratedImage
from tools.core.messages import Lang
from tools.core.request import ImageRequest


class ShownImage(BaseModel):
    """An image the chat showed: how it was made and where its PNG is."""

    model_config = ConfigDict(extra="ignore")

    request: ImageRequest
    seed: int
    path: Path
    width: int = Field(gt=0)
    height: int = Field(gt=0)

    @classmethod
    def from_result(cls, image: GeneratedImage, path: Path) -> ShownImage:
        return cls(request=image.request, seed=image.seed, path=path,
                   width=image.image.width, height=image.image.height)


class StudioState(BaseModel):
    """Interview → prompt spec → images → next steps, as data."""

    model_config = ConfigDict(extra="ignore")

    interview: InterviewState = Field(default_factory=InterviewState)
    spec: PromptSpec | None = None
    variants: list[PromptSpec] = Field(default_factory=list)
    last: list[ShownImage] = Field(default_factory=list)
    awaiting_tweak: bool = False  # the next message describes a change to the picture


class StudioSession(BaseModel):
    """What a studio shares with its chat: the user's language and the studio state."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    lang: Lang = "en"
    studio: StudioState = Field(default_factory=StudioState)
