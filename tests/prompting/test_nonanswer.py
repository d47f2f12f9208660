"""Non-answers of a weak model (recorded from SmolLM2-135M) are dropped: Egaki's own
localised questions or the person's words stand in, the interview goes on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_ollama import ChatOllama

from assistant.prompting.builder import SpecBuilder
from assistant.prompting.interview import (
    SLOTS,
    Interviewer,
    InterviewState,
    default_question,
)
from assistant.prompting.nonanswer import (
    echoes_instructions,
    grounded_subject,
    not_a_question,
    unrelated,
)
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import SPEC

# SmolLM2-135M's interview answers (egaki compare-models, llama.cpp, temperature 0)
SMOL_EN: dict[str, Any] = {
    "slots": {"subject": "two women playing beach volleyball", "mood": "relaxed",
              "setting": "beach volleyball", "lighting": "sunset",
              "clothing": "beach volleyball", "framing": "beach volleyball",
              "style": "beach volleyball", "aspect": "square"},
    "questions": [{"slot": "subject", "text": "You are playing beach volleyball with two "
                   "women. What do you do?"}, {"slot": "mood", "text": "relaxed"}],
    "ready": False,
}
SMOL_JA: dict[str, Any] = {
    "slots": {"subject": "ビーチバレーの写真を作りたい", "mood": "ビーチバレーの写真を作りたい",
              "setting": "ビーチバレーの写真を作りたい", "lighting": None, "clothing": None,
              "framing": None, "style": None, "aspect": "portrait"},
    "questions": [{"slot": "mood", "text": "ビーチバレーの写真を作りたい"},
                  {"slot": "setting", "text": "夕暮れの海辺を歩く女の子は、アップラスキャラですが、"
                   "アップラスキャラですが、アップラスキャラですが"}],
    "ready": False,
}
ECHO: dict[str, Any] = {
    "slots": {"subject": "Birrakel", "mood": "short English phrase, or null"},
    "questions": [{"slot": "mood", "text": "Fill every slot you can infer from the person's "
                   "words with a short English phrase?"}],
    "ready": False,
}


@pytest.fixture
def chat(ollama: FakeOllama) -> ChatOllama:
    return ChatOllama(model="qwen3-vl:8b", base_url=ollama.url)


async def test_copied_values_and_bare_value_questions_are_dropped(
    ollama: FakeOllama, chat: ChatOllama
) -> None:
    ollama.enqueue(Reply(json.dumps(SMOL_EN)))
    result = await Interviewer(chat).step(InterviewState.start(), "two women playing beach "
                                          "volleyball")
    slots = result.state.slots
    assert slots["subject"] == "two women playing beach volleyball"
    assert slots["setting"] == "beach volleyball"  # kept once, not in clothing/framing/style
    assert not {"clothing", "framing", "style"} & slots.keys()
    # "relaxed" is no question: Egaki asks its own (mood was filled, so the next one)
    assert "relaxed" not in result.questions
    assert all(q.endswith("?") for q in result.questions)


async def test_japanese_request_handed_back_as_questions_gets_egakis_questions(
    ollama: FakeOllama, chat: ChatOllama
) -> None:
    ollama.enqueue(Reply(json.dumps(SMOL_JA, ensure_ascii=False)))
    request = "ビーチバレーの写真を作りたい"
    result = await Interviewer(chat).step(InterviewState.start("en"), request)
    assert result.state.language == "ja"
    assert "ビーチバレーの写真を作りたい" not in result.questions
    assert not any("アップラスキャラ" in q for q in result.questions)
    assert result.questions == [default_question("mood", "ja"),
                                default_question("setting", "ja")]


async def test_echoed_instructions_and_a_nonsense_subject_are_not_kept(
    ollama: FakeOllama, chat: ChatOllama
) -> None:
    ollama.enqueue(Reply(json.dumps(ECHO)))
    result = await Interviewer(chat).step(InterviewState.start(), "a red fox in fresh snow")
    assert "subject" not in result.state.slots and "mood" not in result.state.slots
    own = {default_question(slot, "en") for slot in SLOTS}
    assert result.questions and set(result.questions) <= own


async def test_spec_with_an_unrelated_subject_is_drawn_from_the_persons_words(
    ollama: FakeOllama, chat: ChatOllama
) -> None:
    ollama.enqueue(Reply(data={**SPEC, "subject": "Birrakel"}))
    state = InterviewState(user_words=["two women playing beach volleyball", "GO"], done=True)
    spec = await SpecBuilder(chat).build(state)
    assert spec.parts.subject == "two women playing beach volleyball"
    assert "Birrakel" not in spec.positive


def test_checks_leave_real_answers_alone() -> None:
    assert not unrelated(["a cat sleeping on a sofa"], "a tabby cat curled up")
    assert not unrelated(["夕暮れの海辺を歩く女の子"], "a girl walking on a beach at dusk")
    assert not unrelated(["猫の絵"], "")  # nothing to judge
    assert unrelated(["two women playing beach volleyball"], "Birrakel")
    assert not not_a_question("What mood should it have?")
    assert not not_a_question("どんな雰囲気にしますか")
    assert not_a_question("sunset") and not_a_question("ビーチバレーの写真を作りたい")
    assert not echoes_instructions("Soft morning light?", "Fill every slot you can infer.")
    assert grounded_subject("a fox", ["a red fox"]) == "a fox"
