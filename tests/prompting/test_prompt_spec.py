"""Prompt specs and variations: ordering, English, negatives, sizes, retries, the card."""

from __future__ import annotations

import json
from typing import Any

import pytest

from assistant.prompting.builder import SpecBuilder
from assistant.prompting.interview import InterviewState
from assistant.prompting.spec import (
    AXES,
    PromptParts,
    PromptSpec,
    dedupe_terms,
    merge_negative,
)
from assistant.prompting.spec_card import render_card
from prompts.loader import load_yaml
from tests.support.fake_chat import ScriptedChatModel
from tests.support.fake_ollama import FakeOllama, Reply
from tools.core.errors import InvalidRequest, ModelOutputError
from tools.core.messages import has_japanese
from tools.infotext.prompt_syntax import find_unsupported, parse_prompt_attention
from tools.llm.structured import LLMCallCounter

BEACH: dict[str, Any] = {
    "subject": "two women playing beach volleyball, jumping for the ball",
    "setting": "sandy beach, volleyball net, ocean",
    "time_of_day": "at sunset",
    "weather": "",
    "lighting": "warm backlight",
    "color_palette": "",
    "framing": "wide shot",
    "style": "sports photography",
    "negative_extra": "Watermark, crowd",
    "width": 512,
    "height": 768,
    "steps": 28,
    "cfg_scale": 6.5,
    "sampler": "dpm++ 2m karras",
    "seed": None,
    "size_reason": "縦長で躍動感を出す",
    "steps_reason": "",
    "cfg_scale_reason": "",
    "sampler_reason": "",
}


def draft(**changes: Any) -> str:
    return json.dumps({**BEACH, **changes}, ensure_ascii=False)


def finished(aspect: str | None = "portrait", lang: str = "ja") -> InterviewState:
    state = InterviewState.start(lang)
    state.user_words = ["ビーチバレーの写真を作りたい", "夕方で", "おまかせ"]
    state.questions = [["時間帯は？"], [], []]
    state.slots["subject"] = "beach volleyball"
    if aspect:
        state.slots["aspect"] = aspect
    state.done = True
    return state


def builder(*replies: str) -> tuple[SpecBuilder, ScriptedChatModel]:
    model = ScriptedChatModel().enqueue(*replies)
    return SpecBuilder(model), model


async def test_spec_is_english_ordered_and_keeps_the_users_words() -> None:
    b, model = builder(draft())
    spec = await b.build(finished())
    pos = spec.positive
    order = ["volleyball", "sandy beach", "sunset", "backlight", "wide shot", "photography"]
    assert [pos.index(w) for w in order] == sorted(pos.index(w) for w in order)
    assert pos.endswith("masterpiece, best quality, highly detailed")
    assert not has_japanese(pos)
    assert spec.user_words == finished().user_words
    assert spec.settings.sampler == "DPM++ 2M Karras"
    assert spec.reasons["size"] == "縦長で躍動感を出す"
    assert all(spec.reasons[k] for k in ("size", "steps", "cfg_scale", "sampler", "seed"))
    assert b.calls == 1
    sent = model.history[0][-1].content
    assert "ビーチバレー" in str(sent) and "時間帯は？" in str(sent)


async def test_negative_merges_family_preset_without_duplicates() -> None:
    sd15 = await builder(draft())[0].build(finished(), family="sd15")
    sdxl = await builder(draft())[0].build(finished(), family="sdxl")
    for term in ("extra fingers", "bad anatomy", "watermark", "signature", "jpeg artifacts",
                 "lowres", "poorly drawn face"):  # fmt: skip
        assert term in sd15.negative.split(", ")
    assert "deformed hands" in sdxl.negative and "bad hands" not in sdxl.negative
    assert sd15.negative != sdxl.negative
    terms = [t.casefold() for t in sd15.negative.split(", ")]
    assert terms.count("watermark") == 1 and "crowd" in terms
    assert sdxl.positive.endswith("high quality, highly detailed")


