"""One chat state shared by the flows: saved and restored as one object, read live by the
image runner, and the same object in the conversation, studio, vision flow and ledger."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from assistant.app import App
from assistant.chat.state import VERSION, ChatState, migrate
from assistant.studio.runner import ImageRunner
from assistant.studio.state import ShownImage
from tests.support import ROOT
from tests.support.fake_ollama import FakeOllama
from tests.support.recording_ui import RecordingUI
from tools.core.engine import GeneratedImage
from tools.core.request import ImageRequest
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine
from tools.ledger.types import RecordContext

REQUEST = {"prompt": "a red fox", "width": 512, "height": 768, "steps": 20, "seed": 7}


def png(tmp_path: Path, name: str = "fox.png") -> Path:
    path = tmp_path / name
    Image.new("RGB", (8, 8)).save(path)
    return path


def shown(path: Path, seed: int = 7) -> ShownImage:
    return ShownImage(request=ImageRequest(**REQUEST), seed=seed, path=path, width=512,
                      height=768)


def test_snapshot_round_trip_restores_in_place(tmp_path: Path) -> None:
    state = ChatState.start("ja-JP", thread_id="t-1")
    state.user_words = "狐の絵"
    state.studio.last = [shown(png(tmp_path))]
    state.studio.awaiting_tweak = True
    state.inpaint.awaiting_mask = "abc123"
    data = state.snapshot()
    assert data["version"] == VERSION and data["lang"] == "ja"

    other = ChatState.start("en", thread_id="t-1")
    studio_holder = other  # a flow holding the object before the restore
    other.restore(data)
    assert studio_holder is other
    assert other.model_dump() == state.model_dump()


def test_restore_keeps_the_live_thread_and_drops_vanished_images(tmp_path: Path) -> None:
    state = ChatState.start("en", thread_id="old")
    state.studio.last = [shown(png(tmp_path, "kept.png")), shown(tmp_path / "gone.png", seed=8)]
    live = ChatState.start("en", thread_id="live")
    live.restore(state.snapshot())
    assert live.thread_id == "live"
    assert [s.seed for s in live.studio.last] == [7]


def test_a_snapshot_from_before_chat_state_still_resumes(tmp_path: Path) -> None:
    """v1: what Conversation.snapshot saved (the studio's own snapshot inside)."""
    path = png(tmp_path)
    v1 = {
        "lang": "ja",
        "history": [{"role": "human", "content": "狐"}, {"role": "ai", "content": "はい"}],
        "studio": {
            "state": {"language": "ja", "user_words": ["狐"], "questions": [[]],
                      "slots": {"subject": "a fox"}, "asked": [], "exchanges": 1,
                      "done": True},
            "spec": None,
            "last": [{"request": {**REQUEST, "sampler": "Euler a"}, "seed": 9,
                      "path": str(path)}],
            "awaiting_tweak": False,
        },
    }
    state = ChatState()
    state.restore(v1)
    assert state.lang == "ja" and [t.content for t in state.history] == ["狐", "はい"]
    assert state.studio.interview.slots == {"subject": "a fox"}
    [last] = state.studio.last
    assert (last.seed, last.path, last.width, last.height) == (9, path, 512, 768)
    assert migrate({"lang": "en"})["version"] == VERSION


def test_an_unreadable_snapshot_leaves_the_state_alone(caplog: pytest.LogCaptureFixture) -> None:
    state = ChatState.start("ja")
    state.restore({"version": VERSION, "lang": "klingon"})
    assert state.lang == "ja" and "could not restore" in caplog.text


async def test_the_runner_reads_the_record_context_from_the_state(tmp_path: Path) -> None:
    state = ChatState.start("en", thread_id="t-9")
    seen: list[RecordContext] = []

    def recorder(images: list[GeneratedImage], paths: list[Path],
                 context: RecordContext) -> list[str]:
        seen.append(context)
        return ["0000000" + str(len(seen)) for _ in images]

    runner = ImageRunner(FakeEngine(), output_dir=tmp_path, recorder=recorder,
                         context=state.record_context)
    request = ImageRequest(prompt="x", width=64, height=64, steps=1)
    state.user_words = "first words"
    await runner.run(request)
    state.user_words = "second words"
    await runner.run(request)
    assert [(c.thread_id, c.user_words) for c in seen] == [
        ("t-9", "first words"), ("t-9", "second words")]


async def test_the_chat_and_its_flows_share_one_state(
    settings: Settings, ollama: FakeOllama
) -> None:
    app = App(settings.model_copy(update={"ollama_host": ollama.url, "image_engine": "fake",
                                          "unload_ollama_before_image": False}))
    state = ChatState.start("en", thread_id="t-2")
    try:
        book = await app.ledger()
        conv = app.conversation(state, app.image_runner(ledger=book,
                                                        context=state.record_context),
                                ledger=book)
        ui = RecordingUI()
        assert await conv.ensure_model(ui)
        assert conv.studio is not None and conv.vision is not None and conv.ledger_chat
        assert conv.studio.session is state and conv.vision.state is state
        assert conv.ledger_chat.state is state
        state.lang = "ja"  # e.g. the user wrote in Japanese: every flow answers in it
        await conv.on_action("more", {}, ui)
        assert "まだ絵がありません" in ui.said[-1]
        await conv.on_action("pick", {"index": "first"}, ui)  # a payload that doesn't fit
        assert "pick" in ui.said[-1] and "最新のメッセージ" in ui.said[-1]
    finally:
        await app.aclose()


def test_starting_the_app_imports_no_heavy_stack(tmp_path: Path) -> None:
    """The Chainlit module and the composition root load in a fresh process without
    torch, diffusers or Chroma: those wait for the first image, ledger or device use."""
    import subprocess
    import sys

    code = (
        "import sys, assistant.ui.chainlit_app as ui\n"
        "assert ui.APP.settings.image_engine == 'diffusers'\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'chromadb', 'langchain_ollama')"
        " if m in sys.modules))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "EGAKI_DATA_DIR": str(tmp_path),
           "EGAKI_OFFLINE": "1", "CHAINLIT_APP_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
