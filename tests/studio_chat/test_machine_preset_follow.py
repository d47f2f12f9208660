"""The machine's preset takes effect in the chat open when it is measured (issue #15):
once, with a note, only while the chat's panel still says "auto"."""

from __future__ import annotations

from pathlib import Path

from assistant.app import App
from assistant.chat.state import ChatState
from assistant.studio.machine_preset import PresetFollower
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.recording_ui import RecordingUI
from tests.support.replies import SPEC
from tools.core.settings import Settings
from tools.engines.diffusers.fastmodels import machine
from tools.engines.diffusers.fastmodels.machine import StepTimes, choose

SLOW_CPU = StepTimes(512, 1.0, 2.1)  # ~46 s full, ~19 s balanced: Quick
LAPTOP = StepTimes(512, 0.6, 1.2)  # 26 s full, 11 s balanced: Balanced


def test_a_chat_still_on_auto_switches_once_and_says_why() -> None:
    follower = PresetFollower("auto")
    switch = follower.switch(choose(LAPTOP), {"steps": "auto", "preset": "auto"}, "en")
    assert switch is not None
    values, note = switch
    assert values == {"steps": "auto", "preset": "balanced"}
    assert note.startswith("This computer makes a full-quality picture in about 26 s")
    assert follower.switch(choose(SLOW_CPU), values, "en") is None  # once, not per picture
    follower.submitted(values)  # the panel sent back as shown: still the machine's
    assert follower.source == "machine"


def test_the_note_speaks_the_chats_language() -> None:
    switch = PresetFollower().switch(choose(SLOW_CPU), {}, "ja")
    assert switch is not None and "46秒" in switch[1]


def test_a_preset_the_person_picked_is_never_overridden() -> None:
    follower = PresetFollower("auto")
    follower.submitted({"preset": "full", "steps": "auto"})
    assert follower.switch(choose(SLOW_CPU), {"preset": "full"}, "en") is None
    back_to_auto = PresetFollower("auto")
    back_to_auto.switch(choose(SLOW_CPU), {}, "en")
    back_to_auto.submitted({"preset": "auto"})  # picked "auto" after the switch: theirs
    assert back_to_auto.source == "person"


def test_other_panel_changes_leave_the_preset_to_the_machine() -> None:
    follower = PresetFollower("auto")
    follower.submitted({"preset": "auto", "steps": "30"})
    switch = follower.switch(choose(SLOW_CPU), {"preset": "auto", "steps": "30"}, "en")
    assert switch is not None and switch[0] == {"preset": "quick", "steps": "30"}


def test_no_measurement_changes_nothing_and_a_later_one_still_does() -> None:
    follower = PresetFollower("auto")
    assert follower.switch(None, {}, "en") is None
    assert follower.switch(choose(SLOW_CPU), {}, "en") is not None


def test_a_chat_opened_on_the_machines_preset_is_not_switched_again() -> None:
    follower = PresetFollower("balanced")
    assert follower.source == "machine"
    assert follower.switch(choose(SLOW_CPU), {"preset": "balanced"}, "en") is None


def test_the_app_wires_the_engines_measurement_to_the_watching_chats(
    settings: Settings
) -> None:
    class MeasuringEngine:  # stands in for a DiffusersEngine on a CPU
        name, measure_presets, on_measured = "diffusers", True, None

    engine = MeasuringEngine()
    app = App(settings, engine=engine)  # type: ignore[arg-type]
    heard: list[str] = []
    stop = app.watch_machine(lambda: heard.append("a"))
    app.watch_machine(lambda: heard.append("b"))
    assert app.queue.engine is engine and engine.on_measured == app.machine_measured
    engine.on_measured()  # type: ignore[misc]
    stop()
    app.machine_measured()
    assert heard == ["a", "b", "b"]


async def test_the_chat_that_made_the_first_picture_draws_the_next_on_the_chosen_preset(
    settings: Settings, ollama: FakeOllama, tmp_path: Path
) -> None:
    from tools.engines.fake import FakeEngine

    engine = FakeEngine()
    app = App(settings.model_copy(update={"ollama_host": ollama.url, "image_engine": "diffusers",
                                          "unload_ollama_before_image": False}), engine=engine)
    try:
        chats = []
        for preset in ("auto", "full"):  # the second chat's person picked Full themselves
            state = ChatState.start("en", thread_id=f"t-{preset}")
            conv = app.conversation(state, app.image_runner(output_dir=tmp_path))
            ui = RecordingUI()
            assert await conv.ensure_model(ui) and conv.panel is None  # not measured yet
            follower = PresetFollower((await app.panel_defaults()).get("preset", "auto"))
            if preset != "auto":
                follower.submitted({"preset": preset})
                await conv.apply_panel({"preset": preset}, ui)
            chats.append((conv, follower, ui))
        for conv, _, ui in chats:  # each chat's first picture, before the measurement
            ollama.enqueue(Reply(data=SPEC))
            await conv.on_message("GO", ui)
        assert [c.request.fast for c in engine.calls] == [False, False]
        machine.save(app.settings.data_dir, "k", SLOW_CPU)  # what the engine does meanwhile
        for conv, follower, ui in chats:
            switch = await app.follow_machine(conv, follower, {"preset": "auto"}, ui)
            assert (switch is not None) == (conv is chats[0][0])
            await conv.on_action("more", {}, ui)
        assert [c.request.fast for c in engine.calls[2:]] == [True, False]  # Full stays Full
        assert await app.follow_machine(*chats[0][:2], {}, chats[0][2]) is None  # once
    finally:
        await app.aclose()
