"""The picture-in flow of one chat: upload → PNG info or description → generate/img2img/inpaint.

UI-agnostic like :mod:`assistant.studio.flow`: it talks to a :class:`VisionUI` (``say``/``show``
as in :class:`assistant.studio.flow.StudioUI`, plus ``show_images`` and ``show_mask_painter``)
and receives button presses through :meth:`VisionFlow.on_action`. Images are made by the
same ``runner`` the studio uses, so every result is saved with its metadata.

* :meth:`~VisionFlow.on_upload` — settings found in the PNG are shown *as data* with
  "Reuse these settings exactly" / "Describe with the vision model"; otherwise the
  picture is described and shown as a prompt card with "Generate from this prompt",
  "Use as img2img init" and "Inpaint a region".
* "Inpaint a region" shows the ``MaskPainter`` element; it answers with the
  :data:`MASK_ACTION` action, handled by :meth:`~VisionFlow.on_mask`: caption the crop
  under the mask → propose a prompt for that area only → inpaint → before/after. Until
  then the chat's :class:`~assistant.chat.state.InpaintState` remembers the image, so a
  typed ``x,y,w,h`` box (:meth:`~VisionFlow.on_message`) or an uploaded mask
  (:meth:`~VisionFlow.on_mask_upload`) does the same. Buttons are typed actions
  (:mod:`assistant.studio.actions`) routed by :attr:`VisionFlow.table`.

Nothing read from a file's metadata is ever sent to a model: it is only displayed, in
code blocks, and reused verbatim as generation settings when the user asks for that.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

from PIL import Image

from assistant.chat.state import ChatState
from assistant.prompting.spec import Family, aspect_of, merge_negative, native_size
from assistant.studio.actions import ActionKind, ActionSpec, ActionTable, ImagePayload, MaskPayload
from assistant.studio.flow import Runner
from assistant.studio.hires import inpaint_pixels
from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.messages import lang_code, msg
from tools.core.request import MAX_PIXELS, MAX_SIDE, ImageRequest, parse_request
from tools.core.settings import Settings
from tools.infotext.text import reuse_notes
from vision.caption import Captioner, ImageDescription
from vision.masks import Mask, mask_from_box, mask_from_data_url, mask_from_image
from vision.uploads import Upload, UploadMetadata, load_upload, upload_path, uploads_dir

# The vision buttons (see assistant.studio.actions); the painter calls USE_MASK itself.
REUSE_SETTINGS = ActionKind("vision_reuse", ImagePayload)
DESCRIBE_IMAGE = ActionKind("vision_describe", ImagePayload)
GENERATE_FROM = ActionKind("vision_generate", ImagePayload)
IMG2IMG_FROM = ActionKind("vision_img2img", ImagePayload)
INPAINT_REGION = ActionKind("vision_inpaint", ImagePayload)
USE_MASK = ActionKind("egaki_mask", MaskPayload)
REUSE, DESCRIBE, GENERATE, IMG2IMG, INPAINT, MASK_ACTION = (
    k.name for k in (REUSE_SETTINGS, DESCRIBE_IMAGE, GENERATE_FROM, IMG2IMG_FROM, INPAINT_REGION,
                     USE_MASK)
)  # the wire names
# "x,y,w,h what to paint" right after "Inpaint a region": a box mask (pixels or fractions)
_NUM = r"\s*[\d.]+\s*"
BOX = re.compile(rf"^(?P<box>{_NUM},{_NUM},{_NUM},{_NUM})(?P<rest>.*)$", re.S)
# Pixel budget per family for img2img/inpaint at the image's own shape.
WORK_PIXELS = {"sd15": 768 * 1024, "sdxl": 1536 * 1536}
PREVIEW_SIDE = 1024  # the painter's background; the mask still comes back at full size
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()<>!#|~])")


class VisionUI(Protocol):
    """What the vision flow needs from the front end (the studio's two, plus two more)."""

    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[ActionSpec]) -> None: ...

    async def show_images(self, text: str, images: list[Path], actions: list[ActionSpec]) -> None:
        """Show ``text``, then the image files (``Path``s) in order, then the buttons."""
        ...

    async def show_mask_painter(self, text: str, props: dict[str, Any]) -> None:
        """Show ``text`` with ``cl.CustomElement(name="MaskPainter", props=props)``."""
        ...


