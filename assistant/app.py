"""The composition root: what one Egaki process shares, built once and wired here.

:class:`App` is made from :class:`~tools.core.settings.Settings` and holds

* the Ollama gateway and the chat-model factory (:mod:`tools.llm.chat_models`), built now
  (cheap: nothing is contacted);
* the image engine and its one job queue, the ledger, the render device and the model
  family, each built on first use and then kept, so the chat starts without importing
  torch, diffusers or Chroma (the ledger and the device probe load off the event loop).

:meth:`App.open_chat` wires one chat from those: its image runner (recording into the
ledger with the context of the chat's :class:`~assistant.chat.state.ChatState`, showing
through the UI's :class:`ImageDisplay`), its ledger commands, its best-of-N and the
:class:`~assistant.chat.conversation.Conversation` on that same state. The Chainlit edge
(:mod:`assistant.ui.chainlit_app`) only forwards events to what this returns; tests and
benchmarks build the same pieces through :meth:`image_runner`, :meth:`conversation` and
:meth:`quality_loop`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from langchain_core.language_models import BaseChatModel

from assistant.chat.chat_ui import ChatUI
from assistant.chat.conversation import Conversation
from assistant.chat.ledger_chat import LedgerChat
from assistant.chat.state import ChatState
from assistant.chat.tooling.image_tool import make_generate_image_tool
from assistant.chat.tooling.tool_mode import ToolSupport
from assistant.studio.best_of import BestOf
from assistant.studio.closed_tabs import ClosedTabs
from assistant.studio.flow import Runner
from assistant.studio.machine_preset import PresetFollower
from assistant.studio.panel import read_panel
from assistant.studio.runner import ContextSource, ImageRunner
from tools.core.engine import GeneratedImage, ImageEngine
from tools.core.errors import EgakiError
from tools.core.events import ProgressEvent
from tools.core.imports import preload_numpy, serialized
from tools.core.settings import Settings
from tools.engines.factory import build_queue
from tools.engines.jobs import JobQueue
from tools.ledger.service import Ledger
from tools.ledger.types import RecordContext
from tools.llm.backend import make_gateway
from tools.llm.chat_models import ModelFactory, chat_model_factory
from vision.grounding.factory import make_segmenter

if TYPE_CHECKING:
    from assistant.quality.loop import QualityLoop
    from assistant.quality.settings import QualitySettings
    from tools.llm.structured import LLMCallCounter

log = logging.getLogger(__name__)


class ImageDisplay(Protocol):
    """How one chat shows image work; the UI edge implements it."""

    async def on_event(self, event: ProgressEvent) -> None:
        """A typed progress event of this chat's job (:mod:`tools.core.events`)."""
        ...

    async def on_result(self, images: list[GeneratedImage], paths: list[Path]) -> None:
        """Finished images, saved at ``paths``."""
        ...


class RememberingDisplay:
    """An :class:`ImageDisplay` that also notes the newest picture shown in the chat's
    state: what "change the hat on the left…" edits (masks from words)."""

    def __init__(self, display: ImageDisplay, state: ChatState) -> None:
        self.display, self.state = display, state

    async def on_event(self, event: ProgressEvent) -> None:
        await self.display.on_event(event)

    async def on_result(self, images: list[GeneratedImage], paths: list[Path]) -> None:
        if paths:
            self.state.inpaint.last_image = paths[0]
        await self.display.on_result(images, paths)