async def test_spec_stresses_the_count_and_keeps_only_syntax_the_engine_honours() -> None:
    b, _ = builder(draft(style="[photo|painting] AND (film grain:3)",
                         negative_extra="[text:logo:0.5], <hypernet:x:1>"))
    spec = await b.build(finished())
    assert spec.positive.startswith("(two women:1.2) playing beach volleyball")
    assert ("two women", 1.2) in parse_prompt_attention(spec.positive)
    assert "photo, (film grain:1.5)" in spec.positive  # first option; weight kept sane
    assert not find_unsupported(spec.positive) and not find_unsupported(spec.negative)
    assert "logo" in spec.negative.split(", ")
    weighted = await builder(draft(subject="(three cats:1.1) on a sofa"))[0].build(finished())
    assert weighted.positive.startswith("(three cats:1.1) on a sofa")  # the model's own


def test_dedupe_keeps_first_spelling_and_order() -> None:
    assert dedupe_terms(["A, b", " B ,c,,a  ", "C"]) == ["A", "b", "c"]
    assert merge_negative("sd15", presets=["text"]) == "text, watermark, signature, logo"


@pytest.mark.parametrize(
    ("family", "aspect", "size"),
    [
        ("sd15", "portrait", (512, 768)),
        ("sd15", "landscape", (768, 512)),
        ("sd15", None, (512, 512)),
        ("sdxl", "portrait", (832, 1216)),
        ("sdxl", "landscape", (1216, 832)),
        ("sdxl", "square", (1024, 1024)),
    ],
)
async def test_invalid_model_size_becomes_native_size_for_the_aspect(
    family: str, aspect: str | None, size: tuple[int, int]
) -> None:
    b, _ = builder(draft(width=500, height=700))
    spec = await b.build(finished(aspect), family=family)  # type: ignore[arg-type]
    assert (spec.settings.width, spec.settings.height) == size
    assert spec.settings.width % 8 == 0 and spec.settings.height % 8 == 0
    assert spec.reasons["size"] != "縦長で躍動感を出す"  # the model's reason went with its size


async def test_valid_size_in_the_wrong_aspect_or_family_is_replaced() -> None:
    landscape = await builder(draft(width=768, height=512))[0].build(finished("portrait"))
    assert (landscape.settings.width, landscape.settings.height) == (512, 768)
    sd15_size_on_xl = await builder(draft())[0].build(finished("portrait"), family="sdxl")
    assert (sd15_size_on_xl.settings.width, sd15_size_on_xl.settings.height) == (832, 1216)
    kept = await builder(draft(width=576, height=768))[0].build(finished("portrait"))
    assert (kept.settings.width, kept.settings.height) == (576, 768)


async def test_bad_settings_fall_back_to_family_defaults() -> None:
    b, _ = builder(draft(sampler="Super Sampler 9000", steps=500, cfg_scale=None, seed=-5))
    spec = await b.build(finished(), family="sdxl")
    s = spec.settings
    assert (s.sampler, s.steps, s.cfg_scale, s.seed) == ("DPM++ 2M Karras", 60, 6.0, None)
    request = spec.to_image_request({"seed": 42, "batch_size": 2})
    assert request.seed == 42 and request.negative_prompt == spec.negative
    assert (request.width, request.height) == (832, 1216)
    with pytest.raises(InvalidRequest):
        spec.to_image_request({"width": 500})


async def test_japanese_in_the_prompt_is_retried_once_then_accepted() -> None:
    b, model = builder(draft(subject="ビーチバレーをする二人の女性"), draft())
    spec = await b.build(finished())
    assert not has_japanese(spec.positive) and b.calls == 2
    assert "English" in str(model.history[1][-1].content)


async def test_japanese_twice_falls_back_to_the_interview_not_an_error() -> None:
    b, _ = builder(draft(subject="猫"), draft(lighting="夕焼け"))
    state = finished()
    spec = await b.build(state)  # GO always reaches a picture
    assert "猫" not in spec.positive and "夕焼け" not in spec.positive
    assert (state.slots.get("subject") or state.user_words[0]) in spec.positive
    assert b.calls == 2


