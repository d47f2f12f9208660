"""The interview: GO detection, app rules over the model's questions, retries, the wire."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from assistant.prompting.interview import (
    SLOTS,
    Interviewer,
    InterviewState,
    default_question,
    is_skip,
    normalize_aspect,
)
from prompts.loader import load_yaml
from tests.support.fake_chat import ScriptedChatModel
from tests.support.fake_ollama import FakeOllama, Reply
from tools.core.messages import has_japanese
from tools.llm.structured import LLMCallCounter


def reply(
    slots: Mapping[str, Any] | None = None,
    questions: Sequence[tuple[str, str]] = (),
    ready: bool = False,
) -> str:
    """A structured interview answer as the model would write it."""
    return json.dumps(
        {
            "slots": dict(slots or {}),
            "questions": [{"slot": s, "text": t} for s, t in questions],
            "ready": ready,
        },
        ensure_ascii=False,
    )


def interviewer(*replies: str | AIMessage, **kw: Any) -> tuple[Interviewer, ScriptedChatModel]:
    model = ScriptedChatModel().enqueue(*replies)
    return Interviewer(model, **kw), model


@pytest.mark.parametrize(
    "text",
    ["GO", "go", "Go!", "ＧＯ", "go ahead", "Just go.", "surprise me", "OK go",
     "おまかせ", "お任せ", "お任せします", "おまかせで！", "おまかせでお願いします",
     "そのまま", "そのままで", "それでいい", "それでいいよ", "「おまかせ」", "ゴー！"],
)  # fmt: skip
def test_skip_words_are_recognised_as_whole_messages(text: str) -> None:
    assert is_skip(text)


@pytest.mark.parametrize(
    "text",
    ["go to the beach", "a girl who says go", "Going home at sunset", "",
     "おまかせの寿司の絵", "そのままの髪型で海辺に", "cat"],
)  # fmt: skip
def test_skip_is_not_a_substring_match(text: str) -> None:
    assert not is_skip(text)


@pytest.mark.parametrize(
    ("text", "aspect"),
    [("縦長", "portrait"), ("9:16", "portrait"), ("wide", "landscape"), ("横長で", "landscape"),
     ("Square", "square"), ("正方形", "square"), ("whatever", None), (None, None)],
)  # fmt: skip
def test_aspect_is_normalised(text: str | None, aspect: str | None) -> None:
    assert normalize_aspect(text) == aspect


def test_every_slot_has_a_default_question_in_both_languages() -> None:
    data = load_yaml("interview.yaml")
    assert set(data["slots"]) == set(SLOTS)
    for slot in SLOTS:
        assert has_japanese(default_question(slot, "ja")), slot
        assert not has_japanese(default_question(slot, "en")), slot


def test_state_round_trips_through_json() -> None:
    state = InterviewState.start("ja-JP")
    state.slots["subject"] = "cat"
    state.asked.append("mood")
    assert InterviewState.model_validate_json(state.model_dump_json()) == state
    assert state.language == "ja"


async def test_japanese_request_gets_japanese_questions_in_one_call() -> None:
    iv, model = interviewer(
        reply(
            {"subject": "two women playing beach volleyball", "setting": "beach"},
            [("mood", "どんな雰囲気にしますか？"), ("lighting", "時間帯はいつにしますか？")],
        )
    )
    result = await iv.step(InterviewState.start("en"), "ビーチバレーの写真を作りたい")
    assert not result.ready
    assert result.questions == ["どんな雰囲気にしますか？", "時間帯はいつにしますか？"]
    assert result.state.language == "ja"
    assert result.state.asked == ["mood", "lighting"]
    assert result.state.slots["setting"] == "beach"
    assert result.state.user_words == ["ビーチバレーの写真を作りたい"]
    assert iv.calls == 1 and result.llm_calls == 1
    assert "おまかせ" in result.message()
    assert "ビーチバレー" in str(model.history[0][-1].content)


async def test_wrong_language_or_missing_questions_fall_back_to_localized_defaults() -> None:
    iv, _ = interviewer(
        reply({"subject": "cat"}, [("mood", "What mood?"), ("setting", "")]),
        reply({"subject": "cat"}, []),
    )
    first = await iv.step(InterviewState.start(), "猫の絵")
    assert first.questions == [default_question("mood", "ja"), default_question("setting", "ja")]
    second = await iv.step(first.state, "かわいい感じ")
    # nothing proposed although not ready: ask the next most important unasked slots
    assert second.questions == [
        default_question("lighting", "ja"),
        default_question("clothing", "ja"),
    ]


@pytest.mark.parametrize("word", ["GO", "おまかせ", "そのままで"])
async def test_go_finishes_without_an_llm_call(word: str) -> None:
    iv, _ = interviewer(reply({"subject": "cat"}, [("mood", "雰囲気は？")]))
    first = await iv.step(InterviewState.start(), "猫の絵")
    result = await iv.step(first.state, word)
    assert result.ready and result.reason == "skip" and result.llm_calls == 0
    assert iv.calls == 1
    assert result.state.done and result.state.language == "ja"  # "GO" keeps Japanese
    assert result.state.user_words == ["猫の絵", word]


async def test_go_as_first_message_needs_no_model_at_all() -> None:
    iv, model = interviewer()
    result = await iv.step(InterviewState.start("ja"), "Go!")
    assert result.ready and iv.calls == 0 and model.history == []
    again = await iv.step(result.state, "more words")
    assert again.ready and iv.calls == 0  # a finished interview stays finished


async def test_description_starting_with_go_is_sent_to_the_model() -> None:
    iv, _ = interviewer(reply({"subject": "a dog"}, ready=True))
    result = await iv.step(InterviewState.start(), "go to the beach with a dog")
    assert result.ready and result.reason == "model" and iv.calls == 1
    assert result.state.language == "en"


async def test_interview_ends_after_max_exchanges() -> None:
    asks = [("mood", "Mood?"), ("setting", "Where?")]
    iv, _ = interviewer(reply({"subject": "cat"}, asks), reply({}, asks), max_exchanges=2)
    first = await iv.step(InterviewState.start(), "a cat please")
    assert not first.ready
    second = await iv.step(first.state, "happy, in a garden")
    assert second.ready and second.reason == "max_exchanges" and second.questions == []
    assert iv.calls == 2


async def test_known_or_already_asked_slots_are_never_asked_and_at_most_two() -> None:
    iv, _ = interviewer(
        reply({"subject": "cat"}, [("mood", "Mood?"), ("setting", "Where?")]),
        reply(
            {"mood": "calm"},
            [("subject", "What animal?"), ("mood", "Mood again?"), ("setting", "Where?"),
             ("lighting", "What light?"), ("lighting", "Light again?"), ("style", "Style?"),
             ("framing", "Framing?")],
        ),
    )  # fmt: skip
    first = await iv.step(InterviewState.start(), "a cat please")
    second = await iv.step(first.state, "calm, I don't mind where")
    assert second.questions == ["What light?", "Style?"]
    assert second.state.asked == ["mood", "setting", "lighting", "style"]
    assert len(set(second.state.asked)) == len(second.state.asked)


async def test_nothing_left_to_ask_means_ready() -> None:
    everything: dict[str, str] = {str(s): f"{s} x" for s in SLOTS} | {"aspect": "square"}
    everything["subject"] = "a fox in the snow"
    iv, _ = interviewer(reply(everything, [("mood", "Mood?")]))
    result = await iv.step(InterviewState.start(), "a very detailed request: a fox in the snow")
    assert result.ready and result.reason == "nothing_to_ask"
    assert result.state.aspect == "square"


async def test_malformed_json_gets_one_corrective_retry() -> None:
    iv, model = interviewer("Sure! Here are my questions:", reply({"subject": "cat"}, ready=True))
    result = await iv.step(InterviewState.start(), "a cat")
    assert result.ready and iv.calls == 2 and result.llm_calls == 2
    correction = model.history[1][-1]
    assert isinstance(correction, HumanMessage) and "JSON" in str(correction.content)


async def test_malformed_twice_degrades_to_egakis_own_questions_with_the_words_kept() -> None:
    iv, _ = interviewer("not json", '{"slots": {"subject": 5}, "questions": "nope"}')
    result = await iv.step(InterviewState.start("ja"), "a cat on a roof at night")
    assert iv.calls == 2 and not result.ready
    assert result.state.user_words == ["a cat on a roof at night"]
    assert result.state.language == "en"
    assert result.questions == [default_question("subject", "en"),
                                default_question("mood", "en")]


async def test_a_server_failure_after_take_leaves_the_words_in_the_record() -> None:
    state = Interviewer.take(InterviewState.start(), "two women playing beach volleyball")
    state = Interviewer.take(state, "bright and sunny, afternoon")
    assert state.user_words == ["two women playing beach volleyball",
                                "bright and sunny, afternoon"]
    assert state.exchanges == 2 and not state.done


async def test_tool_call_json_in_plain_text_is_unwrapped() -> None:
    envelope = json.dumps(
        {"name": "InterviewReply", "arguments": json.loads(reply({"subject": "fox"}, ready=True))}
    )
    fenced = "<think>hmm</think>\n```json\n" + envelope + "\n```"
    iv, _ = interviewer(fenced)
    result = await iv.step(InterviewState.start(), "a fox")
    assert result.ready and result.state.slots["subject"] == "fox" and iv.calls == 1


async def test_a_real_tool_call_is_accepted_too() -> None:
    args = json.loads(reply({"subject": "owl"}, ready=True))
    call = AIMessage(content="", tool_calls=[{"name": "x", "args": args, "id": "1"}])
    iv, _ = interviewer(call)
    result = await iv.step(InterviewState.start(), "an owl")
    assert result.state.slots["subject"] == "owl"


async def test_shared_counter_counts_per_purpose() -> None:
    counter = LLMCallCounter()
    iv, _ = interviewer(reply({"subject": "cat"}, [("mood", "Mood?")]), counter=counter)
    state = (await iv.step(InterviewState.start(), "a cat")).state
    await iv.step(state, "GO")
    assert counter.total == 1 and counter.by_purpose["interview"] == 1


@pytest.mark.ollama(script=[Reply(data={"slots": {"subject": "cat"}, "ready": False,
                                         "questions": [{"slot": "mood", "text": "雰囲気は？"}]})])
async def test_wire_request_sends_json_schema_format_and_no_tools(ollama: FakeOllama) -> None:
    from langchain_ollama import ChatOllama

    model = ChatOllama(model="qwen3-vl:8b", base_url=ollama.url)
    result = await Interviewer(model).step(InterviewState.start(), "猫を描いて欲しい")
    body = ollama.last_chat()
    assert result.questions == ["雰囲気は？"]
    schema = body["format"]
    assert isinstance(schema, dict) and schema["type"] == "object"
    assert set(schema["required"]) == {"slots", "questions", "ready"}
    assert "$ref" not in json.dumps(schema)
    assert not body.get("tools")
    assert body["messages"][0]["role"] == "system"
    assert "Japanese" in body["messages"][0]["content"]
