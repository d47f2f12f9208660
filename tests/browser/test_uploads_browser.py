"""Every attached file gets an answer from Egaki, in the person's language.

Chainlit's composer used to drop anything but PNG/JPEG/WebP before the app saw it (a
short English toast at best; an empty file failed with "Upload failed"). Each file here
goes through the composer's own file input (``#upload-button-input``) with the type
Chromium reports for it, and the chat must answer: pictures Egaki can open (GIF's first
frame, BMP, TIFF, AVIF) become a prompt card; the rest get a message saying what the file
is and what to send instead. Run and screenshots: see ``tests/browser/test_chat_browser.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import DESCRIPTION

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, chainlit_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-uploads"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root))
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def picture(fmt: str, frames: int = 1) -> bytes:
    shots = [Image.new("RGB", (96, 64), c) for c in ((200, 30, 30), (30, 200, 30))][:frames]
    buf = io.BytesIO()
    more = {"save_all": True, "append_images": shots[1:]} if frames > 1 else {}
    shots[0].save(buf, fmt, **more)
    return buf.getvalue()


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>\n'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64

# name, File.type as Chromium reports it, bytes, what the (Japanese) answer must contain
EXPLAINED = [
    ("drawing.svg", "image/svg+xml", SVG, "SVG の図"),
    ("report.pdf", "application/pdf", PDF, "PDF 文書"),
    ("empty.png", "image/png", b"", "空のファイル"),
    ("IMG_0001.HEIC", "", HEIC, "HEIC"),  # no type: unknown to a bare Debian's MIME table
]
OPENED = [
    ("wave.gif", "image/gif", lambda: picture("GIF", frames=2), "最初の 1 枚"),
    ("scan.tiff", "image/tiff", lambda: picture("TIFF"), None),
    ("paint.bmp", "image/bmp", lambda: picture("BMP"), None),
    ("phone.avif", "image/avif", lambda: picture("AVIF"), None),
]


@pytest.fixture
def ja_ready(app: AppProcess, new_context: Callable[..., Any]) -> ChatPage:
    chat = ChatPage(new_context(locale="ja-JP").new_page()).open(app.url)
    chat.bot_says("おまかせ")
    return chat


def attach(chat: ChatPage, name: str, mime: str, data: bytes) -> None:
    toasts = chat.page.locator("[data-sonner-toast]")
    before = toasts.count()
    chat.page.locator("#upload-button-input").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )
    chip = chat.page.locator("#message-composer")
    expect(chip.get_by_role("img", name=name).or_(chip.get_by_text(name))).to_be_visible()
    assert toasts.count() == before, toasts.all_inner_texts()  # no refusal in a corner
    chat.send("")  # attachment only, as people do


@pytest.mark.parametrize(("name", "mime", "data", "said"), EXPLAINED,
                         ids=[e[0] for e in EXPLAINED])
def test_files_it_cannot_open_are_explained_in_the_chat(
    ja_ready: ChatPage, name: str, mime: str, data: bytes, said: str
) -> None:
    attach(ja_ready, name, mime, data)
    answer = ja_ready.bot_says(said)
    expect(answer).to_contain_text(name)
    ja_ready.shot(f"upload-{name}", answer)


@pytest.mark.parametrize(("name", "mime", "make", "note"), OPENED, ids=[o[0] for o in OPENED])
def test_other_picture_formats_become_a_prompt_card(
    ja_ready: ChatPage, ollama: FakeOllama, name: str, mime: str,
    make: Callable[[], bytes], note: str | None,
) -> None:
    ollama.enqueue(Reply(data=DESCRIPTION))
    attach(ja_ready, name, mime, make())
    ja_ready.bot_says("tabby cat sleeping on a windowsill", timeout_ms=30_000)
    if note:
        ja_ready.bot_says(note)
    assert any(m.get("images") for m in ollama.last_chat()["messages"])  # the VLM saw it
