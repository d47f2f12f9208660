"""Picture in, picture out, in a real browser: attach a photo, get its prompt, paint a mask.

The photo goes through the composer's own file input (``#upload-button-input``), the
prompt card's buttons are clicked like a person clicks them, and the ``MaskPainter``
custom element (``public/elements/MaskPainter.jsx``) is painted on with the mouse. The
image engine is the fake one: these tests are about the page, not the pixels. Run and
screenshots (``vision-*.png``): see ``tests/browser/test_chat_browser.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from tests.browser.chat_page import TIMEOUT_MS, ChatPage
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import DESCRIPTION, PROPOSAL, REGION

pytestmark = [pytest.mark.slow, pytest.mark.browser]

GENERATE = "🎨 Generate from this prompt"
IMG2IMG = "🖼️ Use as img2img init"
INPAINT = "🖌️ Inpaint a region"


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, chainlit_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-vision-app"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root))
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def window_photo(folder: Path) -> Path:
    """A 384×256 'cat by a window' JPEG: shapes, so the screenshots show what was painted."""
    path = folder / "cat-window.jpg"
    im = Image.new("RGB", (384, 256), (214, 190, 150))
    draw = ImageDraw.Draw(im)
    draw.rectangle((220, 20, 370, 150), fill=(150, 200, 240), outline=(90, 60, 40), width=6)
    draw.ellipse((60, 140, 200, 230), fill=(200, 120, 40))  # the cat
    draw.ellipse((150, 110, 215, 170), fill=(200, 120, 40))
    draw.rectangle((290, 170, 330, 240), fill=(60, 140, 60))  # the plant to repaint
    im.save(path, "JPEG", quality=90)
    return path


class Console:
    """Browser console errors and uncaught page errors, to explain a failure."""

    def __init__(self, page: Page) -> None:
        self.lines: list[str] = []
        page.on("console", lambda m: m.type in ("error", "warning")
                and self.lines.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.lines.append(f"pageerror: {e}"))

    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith(("error", "pageerror"))]


@pytest.fixture
def en_chat(app: AppProcess, new_context: Callable[..., Any]) -> tuple[ChatPage, Console]:
    page = new_context(locale="en-US").new_page()
    console = Console(page)
    chat = ChatPage(page).open(app.url)
    chat.bot_says("say GO anytime")
    console.lines.clear()  # loading logs two 401s (Chainlit asks /user before logging in)
    return chat, console


def send_mask_and_inpaint(chat: ChatPage, use: Any, ollama: FakeOllama
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Click the painter's "use" button and wait for the inpaint: the mask is sent, the
    model describes the region and proposes the edit (REGION, PROPOSAL), and the
    before/after pair arrives. Returns those two chat requests."""
    images_before = chat.images.count()
    requests_before = len(ollama.chat_requests())
    ollama.enqueue(Reply(data=REGION), Reply(data=PROPOSAL))
    use.click()
    expect(chat.page.get_by_text("Mask sent ✓")).to_be_visible()
    chat.bot_says("the result is above", timeout_ms=30_000)
    chat.wait_images(images_before + 2)
    region, proposal = ollama.chat_requests()[requests_before:][:2]
    return region, proposal


def attach_and_send(chat: ChatPage, photo: Path, text: str) -> None:
    """Attach through the composer's hidden file input, wait for the upload, send."""
    chat.page.locator("#upload-button-input").set_input_files(str(photo))
    expect(chat.page.get_by_role("img", name=photo.name)).to_be_visible()  # its thumbnail
    chat.send(text)


def test_attached_photo_becomes_a_prompt_card_and_generates(
    en_chat: tuple[ChatPage, Console], ollama: FakeOllama, tmp_path: Path
) -> None:
    chat, console = en_chat
    ollama.enqueue(Reply(data=DESCRIPTION))
    attach_and_send(chat, window_photo(tmp_path), "describe this photo")
    card = chat.bot_says("tabby cat sleeping on a windowsill", timeout_ms=30_000)
    expect(card).to_contain_text("A cat naps by the window.")  # the summary...
    expect(card).to_contain_text("blurry")  # ...and the negative prompt
    for label in (GENERATE, IMG2IMG, INPAINT):
        expect(chat.button(label)).to_be_visible()
    sent = ollama.last_chat()
    assert any(m.get("images") for m in sent["messages"])  # the VLM saw the picture
    chat.shot("vision-01-prompt-card", chat.button(INPAINT))

    before = chat.images.count()  # the user's own attachment may be an inline image too
    chat.button(GENERATE).click()
    img = chat.wait_images(before + 1)
    assert chat.natural_size(img)[0] >= 512  # a native SD size, not the 384 px photo
    expect(chat.bot.filter(has_text="Seed").last).to_contain_text("tabby cat")
    chat.shot("vision-02-generated", img)
    assert console.errors() == [], "\n".join(console.lines)


def test_paint_a_mask_in_the_painter_and_get_before_after(
    en_chat: tuple[ChatPage, Console], ollama: FakeOllama, tmp_path: Path
) -> None:
    chat, console = en_chat
    ollama.enqueue(Reply(data=DESCRIPTION))
    attach_and_send(chat, window_photo(tmp_path), "describe this photo")
    chat.bot_says("tabby cat sleeping on a windowsill", timeout_ms=30_000)
    chat.button(INPAINT).click()

    chat.bot_says("Use this mask")  # the message text above the painter
    canvas = chat.page.locator("canvas").last
    expect(canvas).to_be_visible(timeout=TIMEOUT_MS)
    use = chat.button("Use this mask")
    expect(use).to_be_enabled()  # enabled once the background image has loaded
    size = canvas.evaluate("c => [c.width, c.height]")
    assert size == [384, 256], size  # painted at the upload's natural size
    chat.shot("vision-03-painter", use)

    use.click()  # nothing painted yet: the painter says so and sends nothing
    expect(chat.page.get_by_text("Paint over the area to change first.")).to_be_visible()

    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 100, box
    mouse = chat.page.mouse
    x0, y0 = box["x"] + box["width"] * 0.72, box["y"] + box["height"] * 0.62
    mouse.move(x0, y0)
    mouse.down()
    for i in range(1, 11):  # a short vertical stroke over the plant
        mouse.move(x0 + i, y0 + i * box["height"] * 0.03)
    mouse.up()
    painted = canvas.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert painted > 500, painted  # the stroke landed on the canvas
    chat.page.get_by_placeholder("What should appear there? (optional)").fill("a red mug")
    chat.shot("vision-04-painted", use)

    region, proposal = send_mask_and_inpaint(chat, use, ollama)
    expect(chat.bot.filter(has_text="I'll paint").last).to_contain_text("a red ceramic mug")

    assert any(m.get("images") for m in region["messages"])  # the crop under the mask
    assert "a red mug" in str(proposal["messages"])  # the painter's instruction went along
    chat.shot("vision-05-before-after", chat.images.last)
    assert console.errors() == [], "\n".join(console.lines)
