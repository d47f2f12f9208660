"""Prompt templates and the message catalogue fail loudly; one language detection."""

from __future__ import annotations

import pytest

from prompts.loader import PromptTemplateError, placeholders, render
from tools.core.errors import InvalidRequest
from tools.core.messages import (
    MessageError,
    catalogue,
    detect_language,
    fields,
    msg,
)


def test_render_fills_every_placeholder() -> None:
    text = render("system.md", language="Japanese")
    assert "Japanese" in text and "{{" not in text


def test_render_fails_on_missing_or_extra_values() -> None:
    assert placeholders("system.md") == {"language"}
    with pytest.raises(PromptTemplateError, match="missing"):
        render("system.md")
    with pytest.raises(PromptTemplateError, match="unexpected"):
        render("system.md", language="en", mood="x")
    with pytest.raises(PromptTemplateError):
        render("no_such_prompt.md")


@pytest.mark.parametrize(
    ("text", "fallback", "lang"),
    [
        ("ビーチバレーの写真を作りたい", "en", "ja"),
        ("おまかせ", "en", "ja"),
        ("猫", "en", "ja"),
        ("GO", "ja-JP", "ja"),
        ("a cat on a roof", "en-US", "en"),
        ("", "ja", "ja"),
    ],
)
def test_detect_language(text: str, fallback: str, lang: str) -> None:
    assert detect_language(text, fallback) == lang


def test_every_message_has_both_languages_and_same_placeholders() -> None:
    table = catalogue()
    assert len(table) > 60
    for key, texts in table.items():
        assert set(texts) == {"en", "ja"}, key
        assert fields(texts["en"]) == fields(texts["ja"]), key


def test_ollama_down_message_is_actionable() -> None:
    assert "ollama serve" in msg("ollama_down", "en", host="http://127.0.0.1:11434")
    assert "ollama serve" in msg("ollama_down", "ja-JP", host="h")


def test_catalogue_fails_loudly_on_unknown_key_or_missing_value() -> None:
    with pytest.raises(MessageError, match="needs values"):
        msg("ollama_down", "en")
    with pytest.raises(MessageError, match="no message"):
        msg("no_such_message", "en")


def test_errors_carry_a_key_and_render_in_the_readers_language() -> None:
    err = InvalidRequest.of("upload_empty", name="a.png")
    assert str(err) == msg("upload_empty", "en", name="a.png")
    assert err.localized("ja") == msg("upload_empty", "ja", name="a.png")
    assert err.localized("ja") != err.localized("en")
