"""Reading "change the hat on the left to a red beret" in English and Japanese: the rules,
and the chat model's bounded answer merged with what the words say for certain."""

from __future__ import annotations

import json
from typing import Any

import pytest

from assistant.prompting.edit_words import EditWords, parse_rules, read_choice, read_edit
from tests.support.fake_chat import ScriptedChatModel


@pytest.mark.parametrize(
    ("text", "target", "position", "ordinal", "replacement"),
    [
        ("Change the hat on the left to a red beret", "hat", "left", None, "a red beret"),
        ("please change the left hat into a red beret.", "hat", "left", None, "a red beret"),
        ("Replace the second dog from the right with a cat", "dog", "right", 2, "a cat"),
        ("turn both hats into red berets", "hats", "all", None, "red berets"),
        ("swap the biggest tree for a palm tree", "tree", "biggest", None, "a palm tree"),
        ("change the hat to the left to a beret", "hat", "left", None, "a beret"),
        ("change the sky to a sunset", "sky", "none", None, "a sunset"),
        ("remove the car at the top", "car", "top", None, ""),
        ("左の帽子を赤いベレー帽に変えて", "hat", "left", None, "赤いベレー帽"),
        ("右側の犬を猫にしてください", "dog", "right", None, "猫"),
        ("2番目の帽子を麦わら帽子に替えて", "hat", "none", 2, "麦わら帽子"),
        ("真ん中の車を消して", "car", "center", None, ""),
        ("空を夕焼けに変えて", "sky", "none", None, "夕焼け"),
        ("ペンギンを犬に変えて", "", "none", None, "犬"),  # not in the table: the model's job
    ],
)
def test_the_rules_read_target_position_and_replacement(
    text: str, target: str, position: str, ordinal: int | None, replacement: str
) -> None:
    ruled = parse_rules(text)
    assert ruled is not None
    assert ruled[0] == EditWords(target=target, position=position,
                                 ordinal=ordinal, replacement=replacement)  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ["draw a cat with a hat", "change it to night", "change the size to 768",
     "make the hat red", "猫を描いて", "サイズを768にして", "これを夜にして", "全体を明るくして"],
)
def test_other_messages_are_not_region_edits(text: str) -> None:
    assert parse_rules(text) is None


def reply(**fields: Any) -> str:
    return json.dumps({"target": "", "position": "none", "ordinal": None, "replacement": "",
                       **fields})  # fmt: skip


async def test_the_model_translates_a_noun_the_table_lacks() -> None:
    model = ScriptedChatModel().enqueue(reply(target="penguin", replacement="a dog"))
    edit = await read_edit("左のペンギンを犬に変えて", model)
    assert edit == EditWords(target="penguin", position="left", replacement="犬")
    [sent] = model.history
    assert "左のペンギンを犬に変えて" in str(sent[-1].content)


async def test_a_position_in_the_words_wins_over_the_models_guess() -> None:
    model = ScriptedChatModel().enqueue(reply(target="hat", position="right", ordinal=3))
    edit = await read_edit("Change the hat on the left to a red beret", model)
    assert edit is not None and (edit.position, edit.ordinal) == ("left", None)
    assert edit.replacement == "a red beret"  # the person's own words


async def test_nonsense_from_the_model_falls_back_to_the_rules() -> None:
    # the target is the replacement, twice: not the thing from the request
    model = ScriptedChatModel().enqueue(reply(target="beret"), reply(target="red beret"))
    edit = await read_edit("change the hat to a red beret", model)
    assert edit == EditWords(target="hat", replacement="a red beret")
    assert len(model.history) == 2  # one correction, then the rules


async def test_without_a_model_the_rules_answer_and_other_text_is_none() -> None:
    assert await read_edit("左の帽子を赤いベレー帽に変えて", None) == EditWords(
        target="hat", position="left", replacement="赤いベレー帽")
    assert await read_edit("draw a cat", ScriptedChatModel()) is None


@pytest.mark.parametrize(
    ("text", "choice"),
    [("the left one", ("left", None)), ("#2", ("none", 2)), ("the second one", ("none", 2)),
     ("both", ("all", None)), ("all of them", ("all", None)), ("右の", ("right", None)),
     ("２番目", ("none", 2)), ("両方で", ("all", None)), ("大きい方", ("biggest", None)),
     ("change the hat to a beret", None), ("yes", None), ("draw a cat", None)],
)
def test_a_typed_answer_to_which_one_is_read(text: str, choice: Any) -> None:
    assert read_choice(text) == choice
