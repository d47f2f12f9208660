"""English and Japanese strings of the vision features (uploads, masks, captions, flow).

Kept beside the vision code rather than in :mod:`assistant.i18n` so this layer stays
self-contained; the lookup rules are the same: a missing ``{placeholder}`` fails loudly.
"""

# ruff: noqa: E501  (Japanese strings read better unbroken)
from __future__ import annotations

from typing import TypeVar

from assistant.errors import EgakiError

E = TypeVar("E", bound=EgakiError)

MESSAGES: dict[str, dict[str, str]] = {
    # --- uploads ------------------------------------------------------------------------
    "upload_empty": {
        "en": "{name} is empty. Please attach a PNG, JPEG or WebP image.",
        "ja": "{name} は空のファイルです。PNG・JPEG・WebP の画像を添付してください。",
    },
    "upload_too_big": {
        "en": "{name} is {size_mb:.1f} MB; the limit is {limit_mb} MB. Please send a smaller image.",
        "ja": "{name} は {size_mb:.1f} MB あります（上限 {limit_mb} MB）。小さい画像を送ってください。",
    },
    "upload_not_image": {
        "en": "{name} is not a PNG, JPEG or WebP image{found}. Only those formats can be used.",
        "ja": "{name} は PNG・JPEG・WebP の画像ではありません{found}。この3形式だけ使えます。",
    },
    "upload_too_many_pixels": {
        "en": (
            "{name} is {width}×{height} ({mp:.0f} megapixels); the limit is {limit_mp} "
            "megapixels. Please resize it first."
        ),
        "ja": (
            "{name} は {width}×{height}（{mp:.0f} メガピクセル）で、上限 {limit_mp} "
            "メガピクセルを超えています。縮小してから送ってください。"
        ),
    },
    "upload_corrupt": {
        "en": "{name} can't be read as an image ({error}). It may be damaged or cut short.",
        "ja": "{name} を画像として読めません（{error}）。壊れているか途中で切れている可能性があります。",
    },
    "upload_downscaled": {
        "en": "Your image was {width}×{height}; I work with a copy scaled to {new_width}×{new_height}.",
        "ja": "画像は {width}×{height} でした。{new_width}×{new_height} に縮小したコピーで作業します。",
    },
    "upload_unknown": {
        "en": "I no longer have that image ({image_id}). Please upload it again.",
        "ja": "その画像（{image_id}）はもうありません。もう一度アップロードしてください。",
    },
    # --- masks --------------------------------------------------------------------------
    "mask_malformed": {
        "en": "The painted mask didn't arrive in a form I can read ({detail}). Please paint it again.",
        "ja": "描いたマスクを読み取れませんでした（{detail}）。もう一度塗ってください。",
    },
    "mask_wrong_type": {
        "en": "The mask must be a PNG image, not {mime}.",
        "ja": "マスクは PNG 画像である必要があります（受け取ったのは {mime}）。",
    },
    "mask_too_big": {
        "en": "The mask is {size_kb:,} KB; the limit is {limit_kb:,} KB.",
        "ja": "マスクが大きすぎます（{size_kb:,} KB、上限 {limit_kb:,} KB）。",
    },
    "mask_aspect": {
        "en": (
            "The mask is {mask_w}×{mask_h} but the image is {image_w}×{image_h}: their "
            "shapes differ by {diff:.0%}. Paint the mask on this image (or one of the same shape)."
        ),
        "ja": (
            "マスク（{mask_w}×{mask_h}）と画像（{image_w}×{image_h}）の縦横比が {diff:.0%} "
            "違います。この画像（または同じ縦横比の画像）の上で塗ってください。"
        ),
    },
    "mask_empty": {
        "en": "The mask is empty — paint over the area you want to change, then send it again.",
        "ja": "マスクが空です。変えたい部分を塗ってから、もう一度送ってください。",
    },
    "mask_full": {
        "en": (
            "The mask covers almost the whole picture, so this repaints everything "
            "(like image-to-image)."
        ),
        "ja": "マスクがほぼ全体を覆っているため、絵全体を描き直します（img2img に近い動作です）。",
    },
    "mask_box": {
        "en": "The box {box!r} can't be used: {detail}. Write it as x,y,w,h in pixels or fractions.",
        "ja": "範囲 {box!r} は使えません（{detail}）。x,y,w,h をピクセルか割合で書いてください。",
    },
    # --- captions -----------------------------------------------------------------------
    "no_vision": {
        "en": (
            "`{model}` can't see images, so I can't describe this one. Pull a vision model "
            "with `ollama pull {suggested}` and choose it as the vision model in settings."
        ),
        "ja": (
            "`{model}` は画像を扱えないため、この画像を説明できません。"
            "`ollama pull {suggested}` で視覚モデルを入れ、設定で視覚モデルに選んでください。"
        ),
    },
    # --- flow ---------------------------------------------------------------------------
    "pnginfo_intro": {
        "en": "This image carries generation settings from **{source}** (shown as data):",
        "ja": "この画像には **{source}** の生成設定が入っています（データとして表示）:",
    },
    "pnginfo_unusable": {
        "en": "These settings can't be reused as they are: {error}",
        "ja": "この設定はそのままでは使えません: {error}",
    },
    "act_reuse": {"en": "♻️ Reuse these settings exactly", "ja": "♻️ この設定でそのまま生成"},
    "act_describe": {"en": "👁️ Describe with the vision model", "ja": "👁️ 視覚モデルで説明"},
    "act_generate": {"en": "🎨 Generate from this prompt", "ja": "🎨 このプロンプトで生成"},
    "act_img2img": {"en": "🖼️ Use as img2img init", "ja": "🖼️ img2img の元画像に使う"},
    "act_inpaint": {"en": "🖌️ Inpaint a region", "ja": "🖌️ 一部を描き直す"},
    "describe_intro": {"en": "Here's what I see:", "ja": "画像の内容はこうです:"},
    "prompt_label": {"en": "🎨 Prompt", "ja": "🎨 プロンプト"},
    "negative_label": {"en": "🚫 Negative prompt", "ja": "🚫 ネガティブプロンプト"},
    "settings_label": {"en": "⚙️ Settings", "ja": "⚙️ 設定"},
    "paint_mask": {
        "en": (
            "Paint over the part to change (brush/eraser), optionally say what should "
            "appear there, then press **Use this mask**. Or upload a black-and-white mask "
            "(white = change), or type a box as `x,y,w,h` (pixels or fractions) followed by "
            "what should appear there."
        ),
        "ja": "変えたい部分を塗り（ブラシ/消しゴム）、必要なら何を描くか書いて「このマスクを使う」を押してください。"
              "白黒のマスク画像（白＝変える部分）をアップロードするか、`x,y,w,h`（ピクセルまたは割合）の後に描く内容を書いても指定できます。",
    },
    "inpaint_plan": {
        "en": "In the painted area I see: *{region}*. I'll paint: `{prompt}`",
        "ja": "塗った部分には「{region}」が見えます。次の内容で描き直します: `{prompt}`",
    },
    "before_after": {
        "en": "Before (the result is above; only the painted area changed):",
        "ja": "変更前です（結果は上の画像。塗った部分だけが変わります）:",
    },
    "after_images": {
        "en": "Here it is. Inpaint another region, or tell me what to change.",
        "ja": "できました。別の部分を描き直すか、変えたいところを教えてください。",
    },
}


def vt(key: str, lang: str = "en", **values: object) -> str:
    """The vision message ``key`` in ``lang`` with ``values`` filled in."""
    table = MESSAGES[key]
    return (table["ja"] if lang.startswith("ja") else table["en"]).format(**values)


def error(cls: type[E], key: str, **values: object) -> E:
    """An :class:`EgakiError` subclass carrying message ``key`` in English and Japanese."""
    return cls(vt(key, "en", **values), vt(key, "ja", **values))
