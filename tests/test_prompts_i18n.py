"""Prompt templates fail loudly; language detection and messages in both languages."""

from __future__ import annotations

import pytest

from assistant.i18n import MESSAGES, detect_language, t
from prompts.loader import PromptTemplateError, placeholders, render


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
    import string

    for key, table in MESSAGES.items():
        assert set(table) == {"en", "ja"}, key
        fields = [
            {f for _, f, _, _ in string.Formatter().parse(table[lang]) if f} for lang in table
        ]
        assert fields[0] == fields[1], key


def test_ollama_down_message_is_actionable() -> None:
    assert "ollama serve" in t("ollama_down", "en", host="http://127.0.0.1:11434")
    assert "ollama serve" in t("ollama_down", "ja", host="h")
    with pytest.raises(KeyError):
        t("ollama_down", "en")