def plain(text: str) -> str:
    """Model text made inert for Markdown (no links or remote images can render)."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def code_block(text: str) -> str:
    """``text`` in a fenced block, so nothing in it renders as Markdown."""
    return "```text\n" + text.replace("```", "'''") + "\n```"


def fit_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """The image's shape within ``max_pixels`` and the engine's limits, sides multiples of 8."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)), MAX_SIDE / max(width, height))
    return (max(64, int(width * scale) // 8 * 8), max(64, int(height * scale) // 8 * 8))


def preview_data_url(path: Path, max_side: int = PREVIEW_SIDE) -> str:
    """A small JPEG data URL of the image at ``path`` for the painter's background."""
    with Image.open(path) as im:
        small = im.convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class VisionFlow:
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

    @property
    def lang(self) -> str:
        return self.state.lang

    @property
    def awaiting_mask(self) -> str | None:
        """The image waiting for a mask after "Inpaint a region", if any."""
        return self.state.inpaint.awaiting_mask

    # --- uploads ---------------------------------------------------------------------------
    async def on_upload(self, upload: Upload, ui: VisionUI) -> None:
        """Show the PNG's settings as data with two choices, or describe the picture."""
        self.uploads[upload.id] = upload
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

    async def _inpaint(self, payload: ImagePayload, ui: VisionUI) -> None:
        props = self.painter_props(payload.image_id)
        self.state.inpaint.awaiting_mask = payload.image_id  # a box or a mask upload also do
        await ui.show_mask_painter(msg("paint_mask", self.lang), props)

    async def _use_mask(self, payload: MaskPayload, ui: VisionUI) -> None:
        await self.on_mask(payload.image_id, payload.mask, payload.instruction, ui)

    # --- the mask as a message or an upload ----------------------------------------------------
    def wants_message(self, text: str) -> bool:
        """True when ``text`` is a typed ``x,y,w,h`` box for the image awaiting a mask."""
        return self.awaiting_mask is not None and BOX.match(text) is not None

    async def on_message(self, text: str, ui: VisionUI) -> None:
        """``x,y,w,h what to paint`` after "Inpaint a region": inpaint that box."""
        box, image_id = BOX.match(text), self.awaiting_mask
        if box is None or image_id is None:
            return  # not a box for a pending inpaint: ask wants_message first
        self.state.inpaint.awaiting_mask = None
        await self.on_mask(image_id, box.group("box"), box.group("rest"), ui)

    async def on_mask_upload(
        self, path: Path, name: str, mime: str, instruction: str, ui: VisionUI
    ) -> None:
        """A black-and-white mask file uploaded after "Inpaint a region" (white = change).

        The wait ends here, even when the file turns out not to be a usable image."""
        image_id = self.awaiting_mask
        if image_id is None:
            return  # nothing is waiting for a mask: ask awaiting_mask first
        self.state.inpaint.awaiting_mask = None
        upload = await asyncio.to_thread(load_upload, path, self.settings, name=name, mime=mime)
        await self.on_mask(image_id, upload.open(), instruction, ui)

    def painter_props(self, image_id: str, *, ask: bool = False) -> dict[str, Any]:
        """Props for ``MaskPainter``; ``ask=True`` when shown with ``AskElementMessage``."""
        up = self.upload(image_id)
        return {
            "src": preview_data_url(up.path),
            "image_id": up.id,
            "width": up.width,
            "height": up.height,
            "lang": lang_code(self.lang),
            "action": MASK_ACTION,
            "submit": ask,
        }

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

    # --- inpainting ----------------------------------------------------------------------------
    def decode_mask(self, upload: Upload, mask: str | Mask | Image.Image) -> Mask:
        """A painter data URL, an ``x,y,w,h`` box, a mask image or a :class:`Mask`."""
        size = (upload.width, upload.height)
        if isinstance(mask, Mask):
            return mask if mask.size == size else mask_from_image(mask.image, size)
        if isinstance(mask, Image.Image):
            return mask_from_image(mask, size)
        if str(mask).lstrip().lower().startswith("data:"):
            return mask_from_data_url(str(mask), size)
        return mask_from_box(str(mask), size)

    async def on_mask(
        self, image_id: str, mask: str | Mask | Image.Image, instruction: str, ui: VisionUI
    ) -> tuple[list[GeneratedImage], list[Path]]:
        """Caption the masked crop, propose a local prompt, inpaint, show before/after.

        Two VLM calls (region caption, then the inpaint prompt), three when the picture
        has not been described yet. Returns the runner's images and paths.
        """
        up = self.upload(image_id)
        binary = self.decode_mask(up, mask)
        for warning in binary.warnings(self.lang):
            await ui.say(warning)
        digest = hashlib.sha256(binary.image.tobytes()).hexdigest()[:8]
        mask_path = binary.save(uploads_dir(self.settings), f"{up.id}-mask-{digest}")

        full = await self.description(image_id)
        image = up.open()
        region = await self.captioner.describe_region(image, binary, lang=self.lang)
        proposal = await self.captioner.propose_inpaint_prompt(
            full, region, instruction, lang=self.lang
        )
        await ui.say(
            msg("inpaint_plan", self.lang, region=plain(region.summary or region.caption),
               prompt=proposal.prompt.replace("`", "'"))
        )  # fmt: skip

        width, height = fit_size(up.width, up.height, inpaint_pixels(WORK_PIXELS[self.family],
                                 self.overrides.get("inpaint_area"), self.settings.inpaint_area))
        request = self._request(
            proposal.prompt, proposal.negative, width, height, init_image=up.path,
            mask_image=mask_path, strength=self.inpaint_strength, batch_size=1,
        )  # fmt: skip
        return await self._run(request, ui, before=up)
