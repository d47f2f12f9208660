"""Chat messages about the ledger become typed commands; everything else is left alone."""

from __future__ import annotations

import pytest

from assistant.chat.ledger_commands import (
    AgainNewSeed,
    Export,
    Favourite,
    FindImages,
    LedgerCommand,
    Rate,
    Reproduce,
    Show,
    find_ids,
    format_id,
    parse_ledger_command,
)

ID = "a1b2c3d4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("find images like a fox in snow", FindImages("a fox in snow")),
        ("Search for pictures of a red bicycle.", FindImages("a red bicycle")),
        ("show me my photos with cherry blossoms", FindImages("cherry blossoms")),
        ("search lighthouse", FindImages("lighthouse")),
        ("画像を探して 夕焼け", FindImages("夕焼け")),
        ("夕焼けの画像を探して", FindImages("夕焼け")),
        ("猫っぽい写真を検索して", FindImages("猫")),
        ("写真を検索: 海", FindImages("海")),
        ("reproduce #a1b2c3d4", Reproduce(ID)),
        ("#a1b2c3d4 をもう一度", Reproduce(ID)),
        ("#A1B2C3D4を再現して", Reproduce(ID)),
        ("a1b2c3d4 again", Reproduce(ID)),
        ("again with new seed #a1b2c3d4", AgainNewSeed(ID)),
        ("#a1b2c3d4 を別のシードでもう一度", AgainNewSeed(ID)),
        ("rate #a1b2c3d4 5", Rate(ID, 5)),
        ("give #a1b2c3d4 4 stars", Rate(ID, 4)),
        ("#a1b2c3d4 ★★★", Rate(ID, 3)),
        ("#a1b2c3d4 を星4に", Rate(ID, 4)),
        ("rate #a1b2c3d4 10", Rate(ID, 10)),  # the ledger explains the 1-5 scale
        ("favourite #a1b2c3d4", Favourite(ID)),
        ("fav #a1b2c3d4", Favourite(ID)),
        ("#a1b2c3d4 をお気に入りに", Favourite(ID)),
        ("unfavourite #a1b2c3d4", Favourite(ID, on=False)),
        ("#a1b2c3d4 をお気に入りから外して", Favourite(ID, on=False)),
        ("export #a1b2c3d4", Export((ID,))),
        ("export #a1b2c3d4 json", Export((ID,), "json")),
        ("export #a1b2c3d4 #b2c3d4e5 as JSON", Export((ID, "b2c3d4e5"), "json")),
        ("#a1b2c3d4 のパラメータを見せて", Export((ID,))),
        ("show #a1b2c3d4", Show(ID)),
        ("#a1b2c3d4", Show(ID)),
    ],
)
def test_commands_in_english_and_japanese(text: str, expected: LedgerCommand) -> None:
    assert parse_ledger_command(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "draw a fox in snow",
        "find a way to draw hands",
        "use seed 12345678 again",  # a seed, not an id
        "make the deadbeef sign bigger",  # a word, not an id
        "draw a fox like #a1b2c3d4 but in blue",  # a new request that mentions an id
        "夕焼けの海を描いて",
    ],
)
def test_other_messages_are_not_commands(text: str) -> None:
    assert parse_ledger_command(text) is None


def test_ids_are_found_and_formatted() -> None:
    assert find_ids("compare #A1B2C3D4 and b2c3d4e5, not deadbeef or #a1b2c3d4") == [
        ID, "b2c3d4e5"]
    assert format_id("A1B2C3D4") == "#a1b2c3d4" and format_id("#a1b2c3d4") == "#a1b2c3d4"
