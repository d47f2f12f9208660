"""The prompt spec as a readable Markdown card for the chat, in English or Japanese.

Plain Markdown only (no HTML: Chainlit escapes it by default). The prompt and the long
negative prompt sit in code blocks so they are easy to copy, each with its token count
per 75-token chunk when a tokenizer is at hand (A1111's counter: every chunk is read, so
the card says so rather than hiding what CLIP would once have cut); settings are a table
with a one-line reason each; the user's own words close the card.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tools.core.messages import msg

if TYPE_CHECKING:
    from assistant.prompting.spec import PromptSpec, SpecSettings
    from tools.engines.diffusers.prompts.a1111 import TokenCount

_LABELS: dict[str, dict[str, str]] = {
    "prompt": {"en": "🎨 Prompt", "ja": "🎨 プロンプト"},
    "negative": {
        "en": "🚫 Negative prompt (common-defect preset included)",
        "ja": "🚫 ネガティブプロンプト（崩れ対策の定番入り）",
    },
    "settings": {"en": "Setting", "ja": "設定"},
    "value": {"en": "Value", "ja": "値"},
    "why": {"en": "Why", "ja": "理由"},
    "size": {"en": "Size", "ja": "サイズ"},
    "steps": {"en": "Steps", "ja": "ステップ数"},
    "cfg_scale": {"en": "CFG scale", "ja": "CFG スケール"},
    "sampler": {"en": "Sampler", "ja": "サンプラー"},
    "seed": {"en": "Seed", "ja": "シード"},
    "random": {"en": "random", "ja": "ランダム"},
    "words": {"en": "💬 Your words", "ja": "💬 あなたの言葉"},
    "variation": {"en": "🎲 Variation", "ja": "🎲 バリエーション"},
}
_ASPECT = {
    "square": {"en": "Square", "ja": "正方形の"},
    "portrait": {"en": "Portrait", "ja": "縦長の"},
    "landscape": {"en": "Landscape", "ja": "横長の"},
}
_FAMILY = {"sd15": "SD 1.5", "sdxl": "SDXL"}
_REASONS: dict[str, dict[str, str]] = {
    "size": {
        "en": "{aspect} size that {family} models are trained for",
        "ja": "{family} が得意な{aspect}サイズ",
    },
    "steps": {
        "en": "Enough steps for detail without a long wait",
        "ja": "細部が出て、待ち時間も長すぎない回数",
    },
    "cfg_scale": {
        "en": "Follows the prompt closely but still looks natural",
        "ja": "プロンプトに忠実で、不自然になりにくい値",
    },
    "sampler": {
        "en": "Fast, clean all-round sampler",
        "ja": "速くて安定した定番のサンプラー",
    },
    "seed": {"en": "Random, so every run differs", "ja": "ランダム（毎回違う絵になります）"},
    "seed_fixed": {
        "en": "Fixed, so this image can be made again",
        "ja": "固定（同じ絵をもう一度作れます）",
    },
}


def _lang(lang: str) -> str:
    return "ja" if lang.startswith("ja") else "en"


def label(key: str, lang: str) -> str:
    """A localized card label."""
    return _LABELS[key][_lang(lang)]


def setting_reason(key: str, settings: SpecSettings, family: str, lang: str) -> str:
    """The app's own one-line reason for a setting (used when the model gave none)."""
    from assistant.prompting.spec import aspect_of  # local: prompt_spec imports this module

    code = _lang(lang)
    if key == "seed" and settings.seed is not None:
        key = "seed_fixed"
    aspect = _ASPECT[aspect_of(settings.width, settings.height)][code]
    return _REASONS[key][code].format(aspect=aspect, family=_FAMILY.get(family, family))


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _block(text: str) -> str:
    return "```text\n" + text.replace("```", "'''") + "\n```"


def token_note(count: TokenCount | None, lang: str) -> str:
    """`` · 80/150 tokens in 2 chunks of 75 (75 + 5), each read in full``; "" unknown."""
    if count is None:
        return ""
    if len(count.per_chunk) <= 1:
        return " · " + msg("card_tokens_one", lang, count=count.total)
    per_chunk = " + ".join(str(n) for n in count.per_chunk)
    return " · " + msg("card_tokens_chunks", lang, count=count.total, limit=count.limit,
                       chunks=len(count.per_chunk), per_chunk=per_chunk)


def render_card(spec: PromptSpec, lang: str,
                tokens: tuple[TokenCount | None, TokenCount | None] = (None, None)) -> str:
    """Markdown for the chat: prompt, negative, settings with reasons, the user's words.

    ``tokens``: the prompt's and the negative's counts (None: no tokenizer, no count).
    """
    code = _lang(lang)
    s = spec.settings
    seed = s.seed if s.seed is not None else label("random", code)
    rows = [
        ("size", f"{s.width} × {s.height}"),
        ("steps", s.steps),
        ("cfg_scale", f"{s.cfg_scale:g}"),
        ("sampler", s.sampler),
        ("seed", seed),
    ]
    lines: list[str] = []
    if spec.axis:
        lines += [f"**{label('variation', code)}:** {spec.label or spec.axis} (`{spec.axis}`)", ""]
    family = _FAMILY.get(spec.family, spec.family)
    lines += [f"**{label('prompt', code)}** · {family}{token_note(tokens[0], code)}"]
    lines += [_block(spec.positive), "",
              f"**{label('negative', code)}**{token_note(tokens[1], code)}", _block(spec.negative)]
    lines += [
        "",
        f"| {label('settings', code)} | {label('value', code)} | {label('why', code)} |",
        "|---|---|---|",
    ]
    for key, value in rows:
        reason = spec.reasons.get(key) or setting_reason(key, s, spec.family, code)
        lines.append(f"| {label(key, code)} | {_cell(value)} | {_cell(reason)} |")
    words = [w.strip() for w in spec.user_words if w.strip()]
    if words:
        lines += ["", f"**{label('words', code)}**"]
        lines += ["> - " + w.replace("\n", " ") for w in words]
    return "\n".join(lines)