async def test_malformed_json_then_valid_and_tag_lists_are_accepted() -> None:
    b, _ = builder('{"subject": "cat", "width": ', draft(style=["anime", "cel shading"]))
    spec = await b.build(finished())
    assert "anime, cel shading" in spec.positive and b.calls == 2


async def test_tool_call_envelope_in_text_is_unwrapped() -> None:
    text = json.dumps({"tool_calls": [{"function": {"name": "spec", "arguments": draft()}}]})
    b, _ = builder(text)
    spec = await b.build(finished())
    assert "volleyball" in spec.positive and b.calls == 1


def test_card_renders_in_both_languages() -> None:
    spec = PromptSpec(
        positive="a cat | on a roof",
        negative=merge_negative("sd15"),
        parts=PromptParts(subject="a cat"),
        settings={
            "width": 512,
            "height": 768,
            "steps": 25,
            "cfg_scale": 7.0,
            "sampler": "Euler a",
            "seed": None,
        },
        reasons={"steps": "細部のため"},
        user_words=["猫の絵", "GO"],
    )
    ja, en = render_card(spec, "ja"), render_card(spec, "en")
    assert "プロンプト" in ja and "ネガティブ" in ja and "ランダム" in ja and "縦長" in ja
    assert "Negative prompt" in en and "| Steps | 25 | 細部のため |" in en
    assert "Portrait size" in en and "random" in en
    for card in (ja, en):
        assert "```text\na cat | on a roof\n```" in card
        assert "> - 猫の絵" in card and "extra fingers" in card
        assert "512 × 768" in card and "Euler a" in card


# --- variations -----------------------------------------------------------------------------
async def base_spec() -> PromptSpec:
    return await builder(draft())[0].build(finished())


def variants(*items: tuple[str, str, str]) -> str:
    return json.dumps(
        {"variants": [{"axis": a, "value": v, "label": lab} for a, v, lab in items]},
        ensure_ascii=False,
    )


def changed_parts(a: PromptSpec, b: PromptSpec) -> list[str]:
    return [f for f in PromptParts.model_fields if getattr(a.parts, f) != getattr(b.parts, f)]


async def test_variations_change_exactly_one_named_axis_each_in_one_call() -> None:
    spec = await base_spec()
    b, _ = builder(
        variants(
            ("lighting", "neon lights", "ネオン"),
            ("time_of_day", "at night", "夜"),
            ("style", "watercolor painting", "水彩"),
            ("Color palette", "pastel colors", "パステル"),
        )
    )
    out = await b.variations(spec, n=4)
    assert b.calls == 1 and len(out) == 4
    assert len({v.positive for v in out} | {spec.positive}) == 5
    for v in out:
        assert changed_parts(spec, v) == [v.axis]
        assert v.label and v.negative == spec.negative and v.settings == spec.settings
    assert [v.axis for v in out] == ["lighting", "time_of_day", "style", "color_palette"]


async def test_variation_values_keep_only_honoured_syntax() -> None:
    spec = await base_spec()
    b, _ = builder(variants(("lighting", "[neon|candle] light AND (glow:2)", "ネオン")))
    (v,) = await b.variations(spec, n=1)
    assert v.parts.lighting == "neon light, (glow:1.5)"
    assert not find_unsupported(v.positive)


async def test_bad_or_duplicate_variants_are_filled_deterministically() -> None:
    spec = await base_spec()
    junk = variants(
        ("lighting", "neon lights", "Neon"),
        ("lighting", "Neon Lights", "Neon again"),  # same prompt
        ("style", "水彩画", "水彩"),  # not English
        ("mood", "sad", "sad"),  # not an axis
        ("framing", "wide shot", "same"),  # no change
    )
    first = await builder(junk)[0].variations(spec, n=5)
    second = await builder(junk)[0].variations(spec, n=5)
    assert [v.positive for v in first] == [v.positive for v in second]
    assert len({v.positive for v in first}) == 5 and spec.positive not in {
        v.positive for v in first
    }
    assert first[0].axis == "lighting" and first[0].parts.lighting == "neon lights"
    options = load_yaml("styles.yaml")["axes"]
    for v in first:
        assert changed_parts(spec, v) == [v.axis] and v.axis in AXES
    for v in first[1:]:
        assert getattr(v.parts, str(v.axis)) in [o["value"] for o in options[v.axis]]
        assert has_japanese(v.label)  # the user's language, from styles.yaml


