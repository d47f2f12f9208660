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

# Each settings row: the catalogue key of its name and of the app's own reason.
_ROWS = {
    "size": ("card_size", "reason_size"),
    "steps": ("setting_steps", "reason_steps"),
    "cfg_scale": ("setting_cfg_scale", "reason_cfg_scale"),
    "sampler": ("setting_sampler", "reason_sampler"),
    "seed": ("card_seed", "reason_seed_random"),
}
_ASPECT = {
    "square": "aspect_square", "portrait": "aspect_portrait", "landscape": "aspect_landscape",
}
_FAMILY = {"sd15": "SD 1.5", "sdxl": "SDXL"}


def setting_reason(key: str, settings: SpecSettings, family: str, lang: str) -> str:
    """The app's own one-line reason for a setting (used when the model gave none)."""
    from assistant.prompting.spec import aspect_of  # local: prompt_spec imports this module

    if key == "seed" and settings.seed is not None:
        return msg("reason_seed_fixed", lang)
    if key == "size":
        aspect = msg(_ASPECT[aspect_of(settings.width, settings.height)], lang)
        return msg("reason_size", lang, aspect=aspect, family=_FAMILY.get(family, family))
    return msg(_ROWS[key][1], lang)


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
    s = spec.settings
    seed = s.seed if s.seed is not None else msg("card_random_seed", lang)
    rows = [
        ("size", f"{s.width} × {s.height}"),
        ("steps", s.steps),
        ("cfg_scale", f"{s.cfg_scale:g}"),
        ("sampler", s.sampler),
        ("seed", seed),
    ]
    lines: list[str] = []
    if spec.axis:
        variation = msg("card_variation", lang)
        lines += [f"**{variation}:** {spec.label or spec.axis} (`{spec.axis}`)", ""]
    family = _FAMILY.get(spec.family, spec.family)
    lines += [f"**{msg('prompt_label', lang)}** · {family}{token_note(tokens[0], lang)}"]
    lines += [_block(spec.positive), "",
              f"**{msg('card_negative', lang)}**{token_note(tokens[1], lang)}",
              _block(spec.negative)]
    head = [msg(key, lang) for key in ("card_setting", "card_value", "card_why")]
    lines += ["", "| " + " | ".join(head) + " |", "|---|---|---|"]
    for key, value in rows:
        reason = spec.reasons.get(key) or setting_reason(key, s, spec.family, lang)
        lines.append(f"| {msg(_ROWS[key][0], lang)} | {_cell(value)} | {_cell(reason)} |")
    words = [w.strip() for w in spec.user_words if w.strip()]
    if words:
        lines += ["", f"**{msg('card_user_words', lang)}**"]
        lines += ["> - " + w.replace("\n", " ") for w in words]
    return "\n".join(lines)
