"""Masks from words: "change the hat on the left to a red beret" → a mask → inpaint.

:class:`MaskWordsFlow` works on the chat's newest picture (uploaded or made; the chat's
``state.inpaint.last_image``) with the vision flow's painter and inpainting:

1. read the words (:func:`assistant.prompting.edit_words.read_edit`): what to find, which
   one, what instead; the conversation routes a message here when
   :meth:`~MaskWordsFlow.wants_message` says it is such an edit;
2. find the regions with the :class:`~vision.grounding.regions.Segmenter` (off the loop);
3. words such as "left" or "the second" pick one; a single candidate is taken; several
   are asked about — "Which one?" with the candidates outlined and numbered on a preview
   and a button per candidate plus "All of them" (:data:`PICK_REGION`), or a typed
   answer ("the left one", "#2", 「右の」);
4. the mask is painted into the ``MaskPainter`` with the replacement typed in, for the
   person to accept or touch up; "Use this mask" goes on as any painted mask does
   (region caption → inpaint prompt → inpaint → before/after).

Nothing found, no segmentation model, or words it cannot read: it says so and shows the
empty painter, so the person can still paint the area.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from pydantic import Field

from assistant.chat.inpaint_flow import VisionUI
from assistant.chat.vision_flow import VisionFlow
from assistant.prompting.edit_words import EditWords, parse_rules, read_choice, read_edit
from assistant.studio.actions import ActionKind, ActionTable, ImagePayload
from tools.core.errors import CapabilityMissing, InvalidRequest
from tools.core.messages import msg
from vision.grounding.regions import Candidate, Segmenter, outlined, pick, union
from vision.uploads import Upload, load_upload, save_atomic, uploads_dir

MAX_CANDIDATES = 6  # more than this many look-alikes: the biggest ones are offered


class PickPayload(ImagePayload):
    """A "which one?" answer: the candidate's number (1, 2, …), or 0 for all of them."""

    pick: int = Field(ge=0, le=MAX_CANDIDATES)


PICK_REGION = ActionKind("mask_words_pick", PickPayload)


@dataclass
class _Question:
    """A "which one?" waiting for its answer."""

    edit: EditWords
    words: str
    candidates: list[Candidate]