async def test_variations_respect_requested_axes_and_limits() -> None:
    spec = await base_spec()
    b, _ = builder(variants(("style", "oil painting", "油絵")))
    out = await b.variations(spec, n=3, axes=["lighting", "time of day"])
    assert {v.axis for v in out} <= {"lighting", "time_of_day"} and len(out) == 3
    with pytest.raises(InvalidRequest):
        await b.variations(spec, n=0)
    with pytest.raises(InvalidRequest):
        await b.variations(spec, axes=["mood"])
    assert b.calls == 1


async def test_variations_malformed_twice_raise() -> None:
    b, _ = builder("nope", "still nope")
    with pytest.raises(ModelOutputError):
        await b.variations(await base_spec())
    assert b.calls == 2


async def test_call_budget_after_the_interview_is_two() -> None:
    counter = LLMCallCounter()
    model = ScriptedChatModel().enqueue(draft(), variants(("lighting", "neon lights", "ネオン")))
    b = SpecBuilder(model, counter=counter)
    spec = await b.build(finished())
    await b.variations(spec, n=4)
    assert counter.total == 2
    assert dict(counter.by_purpose) == {"spec": 1, "variations": 1}


async def test_wire_spec_request_carries_the_schema_as_format(ollama: FakeOllama) -> None:
    from langchain_ollama import ChatOllama

    ollama.enqueue(Reply(data=json.loads(draft())), Reply(content="not json"),
                   Reply(data=json.loads(variants(("weather", "light rain", "雨")))))
    b = SpecBuilder(ChatOllama(model="qwen3-vl:8b", base_url=ollama.url))
    spec = await b.build(finished(), family="sdxl")
    out = await b.variations(spec, n=2)
    chats = ollama.chat_requests()
    assert len(chats) == b.calls == 3
    schema = chats[0]["format"]
    assert "subject" in schema["properties"] and "negative_extra" in schema["required"]
    assert not chats[0].get("tools")
    assert "SDXL" in chats[0]["messages"][0]["content"]
    assert chats[2]["messages"][-1]["role"] == "user"  # the corrective retry
    assert out[0].axis == "weather" and len({v.positive for v in out}) == 2


def test_seed_kept_only_when_the_person_wrote_it() -> None:
    from assistant.prompting.builder import seed_from_words

    assert seed_from_words(42, ["a cat"]) is None  # the model's habit, not the person's wish
    assert seed_from_words(1234567, ["a cat, seed 1234567"]) == 1234567
    assert seed_from_words(42, ["a cat, seed 421"]) is None


def test_nonsense_setting_reasons_are_replaced() -> None:
    from assistant.prompting.builder import sensible_reason

    assert sensible_reason("beach volleyball", "en") == ""
    assert sensible_reason("ビーチバレー", "en") == ""
    assert sensible_reason("A square frame suits the portrait.", "ja") == ""
    assert sensible_reason("Square suits a single portrait well.", "en")
    assert sensible_reason("人物一人なので正方形が合います。", "ja")


async def test_go_after_a_spec_failure_still_gives_a_spec_from_the_persons_words() -> None:
    from assistant.prompting.builder import SpecBuilder
    from assistant.prompting.interview import InterviewState
    from tests.support.fake_chat import ScriptedChatModel

    model = ScriptedChatModel().enqueue("not json", "still not json")
    state = InterviewState.start("ja")
    state.user_words += ["ビーチバレーの写真を作りたい", "おまかせ"]
    spec = await SpecBuilder(model).build(state, "sd15")
    assert "ビーチバレーの写真を作りたい" in spec.positive and "おまかせ" not in spec.positive
    assert spec.to_image_request().prompt == spec.positive
