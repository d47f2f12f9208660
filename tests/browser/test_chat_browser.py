"""The app as a person meets it: the real ``egaki run`` in headless Chromium.

Run them (Debian's ``chromium`` package + ``pip install -e .[dev]``; no ``playwright
install``)::

    .venv/bin/python -m pytest tests/browser -q -ra
    .venv/bin/python -m pytest -m browser        # the same, selected by marker

Screenshots of every stage land in ``artifacts/screenshots/*.png`` (git-ignored); look at
them after a change to the UI. One app process (fake image engine, fake Ollama) serves the
whole module; every test opens fresh tabs, so each one is a new chat session. How the
browser is found or installed: see ``tests/browser/conftest.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.support.app_process import ROOT, AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import INTERVIEW_JA, SPEC

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CAPTION_JA = re.compile(r"シード \d+ ·")  # the caption under an image, in a Japanese chat

VARIANTS = {
    "variants": [
        {"axis": "time_of_day", "value": "golden hour sunset", "label": "夕暮れ"},
        {"axis": "weather", "value": "light rain, wet sand", "label": "小雨"},
        {"axis": "framing", "value": "low angle wide shot", "label": "ローアングル"},
        {"axis": "color_palette", "value": "pastel colors", "label": "パステル"},
    ]
}


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, chainlit_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-app"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root))
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def test_japanese_request_to_image_then_variation_pick(
    ja_chat: ChatPage, ollama: FakeOllama
) -> None:
    chat = ja_chat
    chat.shot("ja-01-welcome")
    ollama.enqueue(Reply(data=INTERVIEW_JA))
    chat.send("ビーチバレーの写真を作りたい")
    chat.shot("ja-02-question", chat.bot_says("時間帯や光はどうしますか？"))

    ollama.enqueue(Reply(data=SPEC))
    chat.send("GO")
    card = chat.bot_says("extra people", timeout_ms=30_000)  # the negative prompt...
    # ...+ prompt, the count weighted the A1111 way
    expect(card).to_contain_text("(two women:1.2) playing beach volleyball, sunny beach")
    chat.shot("ja-03-prompt-card", card, whole=True)

    img = chat.wait_images(1)
    assert chat.natural_size(img) == (512, 512)
    assert (img.get_attribute("alt") or "").startswith("seed-")
    expect(chat.bot_says(CAPTION_JA)).to_contain_text("512×512")  # the caption is Japanese too
    chat.bot_says("次はどうしますか")
    for label in ("🎲 バリエーション", "✏️ 同じシードで修正", "🆕 新しい絵"):
        expect(chat.button(label)).to_be_visible()
    chat.shot("ja-04-image-and-buttons", chat.button("🆕 新しい絵"))

    ollama.enqueue(Reply(data=VARIANTS))
    chat.button("🎲 バリエーション").click()
    picks = [chat.button(f"#{n} を描く") for n in range(1, 5)]
    for pick in picks:
        expect(pick).to_be_visible()
    chat.shot("ja-05-variations", picks[-1])

    picks[1].click()
    img2 = chat.wait_images(2)
    assert img2.get_attribute("src") != img.get_attribute("src")
    expect(chat.bot.filter(has_text=CAPTION_JA).last).to_contain_text("light rain, wet sand")
    chat.shot("ja-06-picked-variation", img2)


@pytest.mark.parametrize(("locale", "readme"), [("ja-JP", "chainlit_ja-JP.md"),
                                                ("ja", "chainlit_ja.md")])
def test_chainlit_chrome_and_readme_are_japanese(
    app: AppProcess, new_context: Callable[..., Any], locale: str, readme: str
) -> None:
    strings = json.loads((ROOT / ".chainlit/translations/ja.json").read_text(encoding="utf-8"))
    page = new_context(locale=locale).new_page()
    with page.expect_response(re.compile(r"/project/settings\?")) as settings:
        chat = ChatPage(page).open(app.url)
    assert f"language={locale}" in settings.value.url
    served = settings.value.json()["markdown"]
    assert served == (ROOT / readme).read_text(encoding="utf-8")  # Chainlit: chainlit_{lang}.md

    placeholder = strings["chat"]["input"]["placeholder"]
    expect(chat.composer).to_have_attribute("placeholder", placeholder)
    readme_button = page.locator("#readme-button")
    expect(readme_button).to_have_text(strings["navigation"]["header"]["readme"])
    readme_button.click()
    expect(page.get_by_role("dialog")).to_contain_text("あなたのパソコンの中だけで動く")
    chat.shot(f"chrome-readme-{locale}")


def test_empty_and_100kb_messages_leave_the_chat_usable(
    ja_chat: ChatPage, ollama: FakeOllama
) -> None:
    chat = ja_chat
    for blank in ("", "   \n  "):  # Chainlit refuses to send these at all
        chat.composer.fill(blank)
        expect(chat.send_button).to_be_disabled()
        chat.composer.press("Enter")
    chat.page.wait_for_timeout(500)  # give a wrongly sent message time to show up
    expect(chat.user).to_have_count(0)
    expect(chat.bot).to_have_count(1)  # still just the welcome

    chat.send("あ" * 100_000)
    expect(chat.bot_says("以内")).to_contain_text("100000")
    chat.shot("long-message-answer", chat.bot.last)

    ollama.enqueue(Reply(data=INTERVIEW_JA))
    chat.send("ビーチバレーの写真を作りたい")
    chat.bot_says("時間帯や光はどうしますか？")


def test_settings_panel_steps_show_in_the_next_caption(
    ja_chat: ChatPage, ollama: FakeOllama
) -> None:
    chat = ja_chat
    chat.choose_settings(steps="8", shot="settings-panel-steps-8")

    ollama.enqueue(Reply(data=SPEC))  # SPEC asks for 20 steps; the panel wins
    chat.send("GO")
    img = chat.wait_images(1)
    expect(chat.bot.filter(has_text=CAPTION_JA).last).to_contain_text("8 ステップ")
    chat.shot("settings-caption-8-steps", img)


def test_page_requests_stay_on_this_machine(
    app: AppProcess, new_context: Callable[..., Any]
) -> None:
    context = new_context(locale="ja-JP")
    html = context.request.get(app.url).text()
    ChatPage(context.new_page()).open(app.url).bot_says("おまかせ")
    linked = re.findall(r'<link[^>]+href="(https?://[^"]+)"', html)
    assert (context.offsite, linked) == ([], [])