class App:
    """Settings, Ollama access, image queue, ledger: one of each per process."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: ImageEngine | None = None,
        chat_models: ModelFactory | None = None,
    ) -> None:
        preload_numpy()  # before any worker thread imports it (see tools.core.imports)
        self.settings = settings
        self.gateway = make_gateway(settings)
        self.tool_support = ToolSupport()
        self.chat_models: ModelFactory = chat_models or chat_model_factory(settings)
        self._engine = engine
        self._queue: JobQueue | None = None
        self._ledger: Ledger | None = None
        self._ledger_lock = asyncio.Lock()
        self._device: str | None = None
        self._family: str | None = None
        self._background: set[asyncio.Task[Any]] = set()
        # chats whose page went away while their picture was in the queue
        self.closed_tabs = ClosedTabs(lambda: self._queue, settings.closed_tab_jobs)
        # one segmenter (masks from words) for every chat: its model loads once
        self.segmenter = functools.cache(lambda: make_segmenter(self.settings))
        # open chats told when this machine's speed is measured (their preset may follow)
        self._machine_watchers: dict[int, Callable[[], None]] = {}

    # --- where the chat keeps its history -------------------------------------------------

    @property
    def chat_db(self) -> Path:
        return self.settings.data_dir / "chat_history.sqlite3"

    @property
    def chat_files(self) -> Path:
        return self.settings.data_dir / "chat_files"

    # --- shared, built on first use ------------------------------------------------------

    @property
    def queue(self) -> JobQueue:
        """The one image queue of this process (its engine loads weights on the first job)."""
        if self._queue is None:
            self._queue = build_queue(self.settings, self._engine)
            if getattr(self._queue.engine, "measure_presets", False):  # diffusers on a CPU
                self._queue.engine.on_measured = self.machine_measured  # type: ignore[attr-defined]
        return self._queue

    async def ledger(self) -> Ledger:
        """The ledger, opened off the event loop (Chroma is slow to import); the first call
        also reconciles files and records in the background."""
        async with self._ledger_lock:
            if self._ledger is None:
                book = await asyncio.to_thread(serialized, Ledger.from_settings, self.settings)
                task = asyncio.get_running_loop().create_task(asyncio.to_thread(book.reconcile))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                self._ledger = book
        return self._ledger

    async def device(self) -> str:
        """cuda/mps/cpu/remote for the configured engine (torch imported off the loop)."""
        if self._device is None:
            from assistant.quality.settings import engine_device

            self._device = await asyncio.to_thread(serialized, engine_device, self.settings)
        return self._device

    @property
    def family(self) -> str:
        """SD1.5 or SDXL, for prompt style and native sizes; a guess when nothing is local.

        Read once (it opens the model's index or checkpoint header), not per chat."""
        if self._family is None:
            self._family = _detect_family(self.settings)
        return self._family

    def best_of_default(self, device: str) -> bool:
        """Best-of-N is on where images are quick, unless the settings say otherwise."""
        if self.settings.quality_mode != "auto":
            return self.settings.quality_mode == "on"
        return device in ("cuda", "remote")

    async def panel_defaults(self) -> dict[str, Any]:
        """The settings panel's initial values."""
        values = {"chat_model": self.settings.chat_model,
                  "image_model": self.settings.image_model,
                  "best_of": self.best_of_default(await self.device())}
        if (choice := self.machine_choice()) is not None:
            values["preset"] = choice.preset
        return values

    def machine_choice(self) -> Any:
        """The preset chosen for this machine from its last measured UNet step (a small
        JSON file; None before the first picture on a CPU or with another engine)."""
        if self.settings.image_engine != "diffusers":
            return None
        from tools.engines.diffusers.fastmodels import machine

        times = machine.latest(self.settings.data_dir)
        return machine.choose(times) if times is not None else None

    def preset_note(self, lang: str) -> str | None:
        """Why the panel starts on its preset, in ``lang`` (None when not measured)."""
        from tools.engines.diffusers.fastmodels import machine

        choice = self.machine_choice()
        return machine.explain(choice, lang) if choice is not None else None

    def watch_machine(self, on_measured: Callable[[], None]) -> Callable[[], None]:
        """Call ``on_measured`` (from the measuring thread: hand it to your loop) when
        this machine's speed has been measured; returns what stops the calls."""
        key = id(on_measured)
        self._machine_watchers[key] = on_measured
        return lambda: self._machine_watchers.pop(key, None) and None

    def machine_measured(self) -> None:
        """The engine saved a measurement: every watching chat hears it."""
        for watcher in list(self._machine_watchers.values()):
            try:
                watcher()
            except Exception:  # one gone chat must not keep the others from hearing it
                log.exception("a chat could not hear the machine's measurement")

    async def follow_machine(
        self, conv: Conversation, follower: PresetFollower, values: dict[str, Any], ui: ChatUI
    ) -> tuple[dict[str, Any], str] | None:
        """The machine's preset for a chat whose panel still says "auto", once: applied to
        ``conv`` for its next picture. Returns the panel's new values (``values`` with the
        preset) and the note that says why; None when nothing changes."""
        switch = follower.switch(self.machine_choice(), values, conv.lang)
        if switch is not None:
            await conv.apply_panel(switch[0], ui)
        return switch

    # --- one chat --------------------------------------------------------------------------

    async def open_chat(self, state: ChatState, display: ImageDisplay) -> Conversation:
        """Everything one chat needs, on ``state``, showing images through ``display``."""
        book = await self.ledger()
        device = await self.device()
        display = RememberingDisplay(display, state)
        runner = self.image_runner(display=display, ledger=book, context=state.record_context)
        return self.conversation(
            state, runner, ledger=book,
            best_of=self.best_of_factory(display, book, state, device),
            best_of_default=self.best_of_default(device),
        )  # fmt: skip

    def image_runner(
        self,
        *,
        display: ImageDisplay | None = None,
        show: bool = True,
        ledger: Ledger | None = None,
        context: ContextSource | None = None,
        output_dir: Path | None = None,
    ) -> ImageRunner:
        """A runner on the shared queue, saving into ``output_dir`` (the images folder).

        ``display`` hears its progress and, when ``show``, its results; ``ledger`` records
        every image with ``context`` (a function is asked each time: a chat's state)."""
        return ImageRunner(
            self.queue,
            output_dir=output_dir or self.settings.images_dir,
            on_result=display.on_result if display is not None and show else None,
            on_event=display.on_event if display is not None else None,
            recorder=ledger.record_batch if ledger is not None else None,
            context=context,
        )

    def conversation(
        self,
        state: ChatState,
        runner: ImageRunner,
        *,
        run: Runner | None = None,
        ledger: Ledger | None = None,
        best_of: Callable[[BaseChatModel], BestOf] | None = None,
        best_of_default: bool = False,
    ) -> Conversation:
        """A conversation on ``state`` whose images go through ``runner`` (``run``, when
        given, stands in for ``runner.run``, e.g. to time it); ledger commands with a
        ``ledger``."""
        conv = Conversation(
            self.settings,
            self.gateway,
            self.chat_models,
            [make_generate_image_tool(runner)],
            state,
            runner=run or runner.run,
            family=self.family,
            ledger_chat=LedgerChat(ledger, runner, state) if ledger is not None else None,
            best_of_factory=best_of,
            best_of_default=best_of_default,
            # the card's token counts: the diffusers engine's local tokenizer, if any
            token_counter=getattr(self.queue.engine, "count_tokens", None),
            tool_support=self.tool_support,  # a model that refused tools, for every chat
            segmenter=self.segmenter,
        )
        if (choice := self.machine_choice()) is not None:  # the preset for this machine
            conv.panel = read_panel({"preset": choice.preset}, self.family)
        return conv

    def best_of_factory(
        self, display: ImageDisplay, book: Ledger, state: ChatState, device: str
    ) -> Callable[[BaseChatModel], BestOf]:
        """Builds a chat's best-of-N once its chat model is known."""

        def make(chat_model: BaseChatModel) -> BestOf:
            hidden = self.image_runner(  # shows nothing: rejected candidates never reach it
                display=display, show=False, ledger=book,
                context=lambda: RecordContext(thread_id=state.thread_id, status="rejected"),
            )  # fmt: skip
            loop = self.quality_loop(chat_model, hidden.run, device=device)
            return BestOf(loop, display.on_result, book)

        return make

    def quality_loop(
        self,
        chat_model: BaseChatModel,
        run: Runner,
        *,
        device: str,
        quality: QualitySettings | None = None,
        counter: LLMCallCounter | None = None,
    ) -> QualityLoop:
        """Best-of-N: candidates through ``run``, checked by the vision model, constraints
        derived by ``chat_model``; ``quality`` defaults to the settings' ``quality_*``."""
        from assistant.quality.check import VisionChecker, load_clip_scorer
        from assistant.quality.constraints import ConstraintDeriver
        from assistant.quality.loop import QualityLoop
        from assistant.quality.settings import QualitySettings

        quality = quality or QualitySettings.from_settings(self.settings)
        name = self.settings.effective_vision_model
        return QualityLoop(
            VisionChecker(self.chat_models(name), model_name=name, gateway=self.gateway,
                          counter=counter),
            run,
            quality,
            deriver=ConstraintDeriver(chat_model, counter=counter),
            scorer=load_clip_scorer(quality.clip_model),
            device=device,
        )

    async def aclose(self) -> None:
        """Stop the queue's worker (waiting jobs are cancelled)."""
        if self._queue is not None:
            await self._queue.aclose()


def _detect_family(settings: Settings) -> str:
    if settings.image_engine == "diffusers":
        from tools.engines.diffusers.models import detect_family, resolve_model

        try:
            return detect_family(resolve_model(settings.image_model, settings))
        except (EgakiError, OSError, ValueError) as err:
            log.info("Could not detect the image model family: %s", err)
    return "sdxl" if "xl" in settings.image_model.lower() else "sd15"


@functools.cache
def shared_app() -> App:
    """The process's :class:`App`, from the environment's settings (the UI edge's)."""
    return App(Settings())
