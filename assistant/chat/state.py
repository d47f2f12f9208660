"""One chat's state, as one serialisable object the chat's flows share by reference.

:class:`ChatState` holds everything a chat remembers between messages: the user's
language, the studio's interview/spec/images (:class:`~assistant.studio.state.StudioState`),
the inpaint step in progress, the words the images are being made for, and the text
history kept for a resumed thread. The conversation, its studio, its vision flow and
its ledger commands all get the *same* object, so a language switch or a pending mask
is seen by every one of them, and the image runner reads its ledger context from it
(:meth:`ChatState.record_context`) when it records a picture.

:meth:`snapshot` is what the UI saves with the thread; :meth:`restore` loads one back
*in place* (the flows keep their reference), upgrading older snapshots through the
named, append-only :data:`MIGRATIONS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant.studio.state import StudioSession
from tools.core.messages import lang_code
from tools.ledger.types import RecordContext

log = logging.getLogger(__name__)

VERSION = 2
HISTORY_KEPT = 40  # text turns saved for a resumed thread


class Turn(BaseModel):
    """One text turn of the conversation, as saved for a resumed thread."""

    role: Literal["human", "ai"]
    content: str


class InpaintState(BaseModel):
    """The inpaint step in progress: after "Inpaint a region", the image waiting for a mask
    (painted, uploaded, or typed as a box)."""

    awaiting_mask: str | None = None
    # the newest picture of the chat (uploaded or made): what "change the hat…" edits
    last_image: Path | None = None


class ChatState(StudioSession):
    """Everything one chat remembers; see the module docstring."""

    version: int = VERSION
    thread_id: str = ""
    user_words: str = ""  # the message being answered: stored with the images it makes
    history: list[Turn] = Field(default_factory=list)
    inpaint: InpaintState = Field(default_factory=InpaintState)

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    @classmethod
    def start(cls, browser_lang: str | None = "en", thread_id: str = "") -> ChatState:
        """A new chat in the browser's language (until the user writes otherwise)."""
        return cls(lang=lang_code(browser_lang), thread_id=thread_id)

    def record_context(self) -> RecordContext:
        """What the ledger stores with an image made now: this thread, these words."""
        return RecordContext(user_words=self.user_words, thread_id=self.thread_id)

    # --- persistence ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state for the thread (the UI saves it with the chat)."""
        return self.model_dump(mode="json")

    def restore(self, data: Mapping[str, Any]) -> None:
        """Load a :meth:`snapshot` (of any version) into this object, in place.

        The live thread id is kept; images whose files are gone are dropped. A snapshot
        that cannot be read is logged and leaves the state as it was.
        """
        try:
            loaded = ChatState.model_validate(migrate(data))
        except (ValidationError, ValueError, KeyError, TypeError) as err:
            log.warning("could not restore the chat state: %s", err)
            return
        loaded.studio.last = [s for s in loaded.studio.last if s.path.is_file()]
        for name in type(self).model_fields:
            if name == "thread_id" and self.thread_id:
                continue
            setattr(self, name, getattr(loaded, name))


# --- migrations: named, append-only; each takes version N's dict to N+1 -------------------


def v1_conversation_snapshot(data: dict[str, Any]) -> dict[str, Any]:
    """v1 (``Conversation.snapshot`` before ChatState): lang, history, and the studio's
    own snapshot (``state`` = interview, ``last`` items without the image size)."""
    studio = data.get("studio") or {}
    last = []
    for item in studio.get("last") or []:
        request = item["request"]
        last.append({"request": request, "seed": item["seed"], "path": item["path"],
                     "width": request["width"], "height": request["height"]})
    out: dict[str, Any] = {"version": 2, "lang": data.get("lang") or "en",
                           "history": data.get("history") or []}
    if studio:
        out["studio"] = {"interview": studio["state"], "spec": studio.get("spec"),
                         "last": last, "awaiting_tweak": bool(studio.get("awaiting_tweak"))}
    return out


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: v1_conversation_snapshot,
}


def migrate(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` brought up to :data:`VERSION` (a snapshot without a version is v1)."""
    out = dict(data)
    version = int(out.get("version") or 1)
    while version < VERSION:
        out = MIGRATIONS[version](out)
        version = int(out["version"])
    return out
