"""Constraints: counts read from EN/JA words, the no-text rule, one LLM call, cross-checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from assistant.prompting.spec import PromptParts, PromptSpec, SpecSettings
from assistant.quality.constraints import (
    TEXT_FREE_QUESTION,
    Constraint,
    ConstraintDeriver,
    ConstraintDraft,
    count_question,
    normalize,
    rule_constraints,
)
from assistant.quality.counts import find_counts, singular, wants_text
from assistant.quality.fixes import Failure, apply_fixes
from tests.support.fake_chat import ScriptedChatModel
from tests.support.fake_ollama import FakeOllama, Reply


def spec_for(*words: str, lang: str = "en", subject: str = "two women") -> PromptSpec:
    return PromptSpec(
        positive=f"{subject}, sunny beach",
        negative="lowres",
        parts=PromptParts(subject=subject, setting="sunny beach"),
        settings=SpecSettings(width=256, height=256, steps=4, cfg_scale=7, sampler="Euler a"),
        user_words=list(words),
        language=lang,
    )


def checks(*items: dict[str, Any]) -> str:
    return json.dumps({"constraints": list(items)}, ensure_ascii=False)


def check(kind: str, subject: str, expected: str, question: str = "", label: str = "") -> dict:
    return {
        "kind": kind,
        "subject": subject,
        "expected": expected,
        "question": question,
        "label": label,
    }


# --- numbers in the person's words -------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected", "subject", "span"),
    [
        ("two women playing beach volleyball on a sunny beach", 2, "women", "two women"),
        ("Three black cats sitting on a fence.", 3, "black cats", "Three black cats"),
        ("a 4k photo of 2 dogs", 2, "dogs", "2 dogs"),
        ("二人の女性が晴れたビーチでビーチバレーをしている写真", 2, "women", "二人の女性"),
        ("ソファで猫が三匹寝ている", 3, "cats", "猫が三匹"),
        ("三匹の子猫", 3, "kittens", "三匹の子猫"),
        ("2人でビーチを歩く", 2, "people", "2人"),
        ("三匹", 3, "animals", "三匹"),
        ("ふたりの子ども", 2, "children", "ふたりの子ども"),
        ("十二人の侍", 12, "samurai", "十二人の侍"),
        ("２人の女性", 2, "women", "2人の女性"),  # full-width digits
    ],
)
def test_counts_are_read_from_english_and_japanese_words(
    text: str, expected: int, subject: str, span: str
) -> None:
    found = find_counts([text])
    assert [(c.expected, c.subject, c.span) for c in found] == [(expected, subject, span)]


@pytest.mark.parametrize(
    "text",
    ["3 pm on a 16:9 poster, 512 x 512", "a two-tone car", "two of them", "一本道", "a woman"],
)
def test_measures_and_non_counts_are_ignored(text: str) -> None:
    assert find_counts([text]) == []


def test_several_counts_in_one_message_and_singulars() -> None:
    found = find_counts(["女性二人と子猫3匹", "2 girls and 1 boy"])
    assert [(c.expected, c.singular) for c in found] == [(2, "woman"), (3, "kitten"), (2, "girl")]
    assert singular("young women") == "young woman" and singular("puppies") == "puppy"


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("a wooden sign with no text", False),
        ("a text-free poster", False),
        ("without any lettering", False),
        ("文字のない看板", False),
        ("文字が入っていない看板", False),
        ("a red umbrella in the rain", False),
        ("a sign that says OPEN", True),
        ("「OPEN」と書かれた看板", True),
        ("ロゴを入れて", True),
    ],
)
def test_text_requests_are_told_apart_from_text_bans(text: str, wanted: bool) -> None:
    assert wants_text([text]) is wanted


# --- rules without a model -------------------------------------------------------------------
def test_rule_constraints_count_and_text_free_with_english_questions() -> None:
    out = rule_constraints(spec_for("二人の女性が晴れたビーチでビーチバレー", lang="ja"))
    assert [c.kind for c in out] == ["count", "text_free"]
    assert out[0].expected == 2 and out[0].question == "Are there exactly 2 women in the image?"
    assert out[0].label == "二人の女性" and out[0].source == "rule"
    assert out[1].question == TEXT_FREE_QUESTION and out[1].label == "文字なし"


def test_no_text_free_check_when_the_person_wants_lettering() -> None:
    assert rule_constraints(spec_for('a shop sign that says "OPEN"')) == []


def test_drafts_are_normalized_to_known_kinds_and_yes_means_right() -> None:
    count = normalize(ConstraintDraft(kind="Number", subject="cats", expected="three"), "en")
    assert count is not None and count.kind == "count" and count.expected == 3
    assert count.question == count_question(3, "cats") == "Are there exactly 3 cats in the image?"
    color = normalize(ConstraintDraft(kind="colour", subject="umbrella", expected="Red"), "en")
    assert color is not None and color.question == "Is the umbrella red?"
    assert normalize(ConstraintDraft(kind="mood", subject="x", expected="yes"), "en") is None
    assert count_question(1, "women") == "Is there exactly one woman in the image?"


# --- the one LLM call ----------------------------------------------------------------------------
async def test_derive_is_one_call_and_the_persons_number_wins() -> None:
    model = ScriptedChatModel().enqueue(
        checks(
            check("count", "women", "3", label="three women"),  # the model miscounted
            check(
                "action",
                "playing beach volleyball",
                "yes",
                "Are they playing beach volleyball?",
                "beach volleyball",
            ),
            check("style", "image", "photograph", "Is it a photograph?", "photo"),
        )
    )
    deriver = ConstraintDeriver(model)
    out = await deriver.derive(spec_for("two women playing beach volleyball on a sunny beach"))
    assert deriver.counter.total == 1 and dict(deriver.counter.by_purpose) == {"constraints": 1}
    assert [c.kind for c in out] == ["count", "action", "style", "text_free"]
    assert out[0].expected == 2 and out[0].source == "rule"
    assert out[0].question == "Are there exactly 2 women in the image?"
    prompt = model.history[0][0].content
    assert "count, object, action, color, text_free, style" in prompt


async def test_derive_adds_a_missed_count_and_agreeing_counts_are_both() -> None:
    model = ScriptedChatModel().enqueue(
        checks(check("count", "cats", "3", label="三匹の猫"), check("object", "sofa", "yes"))
    )
    out = await ConstraintDeriver(model).derive(
        spec_for("三匹の猫と二匹の犬がソファに", lang="ja", subject="three cats and two dogs")
    )
    counts = {c.subject: (c.expected, c.source) for c in out if c.kind == "count"}
    assert counts == {"cats": (3, "both"), "dogs": (2, "rule")}
    assert out[-1].kind == "text_free"


async def test_japanese_questions_are_retried_once() -> None:
    model = ScriptedChatModel().enqueue(
        checks(check("object", "傘", "yes", "傘はありますか？")),
        checks(check("object", "umbrella", "yes", "Is there an umbrella?", "傘")),
    )
    deriver = ConstraintDeriver(model)
    out = await deriver.derive(spec_for("赤い傘", lang="ja", subject="a red umbrella"))
    assert deriver.counter.total == 2
    assert out[0] == Constraint(
        kind="object",
        subject="umbrella",
        expected=True,
        question="Is there an umbrella?",
        label="傘",
    )


async def test_unusable_answers_fall_back_to_the_word_rules() -> None:
    model = ScriptedChatModel().enqueue("no json here", "still nothing")
    out = await ConstraintDeriver(model).derive(spec_for("three cats"))
    assert [(c.kind, c.expected) for c in out] == [("count", 3), ("text_free", True)]


@pytest.mark.ollama(script=[Reply(data={"constraints": [check("color", "umbrella", "red")]})])
async def test_wire_request_carries_the_constraint_schema_as_format(ollama: FakeOllama) -> None:
    from langchain_ollama import ChatOllama

    deriver = ConstraintDeriver(ChatOllama(model="qwen3-vl:8b", base_url=ollama.url))
    out = await deriver.derive(spec_for("a red umbrella in the rain"))
    body = ollama.last_chat()
    item = body["format"]["properties"]["constraints"]["items"]
    assert item["properties"]["kind"]["enum"][0] == "count"
    assert "a red umbrella in the rain" in body["messages"][-1]["content"]
    assert [c.kind for c in out] == ["color", "text_free"]


# --- prompt fixes ------------------------------------------------------------------------
def test_fixes_put_the_count_first_and_never_forbid_what_is_asked() -> None:
    two = Constraint(kind="count", subject="women", expected=2, question="?")
    no_text = Constraint(kind="text_free", subject="text", question="?")
    fix = apply_fixes(
        "two women, beach, crowd", "lowres", [Failure(two, 3, [3, 3, 2]), Failure(no_text, 1)]
    )
    assert fix.prompt.startswith("(exactly two women:1.3), two women only, two women, beach")
    negative = fix.negative.split(", ")
    assert {"extra woman", "group", "text", "watermark"} <= set(negative)
    assert "crowd" not in negative  # the scene asks for a crowd
    again = apply_fixes(fix.prompt, fix.negative, [Failure(two, 1, [3]), Failure(no_text, 1)])
    assert (again.prompt, again.negative) == (fix.prompt, fix.negative)
