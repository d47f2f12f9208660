"""User-facing strings in English and Japanese, and language detection.

The chat answers in the language the user writes in; before the first message it
follows the browser. Strings with ``{placeholders}`` fail loudly when one is missing.
"""

from __future__ import annotations

import re

_JA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")

MESSAGES: dict[str, dict[str, str]] = {
    "ollama_down": {
        "en": (
            "Can't reach Ollama at {host}. Start it with `ollama serve` (or open the "
            "Ollama app), then send your message again — nothing you typed is lost."
        ),
        "ja": (
            "Ollama（{host}）に接続できません。`ollama serve` で起動するか Ollama アプリを"
            "開いてから、もう一度送信してください。入力した内容は失われていません。"
        ),
    },
    "model_missing": {
        "en": "The model `{model}` is not installed in Ollama. Download it now?",
        "ja": "モデル `{model}` が Ollama にありません。今ダウンロードしますか？",
    },
    "model_missing_hint": {
        "en": "Run `ollama pull {model}` in a terminal, or choose another model in settings.",
        "ja": "ターミナルで `ollama pull {model}` を実行するか、設定で別のモデルを選んでください。",
    },
    "pull_button": {"en": "Download {model}", "ja": "{model} をダウンロード"},
    "cancel_button": {"en": "Not now", "ja": "今はしない"},
    "pulling": {"en": "Downloading `{model}`…", "ja": "`{model}` をダウンロード中…"},
    "pull_done": {"en": "`{model}` is ready.", "ja": "`{model}` の準備ができました。"},
    "pull_failed": {
        "en": "Downloading `{model}` failed: {error}. Check the name on ollama.com/library.",
        "ja": "`{model}` のダウンロードに失敗しました: {error}。モデル名を確認してください。",
    },
    "no_tools": {
        "en": (
            "`{model}` can't call tools, so I can chat but not generate images by myself. "
            "A model such as `qwen3-vl:8b` can."
        ),
        "ja": (
            "`{model}` はツール呼び出しに対応していないため、会話はできますが自動で画像生成は"
            "できません。`qwen3-vl:8b` などのモデルをお使いください。"
        ),
    },
    "no_vision": {
        "en": "`{model}` can't see images. Pull a vision model, e.g. `ollama pull qwen3-vl:8b`.",
        "ja": "`{model}` は画像を扱えません。`ollama pull qwen3-vl:8b` などで視覚モデルを入れてください。",
    },
    "welcome": {
        "en": (
            "Hi! Tell me what picture you want — in any words. I'll ask a few short "
            "questions; say **GO** anytime and I'll fill in the rest."
        ),
        "ja": (
            "こんにちは！描きたい絵を自由に教えてください。いくつか短く質問します。"
            "いつでも「おまかせ」か **GO** で残りはこちらで決めます。"
        ),
    },
    "empty_message": {
        "en": "Your message was empty — tell me what you'd like to see.",
        "ja": "メッセージが空です。どんな絵にしたいか教えてください。",
    },
    "too_long": {
        "en": "That message is {size} characters; please keep it under {limit}.",
        "ja": "メッセージが長すぎます（{size} 文字）。{limit} 文字以内にしてください。",
    },
    "stream_broken": {
        "en": "The model stopped answering mid-reply ({error}). Send your message again.",
        "ja": "モデルの応答が途中で止まりました（{error}）。もう一度送信してください。",
    },
    "act_more": {"en": "🔁 {n} more (new seeds)", "ja": "🔁 別シードで{n}枚"},
    "act_quick": {"en": "⚡ {n} quick previews", "ja": "⚡ 高速プレビュー{n}枚"},
    "act_full": {"en": "✨ Full quality #{n}", "ja": "✨ #{n} を本番画質で"},
    "act_variations": {"en": "🎲 Variations", "ja": "🎲 バリエーション"},
    "act_tweak": {"en": "✏️ Same seed, tweak prompt", "ja": "✏️ 同じシードで修正"},
    "act_upscale": {"en": "🔍 Upscale ×2", "ja": "🔍 2倍に拡大"},
    "act_new": {"en": "🆕 New picture", "ja": "🆕 新しい絵"},
    "act_pick": {"en": "Draw #{n}", "ja": "#{n} を描く"},
    "after_images": {
        "en": "What next? Pick a button, or just tell me what to change.",
        "ja": "次はどうしますか？ボタンを選ぶか、変えたいところを教えてください。",
    },
    "tweak_prompt": {
        "en": "What should change? I'll keep seed {seed} so the composition stays.",
        "ja": "どこを変えますか？構図が変わらないようにシード {seed} のまま描き直します。",
    },
    "variations_intro": {
        "en": "Here are {n} variations, each changing one thing. Pick one to draw:",
        "ja": "{n} 通りのバリエーションです（それぞれ1か所だけ変えています）。描くものを選んでください:",
    },
    "new_picture": {
        "en": "Sure — what shall we draw next?",
        "ja": "はい、次は何を描きましょうか？",
    },
    "nothing_yet": {
        "en": "There's no picture yet — tell me what you'd like first.",
        "ja": "まだ絵がありません。まず描きたいものを教えてください。",
    },
    "cancelled": {
        "en": "Stopped. Nothing was lost — send a message or press a button to go on.",
        "ja": "停止しました。内容は残っています。続けるにはメッセージかボタンをどうぞ。",
    },
    "too_big_upscale": {
        "en": "This image is already as large as I can make it ({width}×{height}).",
        "ja": "この画像はすでに最大サイズです（{width}×{height}）。",
    },
    "queue_position": {
        "en": "⏳ Waiting in line: {ahead} job(s) ahead of yours.",
        "ja": "⏳ 順番待ち: あと {ahead} 件",
    },
    "loading_model": {
        "en": "⏳ Loading the image model `{name}` (first time takes a while)…",
        "ja": "⏳ 画像モデル `{name}` を読み込み中（初回は時間がかかります）…",
    },
    "optimising_model": {
        "en": "⚙️ Optimising `{name}` for this CPU with OpenVINO — once per model, a few "
        "minutes; later pictures are about twice as fast…",
        "ja": "⚙️ `{name}` をこの CPU 向けに OpenVINO で最適化中（モデルごとに初回のみ・数分）。"
        "以降の生成は約 2 倍速くなります…",
    },
    "downloading_model": {
        "en": "⬇️ Downloading the image model: `{bar}` {percent} ({done} / {total})",
        "ja": "⬇️ 画像モデルをダウンロード中: `{bar}` {percent}（{done} / {total}）",
    },
    "drawing": {"en": "🎨 Drawing `{bar}` {step}/{total}", "ja": "🎨 描画中 `{bar}` {step}/{total}"},
    "internal_error": {
        "en": "Something went wrong on my side ({error}). Your chat is still here; try again.",
        "ja": "内部でエラーが発生しました（{error}）。チャットはそのままです。もう一度お試しください。",
    },
}


def detect_language(text: str, fallback: str = "en") -> str:
    """'ja' when the text contains Japanese script, else ``fallback`` (two-letter code)."""
    if _JA.search(text or ""):
        return "ja"
    return "ja" if fallback.lower().startswith("ja") else "en"


def t(key: str, lang: str = "en", **values: object) -> str:
    """The message ``key`` in ``lang`` with ``values`` filled in (KeyError if one is missing)."""
    table = MESSAGES[key]
    text = table["ja"] if lang.startswith("ja") else table["en"]
    return text.format(**values)
