"""Chat messages that talk to the ledger, parsed into typed commands (pure logic).

``parse_ledger_command(text)`` returns one of :data:`LedgerCommand` or ``None`` when the
message is not a ledger command (then it goes to the chat model as usual)::

    "find images like a fox in snow"   → FindImages("a fox in snow")
    "画像を探して 夕焼け"                → FindImages("夕焼け")
    "reproduce #a1b2c3d4"              → Reproduce("a1b2c3d4")
    "#a1b2c3d4 をもう一度"               → Reproduce("a1b2c3d4")
    "again with new seed #a1b2c3d4"    → AgainNewSeed("a1b2c3d4")
    "rate #a1b2c3d4 5" / "#a1b2c3d4 ★★★" → Rate("a1b2c3d4", 5) / Rate(..., 3)
    "favourite #a1b2c3d4"              → Favourite("a1b2c3d4", on=True)
    "export #a1b2c3d4 json"            → Export(("a1b2c3d4",), "json")
    "show #a1b2c3d4"                   → Show("a1b2c3d4")

Ids are 8 hex digits, written ``#a1b2c3d4`` (the ``#`` may be left out when the id mixes
letters and digits, so words like "deadbeef" and 8-digit seeds are never taken for ids).
Values are not range-checked here: ``Rate(id, 7)`` is returned and the ledger's teaching
error explains the scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ExportFormat = Literal["a1111", "json"]


@dataclass(frozen=True)
class FindImages:
    query: str


@dataclass(frozen=True)
class Show:
    id: str


@dataclass(frozen=True)
class Reproduce:
    """Run the exact recorded request again (same seed: the same picture)."""

    id: str


@dataclass(frozen=True)
class AgainNewSeed:
    """Run the recorded request with a fresh seed (a sibling variation)."""

    id: str


@dataclass(frozen=True)
class Rate:
    id: str
    stars: int  # 1-5; 0 clears


@dataclass(frozen=True)
class Favourite:
    id: str
    on: bool = True


@dataclass(frozen=True)
class Export:
    ids: tuple[str, ...]
    fmt: ExportFormat = "a1111"


LedgerCommand = FindImages | Show | Reproduce | AgainNewSeed | Rate | Favourite | Export

_ID = re.compile(r"#([0-9a-fA-F]{8})(?![0-9a-zA-Z])|(?<![#\w])([0-9a-f]{8})(?![0-9a-zA-Z])")
_NOUN = r"(?:images?|pictures?|pics?|photos?|generations?|renders?|drawings?)"
_FIND_EN = [
    re.compile(
        rf"^(?:please\s+)?(?:find|search(?:\s+for)?|look\s+(?:for|up)|show\s+me)\s+"
        rf"(?:(?:my|the|some|all|old|older|earlier|previous|past)\s+)*{_NOUN}\s+"
        r"(?:(?:that\s+look\s+)?(?:like|of|with|similar\s+to|about|showing|matching)\s+)?"
        r"(?P<q>.+?)$",
        re.I,
    ),
    re.compile(r"^(?:search(?:\s+for)?|/find|/search)\s+(?P<q>.+?)$", re.I),
]
_SEARCH_JA = r"(?:探して|さがして|検索して|検索|見つけて|みつけて)(?:ください|下さい)?"
_IMAGE_JA = r"(?:画像|写真|絵|イラスト)"
_FIND_JA = [
    re.compile(rf"^{_IMAGE_JA}を?{_SEARCH_JA}[\s:：、,]*(?P<q>.+?)$"),
    re.compile(rf"^(?P<q>.+?)(?:の|っぽい|みたいな|のような|ような)?{_IMAGE_JA}を?{_SEARCH_JA}$"),
    re.compile(r"^(?:検索|探して)[\s:：]+(?P<q>.+?)$"),
]
_NEW_SEED = re.compile(
    r"new\s+seed|different\s+seed|another\s+seed|random\s+seed|fresh\s+seed|"
    r"(?:別|新しい|違う|ちがう|新)の?シード|シード(?:を)?(?:変えて|かえて|違い|ちがい|変更)|"
    r"another\s+(?:one|take|version|variation)|別(?:の)?バージョン",
    re.I,
)
_REPRODUCE = re.compile(
    r"\b(?:reproduce|regenerate|recreate|redo|remake|repeat|re-?run|again|rerender)\b|"
    r"もう一度|もう一回|もういちど|再現|再生成|作り直|つくり直|やり直",
    re.I,
)
_RATE = re.compile(
    r"\b(?:rate|rating|give)\b|\bstars?\b|\d\s*/\s*5|評価|星|ほし|[★☆]", re.I
)
_FAV_OFF = re.compile(
    r"\bun-?(?:favou?rite|fav|star|like|bookmark)\b|remove\s.*from\s+favou?rites|"
    r"お気に入り(?:から)?(?:外して|はずして|解除|削除|消して)", re.I
)
_FAV_ON = re.compile(
    r"\b(?:favou?rite|fav|star|bookmark|heart|love)\b|お気に入り|♥|❤", re.I
)
_EXPORT = re.compile(
    r"\b(?:export|infotext|parameters|params)\b|エクスポート|書き出|パラメータ|設定を(?:見せて|出して)",
    re.I,
)
_SHOW = re.compile(r"^(?:show|open|details?|info)\b|見せて|表示|詳細", re.I)
_DIGIT_STARS = re.compile(r"(?<![0-9A-Za-z])(\d{1,2})(?![0-9A-Za-z])")


def find_ids(text: str) -> list[str]:
    """Record ids mentioned in ``text`` (lowercase, in order, without repeats)."""
    out: list[str] = []
    for m in _ID.finditer(text):
        raw = m.group(1) or m.group(2)
        if m.group(1) is None and (raw.isdigit() or not any(c.isdigit() for c in raw)):
            continue  # bare "deadbeef" is a word and "12345678" a seed: ids need their '#'
        if raw.lower() not in out:
            out.append(raw.lower())
    return out


def _strip_ids(text: str) -> str:
    return _ID.sub(" ", text)


def _stars(text: str) -> int | None:
    filled = text.count("★")
    if filled:
        return filled
    m = _DIGIT_STARS.search(_strip_ids(text))
    return int(m.group(1)) if m else None


def _query(raw: str) -> str:
    return raw.strip().strip("「」『』\"'“”。.!！?？ ").strip()


def _find(text: str) -> FindImages | None:
    for pattern in (*_FIND_EN, *_FIND_JA):
        m = pattern.match(text)
        if m and (q := _query(m.group("q"))):
            return FindImages(q)
    return None


def parse_ledger_command(text: str) -> LedgerCommand | None:
    """The ledger command in a chat message, or ``None`` if it isn't one."""
    text = " ".join(text.split())
    if not text:
        return None
    ids = find_ids(text)
    if not ids:
        return _find(text)
    rest = _strip_ids(text)
    first = ids[0]
    if _EXPORT.search(rest):
        fmt: ExportFormat = "json" if re.search(r"json", rest, re.I) else "a1111"
        return Export(tuple(ids), fmt)
    if _FAV_OFF.search(rest):
        return Favourite(first, on=False)
    if _RATE.search(rest) and (stars := _stars(text)) is not None:
        return Rate(first, stars)
    if _FAV_ON.search(rest):
        return Favourite(first, on=True)
    if _NEW_SEED.search(rest):
        return AgainNewSeed(first)
    if _REPRODUCE.search(rest):
        return Reproduce(first)
    if _SHOW.search(rest.strip()) or not rest.strip(" #、。.!?"):
        return Show(first)
    return None


def format_id(record_id: str) -> str:
    """How an id is shown in the chat: ``#a1b2c3d4``."""
    return f"#{record_id.lstrip('#').lower()}"
