"""The chat's image flow: interview → card → images → buttons, with a fake engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_ollama import ChatOllama

from assistant.studio.flow import Studio, upscale_size
from assistant.studio.runner import ImageRunner
from assistant.studio.state import StudioSession
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.recording_ui import RecordingUI
from tools.engines.fake import FakeEngine
from tools.infotext.png import read_png_parameters

SPEC = {
    "subject": "a red fox",
    "setting": "snowy forest",
    "lighting": "soft morning light",
    "style": "photo",
    "width": 512,
    "height": 512,
    "steps": 20,
    "cfg_scale": 7,
    "sampler": "Euler a",
}
VARIANTS = {
    "variants": [
        {"axis": "lighting", "value": "golden hour", "label": "golden hour"},
        {"axis": "time_of_day", "value": "night", "label": "night"},
        {"axis": "style", "value": "watercolor painting", "label": "watercolor"},
        {"axis": "framing", "value": "close-up portrait", "label": "close-up"},
    ]
}


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


def studio(ollama: FakeOllama, engine: FakeEngine, tmp_path: Path, lang: str = "en") -> Studio:
    runner = ImageRunner(engine, output_dir=tmp_path / "images")
    model = ChatOllama(model="qwen3-vl:8b", base_url=ollama.url)
    return Studio(model, runner.run, state=StudioSession(lang=lang))


async def go(s: Studio, ollama: FakeOllama, ui: RecordingUI) -> None:
    ollama.enqueue(Reply(data=SPEC))
    await s.on_message("GO", ui)


async def test_go_draws_with_card_then_offers_next_steps(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    await go(s, ollama, ui)
    card = ui.shown[0][0]
    assert "a red fox, snowy forest, soft morning light" in card
    assert len(engine.calls) == 1 and engine.calls[0].request.prompt.startswith("a red fox")
    assert ui.names() == ["more", "quick", "variations", "tweak", "upscale", "new"]
    assert s.counter.total == 1  # GO skipped the interview: only the spec call
    shown = s.last[0]
    assert f"Seed: {shown.seed}," in (read_png_parameters(shown.path) or "")


async def test_quick_previews_then_full_quality_of_the_chosen_seed(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    await go(s, ollama, ui)
    await s.on_action("quick", {}, ui)
    quick = engine.calls[-1].request
    assert quick.fast and quick.batch_size == 4 and quick.prompt == engine.calls[0].request.prompt
    fulls = [a for a in ui.shown[-1][1] if a.name == "full"]
    seeds = [shown.seed for shown in s.last]
    assert [a.payload["seed"] for a in fulls] == seeds and len(set(seeds)) == 4
    await s.on_action("full", fulls[2].payload, ui)
    full = engine.calls[-1].request
    assert not full.fast and full.seed == seeds[2] and full.batch_size == 1
    assert full.steps == 20 and full.sampler == "Euler a"  # the card's settings, not LCM
    assert "full" not in ui.names()  # a full-quality image offers no "full" buttons


async def test_more_makes_four_new_seeds(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    await go(s, ollama, ui)
    first = s.last[0].seed
    await s.on_action("more", {}, ui)
    seeds = [shown.seed for shown in s.last]
    assert len(seeds) == 4 and first not in seeds
    assert s.counter.total == 1  # no LLM call for "more"


async def test_variations_then_pick_draws_that_variant_with_same_seed(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    await go(s, ollama, ui)
    seed = s.last[0].seed
    ollama.enqueue(Reply(data=VARIANTS))
    await s.on_action("variations", {}, ui)
    text, picks = ui.shown[-1]
    assert "#4" in text
    assert [a.name for a in picks] == ["pick"] * 4
    prompts = {v.positive for v in s.variants}
    assert len(prompts) == 4
    await s.on_action("pick", picks[2].payload, ui)
    assert engine.calls[-1].request.prompt == s.variants[2].positive
    assert s.last[0].seed == seed
    assert s.counter.total == 2  # spec + variations: ≤ 2 LLM calls per image


async def test_tweak_keeps_seed_and_rewrites_prompt(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    await go(s, ollama, ui)
    seed = s.last[0].seed
    await s.on_action("tweak", {}, ui)
    assert str(seed) in ui.said[-1] and s.wants_message
    ollama.enqueue(Reply(data={**SPEC, "lighting": "moonlight"}))
    await s.on_message("make it night", ui)
    assert s.last[0].seed == seed
    assert "moonlight" in engine.calls[-1].request.prompt
    assert "make it night" in s.spec.user_words  # type: ignore[union-attr]


async def test_upscale_is_img2img_from_last_image_at_twice_the_size(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    await go(s, ollama, ui)
    shown = s.last[0]
    await s.on_action("upscale", {}, ui)
    req = engine.calls[-1].request
    assert (req.width, req.height) == (1024, 1024)
    assert req.init_image == shown.path and req.seed == shown.seed and req.strength < 0.5
    assert req.init_upscaler is None and "Lanczos" in ui.said[-1]  # no model: said where


async def test_card_shows_token_counts_per_chunk_when_a_tokenizer_is_at_hand(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    from tools.engines.diffusers.prompts.a1111 import TokenCount

    def count(text: str) -> TokenCount | None:
        return TokenCount([75, 5], 80, 150) if "fox" in text else TokenCount([12], 12, 75)

    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    s.token_counter = count
    await go(s, ollama, ui)
    card = ui.shown[0][0]
    assert "80/150 tokens in 2 chunks of 75 (75 + 5), each read in full" in card
    assert "· 12/75 tokens" in card  # the negative
    s2, ui2 = studio(ollama, engine, tmp_path), RecordingUI()
    s2.token_counter = lambda text: None  # no tokenizer on this machine: no count at all
    await go(s2, ollama, ui2)
    assert "tokens" not in ui2.shown[0][0]


def test_upscale_size_respects_engine_limits() -> None:
    assert upscale_size(512, 768) == (1024, 1536)
    assert upscale_size(1536, 1536) == (1920, 1920)  # 2× and 1.5× pass 2048: 1.25×
    assert upscale_size(2048, 2048) is None


async def test_new_resets_and_buttons_before_any_picture_explain(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    s, ui = studio(ollama, engine, tmp_path, lang="ja"), RecordingUI()
    await s.on_action("more", {}, ui)
    assert "まだ絵がありません" in ui.said[-1]
    await go(s, ollama, ui)
    await s.on_action("new", {}, ui)
    assert s.spec is None and s.wants_message


def test_panel_values_become_overrides_and_presets() -> None:
    from assistant.studio.panel import read_panel

    c = read_panel(
        {"aspect": "portrait", "steps": "8", "cfg_scale": "1.5", "sampler": "LCM",
         "seed": " 42 ", "batch_size": 3.0, "fast": True, "negative_preset": "none",
         "image_model": "my-model.safetensors", "clip_skip": "2"},
        "sdxl",
    )
    assert c.overrides == {"width": 832, "height": 1216, "steps": 8, "cfg_scale": 1.5,
                           "sampler": "LCM", "seed": 42, "batch_size": 3, "fast": True,
                           "model": "my-model.safetensors", "clip_skip": 2}
    assert c.presets == []
    auto = read_panel({"aspect": "auto", "steps": "auto", "sampler": "auto", "seed": "abc",
                       "clip_skip": "auto"}, "sd15")
    assert auto.overrides == {} and auto.presets is None


async def test_panel_choices_shape_the_next_image(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    from assistant.studio.panel import read_panel

    s, ui = studio(ollama, engine, tmp_path), RecordingUI()
    s.apply_panel(read_panel({"steps": "8", "sampler": "DDIM", "negative_preset": "none",
                              "seed_lock": True}, "sd15"))
    await go(s, ollama, ui)
    req = engine.calls[-1].request
    assert (req.steps, req.sampler) == (8, "DDIM")
    assert "bad hands" not in req.negative_prompt
    first = s.last[0].seed
    ollama.enqueue(Reply(data=SPEC))
    await s.on_action("new", {}, ui)
    await s.on_message("GO", ui)
    assert s.last[0].seed == first  # locked to the last image's seed


class StubBestOf:
    """Stands in for assistant.studio.best_of.BestOf: records calls, 'shows' one winner."""

    def __init__(self, engine: FakeEngine, tmp_path: Path) -> None:
        self.runner = ImageRunner(engine, output_dir=tmp_path / "best")
        self.calls = 0

    async def run(self, spec, request, say):  # type: ignore[no-untyped-def]
        self.calls += 1
        images, paths = await self.runner.run(request.model_copy(update={"batch_size": 3}))
        await say("2 of 3 were dropped.")
        return [(images[1], paths[1])]


async def test_best_of_shows_only_the_winner_and_the_panel_switches_it(
    ollama: FakeOllama, engine: FakeEngine, tmp_path: Path
) -> None:
    from assistant.studio.panel import read_panel

    best = StubBestOf(engine, tmp_path)
    runner = ImageRunner(engine, output_dir=tmp_path / "images")
    s = Studio(ChatOllama(model="qwen3-vl:8b", base_url=ollama.url), runner.run,
               best_of=best, best_of_default=True)  # type: ignore[arg-type]
    ui = RecordingUI()
    await go(s, ollama, ui)
    assert best.calls == 1 and len(s.last) == 1
    assert "dropped" in ui.said[-1]
    assert ui.names() == ["more", "quick", "variations", "tweak", "upscale", "new"]
    s.apply_panel(read_panel({"best_of": False}, "sd15"))
    ollama.enqueue(Reply(data=SPEC))
    await s.on_action("new", {}, ui)
    await s.on_message("GO", ui)
    assert best.calls == 1  # switched off: the plain path drew it