class MaskWordsFlow:
    """Finds the region named in a message and hands its mask to the painter."""

    def __init__(
        self,
        vision: VisionFlow,
        segmenter: Callable[[], Segmenter],
        model: BaseChatModel | None = None,
    ) -> None:
        self.vision = vision
        self.segmenter = segmenter
        self.model = model
        self.asked: dict[str, _Question] = {}  # image id → the open question
        self._uploads: dict[Path, str] = {}  # a made picture's path → its upload id
        self.table = ActionTable()
        self.table.add(PICK_REGION, self._picked)

    @property
    def lang(self) -> str:
        return self.vision.lang

    def wants_message(self, text: str) -> bool:
        """True for "change/remove <part of the picture> …" once the chat has a picture,
        and for a typed answer ("the left one", 「2番」) while "which one?" is open."""
        if self.asked and read_choice(text) is not None:
            return True
        return self.vision.state.inpaint.last_image is not None and parse_rules(text) is not None

    async def on_message(self, text: str, ui: VisionUI) -> None:
        """Read the edit, find its region on the newest picture, ask or show the mask."""
        choice = read_choice(text) if self.asked else None
        if choice is not None:  # the answer to the latest "which one?"
            image_id = next(reversed(self.asked))
            question = self.asked[image_id]
            chosen = pick(question.candidates, *choice)
            if chosen:
                del self.asked[image_id]
                instruction = question.edit.instruction(question.words)
                await self._show_mask(self.vision.upload(image_id), chosen, question.edit,
                                      instruction, ui)  # fmt: skip
            else:  # "the fifth" of two: ask again
                await ui.say(msg("words_which_one", self.lang, count=len(question.candidates),
                                 target=question.edit.target))  # fmt: skip
            return
        up = await self._picture()
        if up is None:
            await ui.say(msg("words_no_picture", self.lang))
            return
        edit = await read_edit(text, self.model)
        if edit is None or not edit.target:
            await self._paint_yourself(up, msg("words_unclear", self.lang, words=text[:80]),
                                       text, ui)  # fmt: skip
            return
        instruction = edit.instruction(text)
        try:
            segmenter = self.segmenter()
            await ui.say(msg("words_looking", self.lang, target=edit.target,
                             segmenter=segmenter.name))  # fmt: skip
            found = await asyncio.to_thread(segmenter.find, up.open(), edit.target)
        except CapabilityMissing as err:
            missing = f"{err.localized(self.lang)}\n\n{msg('words_paint_instead', self.lang)}"
            await self._paint_yourself(up, missing, instruction, ui)
            return
        if not found:
            not_found = msg("words_not_found", self.lang, target=edit.target)
            await self._paint_yourself(up, not_found, instruction, ui)
            return
        found = sorted(found, key=lambda c: c.area, reverse=True)[:MAX_CANDIDATES]
        chosen = pick(found, edit.position, edit.ordinal)
        if len(chosen) == 1 or (edit.position == "all" and chosen):
            await self._show_mask(up, chosen, edit, instruction, ui)
            return
        await self._ask_which(up, edit, text, found, ui)

    async def _ask_which(
        self, up: Upload, edit: EditWords, words: str, found: list[Candidate], ui: VisionUI
    ) -> None:
        ordered = pick(found)  # left to right: the numbers read like the picture
        self.asked[up.id] = _Question(edit, words, ordered)
        preview = outlined(up.open(), ordered)
        digest = hashlib.sha256(preview.tobytes()).hexdigest()[:8]
        path = await asyncio.to_thread(
            save_atomic, preview, uploads_dir(self.vision.settings) / f"{up.id}-which-{digest}.png"
        )
        buttons = [
            PICK_REGION.button(msg("act_words_pick", self.lang, number=n),
                               PickPayload(image_id=up.id, pick=n))
            for n in range(1, len(ordered) + 1)
        ]  # fmt: skip
        buttons.append(PICK_REGION.button(msg("act_words_all", self.lang),
                                          PickPayload(image_id=up.id, pick=0)))  # fmt: skip
        text = msg("words_which_one", self.lang, count=len(ordered), target=edit.target)
        await ui.show_images(text, [path], buttons)

    async def _picked(self, payload: PickPayload, ui: VisionUI) -> None:
        question = self.asked.pop(payload.image_id, None)
        if question is None or payload.pick > len(question.candidates):
            raise InvalidRequest.of("words_pick_stale")
        chosen = question.candidates if payload.pick == 0 else [
            question.candidates[payload.pick - 1]]  # fmt: skip
        up = self.vision.upload(payload.image_id)
        instruction = question.edit.instruction(question.words)
        await self._show_mask(up, chosen, question.edit, instruction, ui)

    async def _show_mask(self, up: Upload, chosen: list[Candidate], edit: EditWords,
                         instruction: str, ui: VisionUI) -> None:  # fmt: skip
        props = self.vision.painter_props(up.id, mask=union(chosen), instruction=instruction)
        self.vision.state.inpaint.awaiting_mask = up.id  # a box or a mask upload also do
        await ui.show_mask_painter(msg("words_mask_found", self.lang, target=edit.target), props)

    async def _paint_yourself(self, up: Upload, text: str, instruction: str,
                              ui: VisionUI) -> None:  # fmt: skip
        props = self.vision.painter_props(up.id, instruction=instruction)
        self.vision.state.inpaint.awaiting_mask = up.id
        await ui.show_mask_painter(text, props)

    async def _picture(self) -> Upload | None:
        """The chat's newest picture as an upload (a made one is stored as one once)."""
        path = self.vision.state.inpaint.last_image
        if path is None or not path.is_file():
            return None
        folder = uploads_dir(self.vision.settings)
        if path.parent == folder:
            return self.vision.upload(path.stem)
        if path not in self._uploads:
            up = await asyncio.to_thread(load_upload, path, self.vision.settings, name=path.name)
            self.vision.uploads[up.id] = up
            self._uploads[path] = up.id
        return self.vision.upload(self._uploads[path])
