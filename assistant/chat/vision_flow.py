"""The picture-in flow of one chat: upload → PNG info or description → generate/img2img/inpaint.

UI-agnostic like :mod:`assistant.studio.flow`: it talks to a :class:`VisionUI` (``say``/``show``
as in :class:`assistant.studio.flow.StudioUI`, plus ``show_images`` and ``show_mask_painter``)
and receives button presses through :meth:`VisionFlow.on_action`. Images are made by the
same ``runner`` the studio uses, so every result is saved with its metadata.

* :meth:`~VisionFlow.on_upload` — settings found in the PNG are shown *as data* with
  "Reuse these settings exactly" / "Describe with the vision model"; otherwise the
  picture is described and shown as a prompt card with "Generate from this prompt",
  "Use as img2img init" and "Inpaint a region".
* "Inpaint a region" and the masks: :class:`assistant.chat.inpaint_flow.InpaintSteps`,
  a mixin of :class:`VisionFlow`. Buttons are typed actions
  (:mod:`assistant.studio.actions`) routed by :attr:`VisionFlow.table`.

Nothing read from a file's metadata is ever sent to a model: it is only displayed, in
code blocks, and reused verbatim as generation settings when the user asks for that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

from PIL import Image

from assistant.chat.inpaint_flow import (
    INPAINT,
    INPAINT_REGION,
    MASK_ACTION,
    USE_MASK,
    WORK_PIXELS,
    InpaintSteps,
    VisionUI,
    fit_size,
    plain,
)
from assistant.chat.state import ChatState
from assistant.prompting.spec import Family, aspect_of, merge_negative, native_size
from assistant.studio.actions import ActionKind, ActionTable, ImagePayload
from assistant.studio.flow import Runner
from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.messages import msg
from tools.core.request import ImageRequest, parse_request
from tools.core.settings import Settings
from tools.infotext.text import reuse_notes
from vision.caption import Captioner, ImageDescription
from vision.uploads import Upload, UploadMetadata, load_upload, upload_path

# The vision buttons (see assistant.studio.actions); the inpaint ones are in inpaint_flow.
REUSE_SETTINGS = ActionKind("vision_reuse", ImagePayload)
DESCRIBE_IMAGE = ActionKind("vision_describe", ImagePayload)
GENERATE_FROM = ActionKind("vision_generate", ImagePayload)
IMG2IMG_FROM = ActionKind("vision_img2img", ImagePayload)
REUSE, DESCRIBE, GENERATE, IMG2IMG = (
    k.name for k in (REUSE_SETTINGS, DESCRIBE_IMAGE, GENERATE_FROM, IMG2IMG_FROM)
)  # the wire names
__all__ = ["DESCRIBE", "GENERATE", "IMG2IMG", "INPAINT", "MASK_ACTION", "REUSE", "VisionFlow",
           "VisionUI"]


def code_block(text: str) -> str:
    """``text`` in a fenced block, so nothing in it renders as Markdown."""
    return "```text\n" + text.replace("```", "'''") + "\n```"


class VisionFlow(InpaintSteps):
    """Holds the uploads and descriptions of one chat and runs the vision buttons.

    The language and the inpaint step in progress live in the chat's shared ``state``.
    """

    def __init__(
        self,
        captioner: Captioner,
        runner: Runner,
        settings: Settings,
        *,
        state: ChatState | None = None,
        family: str = "sd15",
        overrides: Mapping[str, Any] | None = None,
        presets: list[str] | None = None,
        img2img_strength: float = 0.6,
        inpaint_strength: float = 0.9,
    ) -> None:
        self.captioner = captioner
        self.runner = runner
        self.settings = settings
        self.state = state if state is not None else ChatState()
        self.family = cast(Family, family if family in WORK_PIXELS else "sd15")
        self.overrides: dict[str, Any] = dict(overrides or {})
        self.presets = presets
        self.img2img_strength = img2img_strength
        self.inpaint_strength = inpaint_strength
        self.uploads: dict[str, Upload] = {}
        self.descriptions: dict[str, ImageDescription] = {}
        self.table = ActionTable()
        self.table.add(REUSE_SETTINGS, self._pressed(self._reuse))
        self.table.add(DESCRIBE_IMAGE, self._pressed(lambda p, ui: self.describe(p.image_id, ui)))
        self.table.add(GENERATE_FROM, self._pressed(self._generate))
        self.table.add(IMG2IMG_FROM, self._pressed(self._img2img))
        self.table.add(INPAINT_REGION, self._pressed(self._inpaint))
        self.table.add(USE_MASK, self._pressed(self._use_mask))

    # --- uploads ---------------------------------------------------------------------------
    async def on_upload(self, upload: Upload, ui: VisionUI) -> None:
        """Show the PNG's settings as data with two choices, or describe the picture."""
        self.uploads[upload.id] = upload
        self.state.inpaint.last_image = upload.path  # what "change the hat…" edits
        if upload.frames > 1:
            await ui.say(msg("upload_first_frame", self.lang, name=upload.original_name,
                             frames=upload.frames))
        if upload.downscaled:
            w, h = upload.original_size
            await ui.say(
                msg("upload_downscaled", self.lang, width=w, height=h, new_width=upload.width,
                   new_height=upload.height)
            )  # fmt: skip
        meta = upload.metadata
        if meta is not None and (meta.prompt or meta.params):
            ids = ImagePayload(image_id=upload.id)
            acts = [DESCRIBE_IMAGE.button(msg("act_describe", self.lang), ids)]
            if meta.request is not None:
                acts.insert(0, REUSE_SETTINGS.button(msg("act_reuse", self.lang), ids))
            await ui.show(self.metadata_card(meta), acts)
            return
        await self.describe(upload.id, ui)

    def metadata_card(self, meta: UploadMetadata) -> str:
        """The file's settings, every value inside a code block (it is data, not Markdown)."""
        source = {"a1111": "AUTOMATIC1111", "comfyui": "ComfyUI", "fooocus": "Fooocus"}
        lines = [msg("pnginfo_intro", self.lang, source=source.get(meta.source, meta.source))]
        if meta.prompt:
            lines += ["", f"**{msg('prompt_label', self.lang)}**", code_block(meta.prompt)]
        if meta.negative_prompt:
            negative = code_block(meta.negative_prompt)
            lines += ["", f"**{msg('negative_label', self.lang)}**", negative]
        if meta.params:
            settings = "\n".join(f"{k}: {v}" for k, v in meta.params.items())
            lines += ["", f"**{msg('settings_label', self.lang)}**", code_block(settings)]
        if meta.request_error is not None:
            problem = meta.request_error.localized(self.lang)
            lines += ["", msg("pnginfo_unusable", self.lang, error=plain(problem))]
        lines += [f"\n{plain(note)}" for note in reuse_notes(meta.reuse, self.lang)]
        return "\n".join(lines)

    def upload(self, image_id: str) -> Upload:
        """A known upload, or the stored copy of ``image_id`` (e.g. after a restart)."""
        if image_id in self.uploads:
            return self.uploads[image_id]
        path = upload_path(self.settings, image_id)
        with Image.open(path) as im:
            size = im.size
        found = Upload(image_id, path, size[0], size[1], path.name, "png", size)
        self.uploads[image_id] = found
        return found

    # --- descriptions ----------------------------------------------------------------------
    async def description(self, image_id: str) -> ImageDescription:
        """The cached description of an upload, made on first use (one VLM call)."""
        if image_id not in self.descriptions:
            image = self.upload(image_id).open()
            self.descriptions[image_id] = await self.captioner.describe(image, lang=self.lang)
        return self.descriptions[image_id]

    async def describe(self, image_id: str, ui: VisionUI) -> ImageDescription:
        """Describe the picture and show it as a prompt card with the next steps."""
        desc = await self.description(image_id)
        ids = ImagePayload(image_id=image_id)
        await ui.show(
            self.description_card(desc),
            [
                GENERATE_FROM.button(msg("act_generate", self.lang), ids),
                IMG2IMG_FROM.button(msg("act_img2img", self.lang), ids),
                INPAINT_REGION.button(msg("act_inpaint", self.lang), ids),
            ],
        )
        return desc

    def description_card(self, desc: ImageDescription) -> str:
        lines = [f"{msg('describe_intro', self.lang)} {plain(desc.summary)}".rstrip()]
        lines += ["", f"**{msg('prompt_label', self.lang)}**", code_block(desc.prompt)]
        negative = merge_negative(self.family, desc.negative, self.presets)
        lines += ["", f"**{msg('negative_label', self.lang)}**", code_block(negative)]
        return "\n".join(lines)

    # --- buttons -----------------------------------------------------------------------------
    async def on_action(self, name: str, payload: Mapping[str, Any], ui: VisionUI) -> None:
        """A press of one of this flow's buttons; ``payload`` carries ``image_id`` (and the
        mask). :attr:`table` checks it and routes it."""
        await self.table.dispatch(name, payload, ui)

    def _pressed(
        self, handler: Callable[[Any, VisionUI], Awaitable[object]]
    ) -> Callable[[Any, VisionUI], Awaitable[object]]:
        """Any vision button ends a pending "Inpaint a region" (that button starts one)."""

        async def pressed(payload: Any, ui: VisionUI) -> object:
            self.state.inpaint.awaiting_mask = None
            return await handler(payload, ui)

        return pressed

    async def _reuse(self, payload: ImagePayload, ui: VisionUI) -> None:
        meta = self.upload(payload.image_id).metadata
        if meta is None or meta.request is None:
            raise InvalidRequest.of("upload_unknown", image_id=payload.image_id)
        await self._run(meta.request, ui)  # exactly as written, no panel overrides

    async def _generate(self, payload: ImagePayload, ui: VisionUI) -> None:
        up, desc = self.upload(payload.image_id), await self.description(payload.image_id)
        width, height = native_size(self.family, aspect_of(up.width, up.height))
        await self._run(self._request(desc.prompt, desc.negative, width, height), ui)

    async def _img2img(self, payload: ImagePayload, ui: VisionUI) -> None:
        up, desc = self.upload(payload.image_id), await self.description(payload.image_id)
        width, height = fit_size(up.width, up.height, WORK_PIXELS[self.family])
        await self._run(self._request(desc.prompt, desc.negative, width, height,
                                      init_image=up.path, strength=self.img2img_strength), ui)

    def _request(self, prompt: str, negative: str, width: int, height: int, **extra: Any
                 ) -> ImageRequest:  # fmt: skip
        """A validated request: the panel's overrides, but the size follows the image."""
        data: dict[str, Any] = {
            k: v for k, v in self.overrides.items() if k not in ("width", "height", "hires")
        }
        data |= {
            "prompt": prompt,
            "negative_prompt": merge_negative(self.family, negative, self.presets),
            "width": width,
            "height": height,
            **extra,
        }
        return parse_request(data)

    async def _run(
        self, request: ImageRequest, ui: VisionUI, before: Upload | None = None
    ) -> tuple[list[GeneratedImage], list[Path]]:
        images, paths = await self.runner(request)
        # The first result becomes an upload too, so it can be inpainted in turn.
        result = await asyncio.to_thread(load_upload, paths[0], self.settings, name=paths[0].name)
        self.uploads[result.id] = result
        if before is not None and before.id in self.descriptions:
            self.descriptions[result.id] = self.descriptions[before.id]
        acts = [INPAINT_REGION.button(msg("act_inpaint", self.lang),
                                      ImagePayload(image_id=result.id))]
        # The runner's display already showed the result (with its seed): don't repeat it.
        if before is not None:
            await ui.show_images(msg("before_after", self.lang), [before.path], acts)
        else:
            await ui.show(msg("inpaint_done", self.lang), acts)
        return images, list(paths)
