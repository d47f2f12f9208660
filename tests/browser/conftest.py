"""Fixtures for the real-browser tests: one headless Chromium, fresh contexts per test.

The browser is the system's Chromium (Debian's ``chromium`` package), driven by the
``playwright`` Python package; ``playwright install`` is never needed (it downloads from
hosts outside the package registries). Where it is looked for: ``$EGAKI_CHROMIUM``, then
``/usr/bin/chromium``, then ``chromium`` / ``chromium-browser`` on ``PATH``.

When it is missing the tests are skipped LOUDLY (skip reason + a terminal-summary
section), unless installing is allowed: running as root, ``apt-get`` present, and ``CI`` or
``EGAKI_INSTALL_BROWSER=1`` set; then ``apt-get install -y chromium fonts-ipafont-gothic
fonts-noto-color-emoji`` runs once (the fonts make Japanese and the emoji buttons readable
in the screenshots; the tests pass without them).

Each test module defines its own ``app`` fixture (an :class:`AppProcess` on the module's
``ollama_server``); a private Chainlit root and a ready Japanese tab (``ja_chat``) are shared
here, and the fake Ollama is reset before every test.
Every page runs in a new context whose requests are routed: loopback goes through,
anything else is aborted and recorded in ``context.offsite`` (the app is offline-first;
see test_page_requests_stay_on_this_machine).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.support.app_process import ROOT, AppProcess
from tests.support.fake_ollama import FakeOllama

if TYPE_CHECKING:
    from tests.browser.chat_page import ChatPage

INSTALL_HINT = (
    "Browser tests need Chromium and the playwright package: "
    "`sudo apt-get install -y chromium fonts-ipafont-gothic fonts-noto-color-emoji` "
    "(Debian/Ubuntu) and "
    "`pip install -e .[dev]`; or point EGAKI_CHROMIUM at a Chromium binary; or set "
    "EGAKI_INSTALL_BROWSER=1 when running as root to let the tests apt-get it."
)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium phones home (component updates, variations, sync).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
APT_PACKAGES = ["chromium", "fonts-ipafont-gothic", "fonts-noto-color-emoji"]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_skipped_because: list[str] = []

try:
    from playwright.sync_api import expect
    # Assertions wait as long as actions do: two test workers and an app process share the
    # CPU, and a page that shows 6 s late is slow, not broken.
    expect.set_options(timeout=20_000)
except ImportError:  # the test modules import it: don't even collect them
    collect_ignore_glob = ["test_*.py"]
    _skipped_because.append(
        f"BROWSER TESTS NOT RUN: the `playwright` Python package is missing. {INSTALL_HINT}"
    )


def find_chromium() -> str | None:
    """``$EGAKI_CHROMIUM`` if set (and executable), else the system Chromium, else None."""
    chosen = os.environ.get("EGAKI_CHROMIUM")
    if chosen:
        return chosen if os.access(chosen, os.X_OK) else None
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _may_install() -> bool:
    allowed = bool(os.environ.get("CI")) or os.environ.get("EGAKI_INSTALL_BROWSER") == "1"
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return allowed and is_root and shutil.which("apt-get") is not None


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *APT_PACKAGES], check=True, env=env,
                   timeout=900)


def _skip(reason: str) -> None:
    message = f"BROWSER TESTS SKIPPED: {reason} {INSTALL_HINT}"
    if message not in _skipped_because:
        _skipped_because.append(message)
    pytest.skip(message)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for message in _skipped_because:
        terminalreporter.section("browser tests", sep="!", red=True, bold=True)
        terminalreporter.write_line(message, red=True, bold=True)


@pytest.fixture(scope="package")
def chromium_path() -> str:
    path = find_chromium()
    if path is None and not os.environ.get("EGAKI_CHROMIUM") and _may_install():
        try:
            _apt_install()
        except (OSError, subprocess.SubprocessError) as err:
            _skip(f"installing Chromium with apt-get failed ({err}).")
        path = find_chromium()
    if path is None:
        _skip("no Chromium found (looked at $EGAKI_CHROMIUM, /usr/bin/chromium, PATH).")
    assert path is not None
    return path


@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    """One headless Chromium for the whole browser package (each launch = fresh profile)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # launch() always starts from a new temporary user-data-dir, deleted on close.
        browser = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def new_context(browser: Any) -> Iterator[Callable[..., Any]]:
    """``new_context(locale="ja-JP")``: a fresh context, loopback-only, closed after the test."""
    made: list[Any] = []

    def make(locale: str = "en-US", **kwargs: Any) -> Any:
        context = browser.new_context(
            locale=locale, viewport={"width": 1280, "height": 900}, **kwargs
        )
        context.offsite = []

        def route(route: Any) -> None:
            host = urlsplit(route.request.url).hostname or ""
            if route.request.url.startswith(("data:", "blob:")) or host in LOOPBACK:
                route.continue_()
            else:
                context.offsite.append(route.request.url)
                route.abort()

        context.route("**/*", route)
        context.set_default_timeout(20_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


# --- the app side ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_ollama(ollama: FakeOllama) -> None:
    """Reset the module's fake Ollama (tests/conftest.py) before each test, even one that
    only opens a tab: the page's welcome already talks to it."""


@pytest.fixture(scope="module")
def chainlit_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's Chainlit files (config, translations, readmes); pass it as
    ``CHAINLIT_APP_ROOT``.

    Chainlit keeps session files in ``$CHAINLIT_APP_ROOT/.files`` and deletes that folder
    whenever a server stops, so any other ``egaki run`` on this checkout stopping mid-test
    would make our images fail to upload. The copy is taken now, so it is what ships.
    """
    root = tmp_path_factory.mktemp("chainlit-root")
    shutil.copytree(ROOT / ".chainlit", root / ".chainlit",
                    ignore=shutil.ignore_patterns("*.db"))
    for readme in ROOT.glob("chainlit*.md"):
        shutil.copy2(readme, root / readme.name)
    if (ROOT / "public").is_dir():
        shutil.copytree(ROOT / "public", root / "public")
    return root


@pytest.fixture
def ja_chat(app: AppProcess, new_context: Callable[..., Any]) -> ChatPage:
    """A new tab in a Japanese browser (locale ja-JP), the welcome already shown."""
    from tests.browser.chat_page import ChatPage

    chat = ChatPage(new_context(locale="ja-JP").new_page()).open(app.url)
    chat.bot_says("おまかせ")
    return chat
