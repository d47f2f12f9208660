"""The image-making flow of one chat: interview → prompt card → images → next steps.

UI-agnostic like :mod:`assistant.chat.conversation`: it asks a :class:`StudioUI` to show text
and buttons (:class:`ActionSpec`) and receives button presses through :meth:`on_action`.
Images are made by a ``runner`` (the same :class:`assistant.studio.runner.ImageRunner` the
``generate_image`` tool uses), so every path saves, embeds metadata and displays alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from assistant.prompting.builder import SpecBuilder
from assistant.prompting.interview import Interviewer, InterviewState
from assistant.prompting.spec import PromptSpec
from assistant.prompting.spec_card import render_card
from assistant.studio.actions import (
    ActionKind,
    ActionSpec,
    ActionTable,
    IndexPayload,
    NoPayload,
    P,
    SeedPayload,
)
from assistant.studio.best_of import BestOf
from assistant.studio.hires import upscale_with
from assistant.studio.panel import PanelChoice
from assistant.studio.state import ShownImage, StudioSession, StudioState
from tools.core.engine import GeneratedImage
from tools.core.messages import msg
from tools.core.request import MAX_PIXELS, MAX_SIDE, ImageRequest
from tools.llm.structured import LLMCallCounter

log = logging.getLogger(__name__)

Runner = Callable[[ImageRequest], Awaitable[tuple[list[GeneratedImage], list[Path]]]]
# A1111's token count of a prompt for the card (the engine's ``count_tokens``); returns
# None when no tokenizer is at hand. Called in a worker thread (it may read files).
TokenCounter = Callable[[str], Any]
MORE_COUNT = 4
VARIATION_COUNT = 4

# The studio's buttons (see :mod:`assistant.studio.actions`).
NEW = ActionKind("new", NoPayload)
MORE = ActionKind("more", NoPayload)
QUICK = ActionKind("quick", NoPayload)
FULL = ActionKind("full", SeedPayload)
VARIATIONS = ActionKind("variations", NoPayload)
PICK = ActionKind("pick", IndexPayload)
TWEAK = ActionKind("tweak", NoPayload)
UPSCALE = ActionKind("upscale", NoPayload)


class StudioUI(Protocol):
    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[ActionSpec]) -> None: ...


def upscale_size(width: int, height: int, factor: float = 2.0) -> tuple[int, int] | None:
    """The largest size up to ``factor``× that the engine accepts, or None if no bigger."""
    for f in (factor, 1.5, 1.25):
        w, h = int(width * f) // 8 * 8, int(height * f) // 8 * 8
        if w <= MAX_SIDE and h <= MAX_SIDE and w * h <= MAX_PIXELS and w > width:
            return w, h
    return None


class Studio:
    """Runs the interview, the prompt spec and the image buttons of one chat.

    Its data (language, interview, spec, last images) lives in ``state``, a
    :class:`StudioSession` the chat shares; the studio keeps only its helpers (the LLM
    callers and the runner) and the panel's current choices.
    """

    def __init__(
        self,
        model: BaseChatModel,
        runner: Runner,
        *,
        state: StudioSession | None = None,
        family: str = "sd15",
        counter: LLMCallCounter | None = None,
        overrides: Mapping[str, Any] | None = None,
        best_of: BestOf | None = None,
        best_of_default: bool = False,
        token_counter: TokenCounter | None = None,
        upscalers_dir: Path | None = None,
    ) -> None:
        self.upscalers_dir = upscalers_dir
        self.session = state if state is not None else StudioSession()
        self.counter = counter or LLMCallCounter()
        self.token_counter = token_counter
        self.interviewer = Interviewer(model, counter=self.counter)
        self.builder = SpecBuilder(model, counter=self.counter)
        self.runner = runner
        self.family = family if family in ("sd15", "sdxl") else "sd15"
        self.overrides: dict[str, Any] = dict(overrides or {})
        self.images_made = 0
        self.presets: list[str] | None = None  # negative preset groups; None = all
        self.seed_lock = False
        self.best_of: BestOf | None = best_of
        self.use_best_of = best_of is not None and best_of_default
        self.table = ActionTable()
        self.table.add(NEW, self._new)
        self.table.add(MORE, self._needs_spec(self._more))
        self.table.add(QUICK, self._needs_spec(self._quick))
        self.table.add(FULL, self._needs_spec(self._full))
        self.table.add(VARIATIONS, self._needs_spec(self._variations))
        self.table.add(PICK, self._needs_spec(self._pick))
        self.table.add(TWEAK, self._needs_spec(self._ask_tweak))
        self.table.add(UPSCALE, self._needs_spec(self._upscale))

    # --- the shared state ----------------------------------------------------------------

    @property
    def state(self) -> StudioState:
        return self.session.studio

    @property
    def lang(self) -> str:
        return self.session.lang

    @property
    def spec(self) -> PromptSpec | None:
        return self.state.spec

    @property
    def variants(self) -> list[PromptSpec]:
        return self.state.variants

    @property
    def last(self) -> list[ShownImage]:
        """The images shown last, newest batch only."""
        return self.state.last

    @property
    def wants_message(self) -> bool:
        """True while the next user message belongs to this flow, not the free chat."""
        # a spec that failed to build (server error) is still pending: "GO" comes here
        pending = self.state.interview.done and self.state.spec is None
        return not self.state.interview.done or self.state.awaiting_tweak or pending

    def apply_panel(self, choice: PanelChoice) -> None:
        """Use the chat settings panel's choices from the next image on."""
        self.overrides = dict(choice.overrides)
        self.presets = choice.presets
        self.seed_lock = choice.seed_lock
        if choice.best_of is not None:
            self.use_best_of = choice.best_of and self.best_of is not None

    def _request_overrides(self, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(self.overrides)
        if self.seed_lock and self.last and "seed" not in out:
            out["seed"] = self.last[0].seed
        out.update(extra or {})
        return out

    def reset(self, lang: str | None = None) -> None:
        """A new picture: a fresh interview; the last images stay for the seed lock."""
        self.state.interview = InterviewState.start(lang or self.lang)
        self.state.spec, self.state.variants, self.state.awaiting_tweak = None, [], False

    def _interview(self) -> InterviewState:
        """The interview in the chat's current language (the interviewer may change it)."""
        return self.state.interview.model_copy(update={"language": self.session.lang})

    def _adopt(self, interview: InterviewState) -> None:
        self.state.interview = interview
        self.session.lang = interview.language

    # --- messages ----------------------------------------------------------------------

    async def on_message(self, text: str, ui: StudioUI) -> None:
        if self.state.awaiting_tweak:
            await self._tweak(text, ui)
            return
        # the words go into the record first: a turn the model fails never loses them
        self._adopt(self.interviewer.take(self._interview(), text))
        result = await self.interviewer.answer(self.state.interview)
        self._adopt(result.state)
        await ui.say(result.message())
        if result.ready:
            self.state.spec = await self._build(self.state.interview)
            await self.draw(self.state.spec, ui)

    async def _tweak(self, text: str, ui: StudioUI) -> None:
        """Rewrite the spec with the change, keeping the last seed (one LLM call)."""
        self.state.awaiting_tweak = False
        interview = self._interview()
        interview.user_words.append(text)
        seed = self.last[0].seed if self.last else None
        self._adopt(interview)
        self.state.spec = await self._build(interview)
        await self.draw(self.state.spec, ui, {"seed": seed} if seed is not None else None)

    async def _build(self, state: InterviewState) -> PromptSpec:
        return await self.builder.build(state, self.family, self.presets)  # type: ignore[arg-type]

    # --- drawing -----------------------------------------------------------------------

    async def draw(
        self, spec: PromptSpec, ui: StudioUI, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Show the card, make the images, then offer the next steps."""
        request = spec.to_image_request(self._request_overrides(extra))
        await ui.show(render_card(spec, self.lang, await self.token_counts(spec)), [])
        if self.best_of is not None and self.use_best_of:
            shown = await self.best_of.run(spec, request, ui.say)
            self._shown([g for g, _ in shown], [p for _, p in shown])
            await ui.show(msg("after_images", self.lang), self.actions())
            return
        await self._run(request, ui)

    async def token_counts(self, spec: PromptSpec) -> tuple[Any, Any]:
        """(prompt, negative) token counts for the card; (None, None) without a counter."""
        count = self.token_counter
        if count is None:
            return None, None
        return await asyncio.to_thread(lambda: (count(spec.positive), count(spec.negative)))

    async def _run(self, request: ImageRequest, ui: StudioUI) -> None:
        images, paths = await self.runner(request)
        self._shown(images, paths)
        await ui.show(msg("after_images", self.lang), self.actions())

    def _shown(self, images: list[GeneratedImage], paths: list[Path]) -> None:
        shown = zip(images, paths, strict=True)
        self.state.last = [ShownImage.from_result(g, p) for g, p in shown]
        self.images_made += len(images)

    def actions(self) -> list[ActionSpec]:
        lang = self.lang
        previews = [shown for shown in self.last if shown.request.fast]
        acts = [  # after quick previews: render the one you like at full quality
            FULL.button(msg("act_full", lang, n=i + 1), SeedPayload(seed=shown.seed))
            for i, shown in enumerate(previews[:MORE_COUNT])
        ]
        acts.append(MORE.button(msg("act_more", lang, n=MORE_COUNT)))
        if not self.overrides.get("fast"):
            acts.append(QUICK.button(msg("act_quick", lang, n=MORE_COUNT)))
        acts += [
            VARIATIONS.button(msg("act_variations", lang)),
            TWEAK.button(msg("act_tweak", lang)),
        ]
        if self.last and upscale_size(self.last[0].width, self.last[0].height):
            acts.append(UPSCALE.button(msg("act_upscale", lang)))
        acts.append(NEW.button(msg("act_new", lang)))
        return acts

    # --- buttons -----------------------------------------------------------------------

    async def on_action(self, name: str, payload: Mapping[str, Any], ui: StudioUI) -> None:
        """A press of one of this studio's buttons (:attr:`table` routes it)."""
        await self.table.dispatch(name, payload, ui)

    def _needs_spec(
        self, handler: Callable[[P, StudioUI], Awaitable[None]]
    ) -> Callable[[P, StudioUI], Awaitable[None]]:
        """Buttons about the current picture say "nothing yet" when there is none."""

        async def guarded(payload: P, ui: StudioUI) -> None:
            if self.spec is None:
                await ui.say(msg("nothing_yet", self.lang))
                return
            await handler(payload, ui)

        return guarded

    async def _new(self, _: NoPayload, ui: StudioUI) -> None:
        self.reset()
        await ui.say(msg("new_picture", self.lang))

    def _spec_request(self, overrides: Mapping[str, Any]) -> ImageRequest:
        assert self.spec is not None
        return self.spec.to_image_request(dict(overrides))

    async def _more(self, _: NoPayload, ui: StudioUI) -> None:
        # new seeds by definition, whatever the lock says
        await self._run(self._spec_request(
            {**self.overrides, "seed": None, "batch_size": MORE_COUNT}), ui)

    async def _quick(self, _: NoPayload, ui: StudioUI) -> None:
        """Fast mode: few steps, no CFG, tiny VAE; new seeds."""
        await self._run(self._spec_request(
            {**self.overrides, "seed": None, "batch_size": MORE_COUNT, "fast": True}), ui)

    async def _full(self, payload: SeedPayload, ui: StudioUI) -> None:
        """The chosen preview's seed at the panel's full settings."""
        await self._run(self._spec_request(
            {**self.overrides, "fast": False, "batch_size": 1, "seed": payload.seed}), ui)

    async def _variations(self, _: NoPayload, ui: StudioUI) -> None:
        assert self.spec is not None
        self.state.variants = await self.builder.variations(self.spec, VARIATION_COUNT)
        lines = [
            f"**#{i + 1} {v.label or v.axis}** ({v.axis}) — `{v.positive}`"
            for i, v in enumerate(self.variants)
        ]
        text = msg("variations_intro", self.lang, n=len(lines)) + "\n\n" + "\n\n".join(lines)
        picks = [
            PICK.button(msg("act_pick", self.lang, n=i + 1), IndexPayload(index=i))
            for i in range(len(self.variants))
        ]
        await ui.show(text, picks)

    async def _pick(self, payload: IndexPayload, ui: StudioUI) -> None:
        if not 0 <= payload.index < len(self.variants):
            await ui.say(msg("variant_gone", self.lang))
            return
        self.state.spec = self.variants[payload.index]
        seed = self.last[0].seed if self.last else None
        await self.draw(self.state.spec, ui, {"seed": seed} if seed is not None else None)

    async def _ask_tweak(self, _: NoPayload, ui: StudioUI) -> None:
        self.state.awaiting_tweak = True
        shown = self.last[0].seed if self.last else "—"
        await ui.say(msg("tweak_prompt", self.lang, seed=shown))

    async def _upscale(self, _: NoPayload, ui: StudioUI) -> None:
        """img2img from the last image at up to 2× size, same seed, light denoise."""
        last = self.last[0]
        size = upscale_size(last.width, last.height)
        if size is None:
            await ui.say(msg("too_big_upscale", self.lang, width=last.width, height=last.height))
            return
        upscaler, note = upscale_with(self.upscalers_dir, self.lang)
        await ui.say(note)
        request = last.request.model_copy(
            update={
                "width": size[0],
                "height": size[1],
                "init_image": last.path,
                "init_upscaler": upscaler,  # run by the engine, inside this queued job
                "hires": None,
                "strength": 0.35,
                "batch_size": 1,
                "seed": last.seed,
            }
        )
        await self._run(ImageRequest.model_validate(request.model_dump()), ui)
