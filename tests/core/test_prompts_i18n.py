"""Prompt templates and the message catalogue fail loudly; one language detection."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from prompts.loader import PromptTemplateError, placeholders, render
from tools.core.errors import InvalidRequest, ModelMissing
from tools.core.messages import (
    Message,
    MessageError,
    catalogue,
    detect_language,
    fields,
    lang_code,
    language_name,
    localize,
    msg,
)
from tools.core.messages import placeholders as message_placeholders

ROOT = Path(__file__).resolve().parents[2]


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


def test_unknown_values_fail_and_nested_messages_follow_the_language() -> None:
    with pytest.raises(MessageError, match="no placeholder"):
        msg("ledger_k", "en", k=0)
    hint = Message.of("did_you_mean", listed="a, b")
    assert msg("lora_missing", "ja", name="x", folder="/l", hint=hint).endswith(" 候補: a, b")
    assert "Did you mean: a, b?" in msg("lora_missing", "en", name="x", folder="/l", hint=hint)
    with pytest.raises(MessageError, match="no message"):
        Message.of("no_such_message")


def test_an_error_can_be_the_reason_inside_another_message() -> None:
    inner = ModelMissing.of("hub_not_found", model="a/b", repo="a/b")
    outer = ModelMissing.of("fast_lora_needed", model="a/b", ref="a/b", reason=inner)
    assert outer.model == "a/b" and inner.localized("en") in str(outer)
    assert inner.localized("ja") in outer.localized("ja-JP")


def test_model_missing_keeps_the_model_and_fills_its_placeholder() -> None:
    err = ModelMissing.of("model_missing_hint", model="gemma3:4b")
    assert err.model == "gemma3:4b" and "ollama pull gemma3:4b" in err.message
    assert ModelMissing.of("hub_gated", model="x/y", repo="x/y").model == "x/y"


def test_language_helpers() -> None:
    assert lang_code("ja-JP") == "ja" and lang_code(None) == "en"
    assert language_name("ja") == "Japanese" and language_name("en-US") == "English"
    assert localize({"en": "Wide", "ja": "横長"}, "ja-JP") == "横長"
    with pytest.raises(MessageError):
        localize({"en": "Wide"}, "ja")


# --- every key the code names exists, every key in the catalogue is used ---------------------
SOURCES = [p for d in ("assistant", "tools", "vision") for p in (ROOT / d).rglob("*.py")]
# Calls whose first argument is a catalogue key: msg("key", …), X.of("key", …).
# Where the key comes from a lookup table instead, the table's keys are checked below.
DYNAMIC_KEY_SITES = {
    "assistant/prompting/spec_card.py",  # _ROWS, _ASPECT
    "assistant/quality/report.py",  # _STOP
    "assistant/studio/panel.py",  # Field.label_key
    "tools/core/errors.py",  # EgakiError.of / ModelMissing.of pass their key on
    "tools/core/messages.py",  # Message.localized
    "tools/llm/structured.py",  # _STEP_NAMES
}


def _key_calls() -> list[tuple[str, int, ast.Call]]:
    found = []
    for path in SOURCES:
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            if (isinstance(func, ast.Name) and func.id == "msg") or (
                isinstance(func, ast.Attribute) and func.attr == "of"
            ):
                found.append((rel, node.lineno, node))
    return found


def test_every_key_named_in_the_code_exists_with_exactly_its_values() -> None:
    table = catalogue()
    problems = []
    calls = _key_calls()
    assert len(calls) > 150
    for rel, line, call in calls:
        first = call.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            if rel not in DYNAMIC_KEY_SITES:
                problems.append(f"{rel}:{line}: key is not a literal")
            continue
        key = first.value
        if key not in table:
            problems.append(f"{rel}:{line}: no message {key!r}")
            continue
        names = {k.arg for k in call.keywords}
        if None in names:
            continue  # **values: checked when rendered
        wanted = message_placeholders(key)
        func = call.func
        if isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "ModelMissing":
            names.discard("model")  # kept on the error; fills {model} when the text has one
            wanted.discard("model")
        if names != wanted:
            problems.append(f"{rel}:{line}: {key!r} wants {sorted(wanted)}, gets {sorted(names)}")
    assert not problems, "\n".join(problems)


def test_keys_in_lookup_tables_exist() -> None:
    from assistant.prompting import spec_card
    from assistant.quality import report
    from assistant.studio.panel import FIELDS
    from tools.llm import structured

    keys = [f.label_key for f in FIELDS]
    keys += [k for pair in spec_card._ROWS.values() for k in pair]
    keys += [*spec_card._ASPECT.values(), *report._STOP.values()]
    keys += list(structured._STEP_NAMES.values())
    assert not [k for k in keys if k not in catalogue()]


def test_every_catalogue_key_is_used() -> None:
    literals = {
        node.value
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    unused = sorted(set(catalogue()) - literals)
    assert not unused, f"messages no code uses: {unused}"


# Errors are made with .of("key", …): calling an error class with text is the old form.
ERRORS = {
    "EgakiError", "ConfigError", "OllamaUnavailable", "ModelMissing", "CapabilityMissing",
    "InvalidRequest", "GenerationCancelled", "EngineError", "ModelOutputError", "LedgerError",
    "IndexUnavailable",
}  # fmt: skip


def test_errors_are_made_from_catalogue_keys() -> None:
    inline = [
        f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in ERRORS and node.args
    ]
    assert not inline, inline
    with pytest.raises(TypeError, match=r"InvalidRequest.of\(key"):
        InvalidRequest("Size must be a multiple of 8.")  # type: ignore[arg-type]
