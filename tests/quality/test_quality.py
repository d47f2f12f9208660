"""The quality loop: fake VLM verdicts per seed drive selection, budgets, fixes, screening.

The vision model is the wire-compatible fake Ollama; its responder decodes the image it
was sent and recognises which FakeEngine seed made it (FakeEngine pictures are
deterministic), so each candidate's verdict is scripted by seed, whatever the order.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_ollama import ChatOllama
from PIL import Image

from assistant.prompting.spec import PromptParts, PromptSpec, SpecSettings
from assistant.quality.check import VisionChecker, encode_image, load_clip_scorer
from assistant.quality.constraints import Constraint, ConstraintDeriver
from assistant.quality.loop import QualityLoop, QualitySettings, default_candidates, engine_device
from assistant.quality.report import QualityReport
from assistant.studio.runner import ImageRunner
from tests.support.fake_ollama import FakeModel, FakeOllama, Reply
from tools.core.engine import GeneratedImage
from tools.core.errors import CapabilityMissing, GenerationCancelled
from tools.core.request import ImageRequest
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine, fake_image
from tools.llm.ollama_gateway import OllamaGateway
from tools.llm.structured import LLMCallCounter

SEED = 1000
TWO_WOMEN = Constraint(
    kind="count",
    subject="women",
    expected=2,
    label="二人の女性",
    question="Are there exactly 2 women in the image?",
)
NO_TEXT = Constraint(
    kind="text_free",
    subject="text",
    label="文字なし",
    question="Is the image free of any visible written text?",
)
CONSTRAINTS = [TWO_WOMEN, NO_TEXT]
PASS = [("yes", 2), ("yes", None)]
THREE = [("no", 3), ("yes", None)]
TEXT = [("yes", 2), ("no", None)]


@dataclass
class Clock:
    """A fake clock: generation and checks advance it by fixed amounts."""

    t: float = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Judge:
    """FakeOllama responder answering check requests by the seed of the image sent."""

    engine: FakeEngine
    table: dict[int, list[tuple[str, int | None]]] = field(default_factory=dict)
    default: list[tuple[str, int | None]] = field(default_factory=lambda: THREE)
    clock: Clock | None = None
    check_cost: float = 0.0
    garbage_for: set[int] = field(default_factory=set)
    seen: list[int] = field(default_factory=list)
    _encoded: dict[tuple[str, int, int, int], str] = field(default_factory=dict)

    def identify(self, b64: str) -> int:
        for call in list(self.engine.calls):
            r = call.request
            assert r.seed is not None
            key = (r.prompt, r.seed, r.width, r.height)
            if key not in self._encoded:
                self._encoded[key] = encode_image(fake_image(*key))
            if self._encoded[key] == b64:
                return r.seed
        raise AssertionError("the checker was sent an image the engine never made")

    def __call__(self, body: dict[str, Any]) -> Reply | None:
        if "answers" not in (body.get("format") or {}).get("properties", {}):
            return None
        images = [m["images"][0] for m in body["messages"] if m.get("images")]
        seed = self.identify(images[-1])
        self.seen.append(seed)
        if self.clock is not None:
            self.clock.t += self.check_cost
        if seed in self.garbage_for:
            return Reply(content="I think it looks nice!")
        rows = self.table.get(seed, self.default)
        answers = [
            {"number": i, "answer": a, "count": c, "reason": "seen"}
            for i, (a, c) in enumerate(rows, 1)
        ]
        return Reply(data={"answers": answers})


@dataclass
class Rig:
    ollama: FakeOllama
    engine: FakeEngine
    judge: Judge
    clock: Clock
    out: Path
    hooked: list[tuple[int, str, bool]] = field(default_factory=list)
    gen_cost: float = 0.0

    def loop(self, lang_model: str = "qwen3-vl:8b", **settings: Any) -> QualityLoop:
        runner = ImageRunner(self.engine, output_dir=self.out)

        async def run(req: ImageRequest) -> tuple[list[GeneratedImage], list[Path]]:
            self.clock.t += self.gen_cost
            return await runner.run(req)

        def hook(gen: GeneratedImage, path: Path, verdict: Any, status: str) -> None:
            assert path.is_file()
            self.hooked.append((gen.seed, status, verdict.all_passed))

        chat = ChatOllama(model=lang_model, base_url=self.ollama.url)
        gateway = OllamaGateway(Settings(_env_file=None, ollama_host=self.ollama.url))
        checker = VisionChecker(chat, model_name=lang_model, gateway=gateway)
        return QualityLoop(
            checker, run, QualitySettings(**settings), clock=self.clock, on_candidate=hook
        )


@pytest.fixture
def rig(ollama: FakeOllama, tmp_path: Path) -> Rig:
    engine, clock = FakeEngine(), Clock()
    judge = Judge(engine, clock=clock)
    ollama.responder = judge
    ollama.add_model(FakeModel("llama3.2:3b", ["completion", "tools"]))
    return Rig(ollama, engine, judge, clock, tmp_path / "img")


def spec(lang: str = "en", seed: int | None = SEED) -> PromptSpec:
    words = "two women, beach volleyball"
    if lang == "ja":
        words = "二人の女性が晴れたビーチでビーチバレー"
    return PromptSpec(
        positive="two women playing beach volleyball, sunny beach",
        negative="lowres",
        parts=PromptParts(subject="two women playing beach volleyball", setting="sunny beach"),
        settings=SpecSettings(
            width=256, height=256, steps=4, cfg_scale=7, sampler="Euler a", seed=seed
        ),
        user_words=[words],
        language=lang,
    )


# --- selection ---------------------------------------------------------------------------------
async def test_the_best_candidate_is_shown_and_the_rest_are_recorded_as_rejected(rig: Rig) -> None:
    rig.judge.table = {SEED: THREE, SEED + 1: PASS, SEED + 2: THREE, SEED + 3: TEXT}
    result = await rig.loop(candidates=4).run(spec(), CONSTRAINTS)
    assert [c.image.seed for c in result.shown] == [SEED + 1]
    assert sorted(rig.judge.seen) == [SEED, SEED + 1, SEED + 2, SEED + 3]  # one call per image
    assert sorted(rig.hooked) == [
        (SEED, "rejected", False),
        (SEED + 1, "shown", True),
        (SEED + 2, "rejected", False),
        (SEED + 3, "rejected", False),
    ]
    assert all(c.image.seed != SEED + 1 for c in result.rejected)
    report = result.report
    assert report.rounds == 1 and report.images_generated == 4 and report.llm_calls == 4
    assert report.stop_reason == "passed" and report.shown == [1]
    assert result.explanation == (
        "Made 4 candidates; showing the best 1, which passed all 2 checks. "
        "Dropped: 2 of 4 had 3 women instead of 2; 1 of 4 contained text."
    )
    again = QualityReport.model_validate_json(report.model_dump_json())
    assert again == report and again.candidates[0].verdict.results[0].seen == 3


async def test_the_explanation_follows_the_persons_language(rig: Rig) -> None:
    rig.judge.table = {SEED: THREE, SEED + 1: PASS, SEED + 2: THREE, SEED + 3: TEXT}
    result = await rig.loop(candidates=4).run(spec("ja"), CONSTRAINTS)
    assert result.explanation == (
        "候補を4枚作り、2項目のチェックをすべて満たした1枚を表示しています。"
        "除外した理由: 4枚中2枚は「二人の女性」の数が違いました（2ではなく3）、"
        "4枚中1枚に文字が入っていました。"
    )


async def test_ranking_uses_passes_then_clip_score_then_the_earlier_seed(rig: Rig) -> None:
    rig.judge.table = {SEED: TEXT, SEED + 1: TEXT, SEED + 2: TEXT}
    rig.judge.table[SEED + 3] = [("no", 1), ("no", None)]

    class Scorer:
        def score(self, image: Image.Image, text: str) -> float:
            return {SEED + 2: 30.0, SEED + 1: 30.0}.get(_seed_of(rig, image), 10.0)

    loop = rig.loop(candidates=4, max_rounds=1, show=2)
    loop.scorer = Scorer()
    result = await loop.run(spec(), CONSTRAINTS)
    assert [c.image.seed for c in result.shown] == [SEED + 1, SEED + 2]
    assert result.report.stop_reason == "rounds"
    assert result.explanation.startswith(
        "Made 4 candidates; none passed every check, so this is the closest (1 of 2 checks)."
    )


def _seed_of(rig: Rig, image: Image.Image) -> int:
    return rig.judge.identify(encode_image(image))


async def test_best_of_n_sends_a1111_prompts_through_rounds_and_fixes_intact(rig: Rig) -> None:
    """Long prompts, weights and BREAK reach the engine as written, round after round."""
    rig.judge.table = {SEED + 3: PASS}
    long_tail = ", ".join(f"detail {i}" for i in range(40))  # far past 75 tokens
    positive = f"(two women:1.2) playing beach volleyball BREAK sunny beach, {long_tail}"
    negative = "(worst quality:1.4), lowres, easynegative"
    base = spec().model_copy(update={"positive": positive, "negative": negative})
    result = await rig.loop(candidates=3, max_rounds=2).run(base, CONSTRAINTS)
    first, fixed = rig.engine.calls[0].request, rig.engine.calls[3].request
    assert (first.prompt, first.negative_prompt) == (positive, negative)
    assert fixed.prompt.endswith(positive) and fixed.prompt.startswith("(exactly two women:1.3)")
    assert fixed.negative_prompt.startswith(negative)
    assert result.report.rounds == 2


# --- retries and budgets -----------------------------------------------------------------------
async def test_a_failed_round_retries_with_deterministic_prompt_fixes(rig: Rig) -> None:
    rig.judge.table = {SEED + 5: PASS}
    result = await rig.loop(candidates=3, max_rounds=3).run(spec(), CONSTRAINTS)
    report = result.report
    assert report.rounds == 2 and report.images_generated == 6
    assert [c.image.seed for c in result.shown] == [SEED + 5]
    second = rig.engine.calls[3].request
    assert second.prompt.startswith(
        "(exactly two women:1.3), two women only, two women playing")
    assert {"extra woman", "group"} <= set(second.negative_prompt.split(", "))
    assert report.prompts[1] == second.prompt and report.fixes[0]
    assert "(2 rounds)" in result.explanation


async def test_the_round_limit_is_respected(rig: Rig) -> None:
    result = await rig.loop(candidates=2, max_rounds=2).run(spec(), CONSTRAINTS)
    assert result.report.rounds == 2 and len(rig.engine.calls) == 4
    assert result.report.stop_reason == "rounds" and len(result.shown) == 1


async def test_the_image_budget_is_strict(rig: Rig) -> None:
    result = await rig.loop(candidates=4, max_rounds=5, max_images=6).run(spec(), CONSTRAINTS)
    assert len(rig.engine.calls) == result.report.images_generated == 6
    assert result.report.stop_reason == "images"
    assert "image limit" in result.explanation


async def test_the_time_budget_is_strict_with_a_fake_clock(rig: Rig) -> None:
    rig.gen_cost, rig.judge.check_cost = 10.0, 1.0
    result = await rig.loop(candidates=4, max_rounds=3, max_seconds=35).run(spec(), CONSTRAINTS)
    # 3 images (30 s) + 3 checks (3 s); a 4th image or a second round would pass 35 s
    assert len(rig.engine.calls) == 3 and rig.clock.t == 33.0
    assert result.report.stop_reason == "seconds" and result.report.rounds == 1
    assert result.report.fixes == [] and len(result.report.prompts) == 1
    assert result.report.seconds["generate"] == 30.0 and result.report.seconds["check"] == 3.0


async def test_the_first_image_always_runs_even_over_budget(rig: Rig) -> None:
    rig.gen_cost = 100.0
    result = await rig.loop(candidates=4, max_seconds=1).run(spec(), CONSTRAINTS)
    assert len(rig.engine.calls) == 1 and len(result.shown) == 1


# --- screening ---------------------------------------------------------------------------------
@pytest.mark.parametrize("screen", ["fast", "small"])
async def test_screened_winner_is_rerendered_at_full_quality_with_the_same_seed(
    rig: Rig, screen: str
) -> None:
    rig.judge.table = {SEED + 2: PASS}
    s = spec()
    s.settings.width = s.settings.height = 512
    result = await rig.loop(candidates=3, screen=screen, max_rounds=1).run(s, CONSTRAINTS)
    calls = [c.request for c in rig.engine.calls]
    previews, final = calls[:3], calls[3]
    if screen == "fast":
        assert all(r.fast and r.width == 512 for r in previews)
    else:
        assert all(not r.fast and (r.width, r.height) == (256, 256) for r in previews)
    assert not final.fast and (final.width, final.height, final.steps) == (512, 512, 4)
    assert final.seed == SEED + 2 and final.prompt == previews[2].prompt
    [shown] = result.shown
    assert shown.record.phase == "final" and shown.record.of_index == 2
    assert sorted(rig.hooked) == [
        (SEED, "rejected", False),
        (SEED + 1, "rejected", False),
        (SEED + 2, "rejected", True),
        (SEED + 2, "shown", True),
    ]
    assert result.report.candidates[2].status == "preview"
    assert result.report.llm_calls == 4 and result.report.images_generated == 4


async def test_screening_reserves_images_for_the_final_render(rig: Rig) -> None:
    rig.judge.table = {SEED: PASS}
    result = await rig.loop(candidates=4, screen="fast", max_images=3).run(spec(), CONSTRAINTS)
    assert [r.request.fast for r in rig.engine.calls] == [True, True, False]
    assert result.shown[0].record.phase == "final"


# --- the wire and failures ---------------------------------------------------------------------
async def test_check_request_carries_the_image_inline_and_the_schema(rig: Rig) -> None:
    s = spec()
    s.settings.width, s.settings.height = 1024, 768
    rig.judge.table = {SEED: PASS}
    await rig.loop(candidates=1).run(s, CONSTRAINTS)
    [body] = rig.ollama.chat_requests()
    user = body["messages"][-1]
    assert "1. Are there exactly 2 women" in user["content"]
    assert "2. Is the image" in user["content"]
    with Image.open(io.BytesIO(base64.b64decode(user["images"][0]))) as im:
        assert im.format == "JPEG" and im.size == (512, 384)
    answer = body["format"]["properties"]["answers"]["items"]
    assert answer["properties"]["answer"]["enum"] == ["yes", "no"]
    assert set(answer["required"]) == {"number", "answer", "count", "reason"}


async def test_an_unusable_verdict_ranks_last_and_is_explained(rig: Rig) -> None:
    rig.judge.table = {SEED + 1: TEXT}
    rig.judge.garbage_for = {SEED}
    result = await rig.loop(candidates=2, max_rounds=1).run(spec(), CONSTRAINTS)
    assert [c.image.seed for c in result.shown] == [SEED + 1]
    assert result.report.llm_calls == 3  # the garbage answer got its one retry
    assert "1 of 2 couldn't be checked" in result.explanation


async def test_a_model_without_vision_fails_clearly_before_any_image(rig: Rig) -> None:
    with pytest.raises(CapabilityMissing) as err:
        await rig.loop(lang_model="llama3.2:3b").run(spec(), CONSTRAINTS)
    assert "llama3.2:3b" in str(err.value) and "vision model" in str(err.value)
    assert "視覚モデル" in err.value.localized("ja")
    assert rig.engine.calls == []


async def test_cancelling_keeps_made_images_as_rejected(rig: Rig) -> None:
    loop = rig.loop(candidates=3)
    inner = loop.runner

    async def run(req: ImageRequest) -> tuple[list[GeneratedImage], list[Path]]:
        if rig.engine.calls:
            raise GenerationCancelled.of("generation_stopped")
        return await inner(req)

    loop.runner = run
    with pytest.raises(GenerationCancelled):
        await loop.run(spec(), CONSTRAINTS)
    assert [(seed, status) for seed, status, _ in rig.hooked] == [(SEED, "rejected")]


async def test_derived_constraints_count_as_one_more_llm_call(rig: Rig) -> None:
    rig.ollama.enqueue(Reply(data={"constraints": []}))
    rig.judge.table = {SEED: PASS}
    counter = LLMCallCounter()
    loop = rig.loop(candidates=2)
    loop.checker.llm.counter = counter
    loop.deriver = ConstraintDeriver(
        ChatOllama(model="qwen3-vl:8b", base_url=rig.ollama.url), counter=counter
    )
    result = await loop.run(spec("ja"))
    assert [c.kind for c in result.constraints] == ["count", "text_free"]
    assert result.report.llm_calls_by_purpose == {"constraints": 1, "check": 2}


# --- settings and CLIP --------------------------------------------------------------------------
def test_default_candidates_follow_device_speed(settings: Settings) -> None:
    assert default_candidates("cuda") == 4 and default_candidates("cpu") == 2
    assert engine_device(settings.model_copy(update={"image_engine": "a1111"})) == "remote"
    assert engine_device(settings.model_copy(update={"device": "cpu"})) == "cpu"
    loop = QualityLoop(VisionChecker(ChatOllama(model="x")), _no_runner, device="cuda")
    assert loop.n == 4
    app = SimpleNamespace(quality_candidates=3, quality_screen="fast", device="cuda")
    assert QualitySettings.from_settings(app, show=2).model_dump(
        include={"candidates", "screen", "show"}
    ) == {"candidates": 3, "screen": "fast", "show": 2}


async def _no_runner(req: ImageRequest) -> tuple[list[GeneratedImage], list[Path]]:
    raise AssertionError("not used")


def test_clip_is_skipped_silently_without_a_local_model(tmp_path: Path) -> None:
    assert load_clip_scorer(None) is None
    assert load_clip_scorer(tmp_path / "missing") is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    assert load_clip_scorer(tmp_path / "broken") is None


@pytest.mark.slow
def test_tiny_random_clip_from_config_scores_images(tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from tests.support.tiny_pipelines import _tokenizer

    small = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
    }
    config = CLIPConfig(
        text_config={**small, "vocab_size": 520, "max_position_embeddings": 77},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=_tokenizer(),
    )
    processor.save_pretrained(tmp_path / "clip")
    scorer = load_clip_scorer(tmp_path / "clip")
    assert scorer is not None
    image = fake_image("a", 1, 64, 64)
    score = scorer.score(image, "two women on a beach")
    assert math.isfinite(score) and -100.0 <= score <= 100.0
    assert scorer.score(image, "two women on a beach") == score
