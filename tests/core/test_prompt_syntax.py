"""A1111's prompt syntax: the attention parser, and what Egaki honours or not.

Expected parses are A1111's own doctests (``modules/prompt_parser.py``), floats included.
"""

from __future__ import annotations

import pytest

from tools.infotext.prompt_syntax import (
    BREAK,
    emphasize,
    find_unsupported,
    honoured_only,
    parse_prompt_attention,
)

# --- parse_prompt_attention: A1111 doctests --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
    ],
)
def test_a1111_doctests(text, expected):
    assert parse_prompt_attention(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("", 1.0)]),
        ("(cat:1.0)", [("cat", 1.0)]),
        ("(cat:1.5)", [("cat", 1.5)]),
        ("((cat))", [("cat", 1.1 * 1.1)]),
        ("[cat]", [("cat", 1 / 1.1)]),
        ("[[cat]]", [("cat", 1 / 1.1 / 1.1)]),
        ("[unbalanced", [("unbalanced", 1 / 1.1)]),
        ("a) b] c", [("a) b] c", 1.0)]),  # closers without an opener are text
        ("(a:b)", [("a:b", 1.1)]),  # not a number: the colon is text
        ("(a: 1.2)", [("a: 1.2", 1.1)]),  # A1111 allows no space before the number
        ("\\\\ x", [("\\ x", 1.0)]),
        ("\\(cat:1.5\\)", [("(cat:1.5)", 1.0)]),
        ("(cat:-1)", [("cat", -1.0)]),
    ],
)
def test_more_syntax(text, expected):
    got = parse_prompt_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_break_splits_and_eats_spaces():
    assert parse_prompt_attention("a cat BREAK a dog") == [("a cat", 1.0), BREAK, ("a dog", 1.0)]
    assert parse_prompt_attention("a\nBREAK\nb") == [("a", 1.0), BREAK, ("b", 1.0)]
    # only the upper-case whole word
    assert parse_prompt_attention("breakfast BREAKS break") == [("breakfast BREAKS break", 1.0)]


def test_break_inside_emphasis_is_text_as_in_a1111():
    # A1111 multiplies the BREAK marker's -1 too, so it stops being a BREAK.
    assert parse_prompt_attention("(a BREAK b)") == [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]



# --- syntax Egaki does not honour ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("a [cat:dog:0.5] b", ["prompt_editing"]),
        ("[cat:10], [hat::0.3], [cat:1.2]", ["prompt_editing"] * 3),
        ("[cat|dog|fox]", ["alternation"]),
        ("a cat AND a dog", ["and"]),
        ("<hypernet:anime:0.7> <lyco:x:1> <lora:ok:0.5>", ["extra_network"] * 2),
        ("(masterpiece:1.2), ((detailed)), [background], a BREAK b, easynegative", []),
        ("\\[cat:dog:0.5\\] and ANDROID, android", []),  # escaped, and AND only as a word
    ],
)
def test_unsupported_syntax_is_found(text: str, kinds: list[str]) -> None:
    assert [u.kind for u in find_unsupported(text)] == kinds


def test_unsupported_finds_are_the_written_text_in_order() -> None:
    found = find_unsupported("x [a|b] y [c:d:0.5] z AND w")
    assert [u.text for u in found] == ["[a|b]", "[c:d:0.5]", "AND"]


@pytest.mark.parametrize(
    ("model_wrote", "honoured"),
    [
        ("a [cat:dog:0.5] on a sofa", "a dog on a sofa"),
        ("[hat::0.3], [scarf:10]", "hat, scarf"),
        ("[red|blue] car AND a tree", "red car, a tree"),
        ("<hypernet:anime:0.7>, a cat", "a cat"),
        ("(two women:2.5), (sky:0.1), (cat:1.2)", "(two women:1.5), (sky:0.5), (cat:1.2)"),
        ("(masterpiece:1.2), ((detailed)), a BREAK b",) * 2,
    ],
)
def test_model_output_keeps_only_honoured_syntax(model_wrote: str, honoured: str) -> None:
    assert honoured_only(model_wrote) == honoured
    assert not find_unsupported(honoured_only(model_wrote))


def test_emphasize_escapes_the_term() -> None:
    assert emphasize("two women", 1.2) == "(two women:1.2)"
    assert emphasize("a cat (tabby)", 1.1) == "(a cat \\(tabby\\):1.1)"
    assert parse_prompt_attention(emphasize("a cat (tabby)", 1.1)) == [("a cat (tabby)", 1.1)]
    assert emphasize(" plain ", 1) == "plain"
