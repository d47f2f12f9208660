"""Small fixes to Chainlit 2.12 that Egaki needs; import before using chainlit.

Chainlit's package ``__getattr__`` (its lazy imports) raises ``KeyError`` for unknown
names instead of ``AttributeError``. Anything that probes modules by attribute — pickle's
``whichmodule``, which ``torch.compile`` uses to key its cache — then crashes in every
process that has imported chainlit, so the compiled UNet would never work in the app.
"""

from __future__ import annotations

import re
from typing import Any

import chainlit

# Chainlit's index.html links Google Fonts and a jsDelivr KaTeX stylesheet: every page
# load would tell those hosts that someone is using Egaki. Local assets only.
_OFFSITE_LINK = re.compile(r'<link\b[^>]*\bhref="(?:https?:)?//[^"]*"[^>]*>\s*')


def _patch_module_getattr() -> None:
    original = getattr(chainlit, "__getattr__", None)
    if original is None or getattr(original, "_egaki_fixed", False):
        return

    def __getattr__(name: str) -> Any:
        try:
            return original(name)
        except KeyError:
            raise AttributeError(f"module 'chainlit' has no attribute {name!r}") from None

    __getattr__._egaki_fixed = True  # type: ignore[attr-defined]
    chainlit.__getattr__ = __getattr__


_patch_module_getattr()


def serve_local_assets_only() -> None:
    """Strip off-site ``<link>`` tags from the page Chainlit serves (call after import)."""
    import chainlit.server as server

    original = server.get_html_template
    if getattr(original, "_egaki_fixed", False):
        return

    def get_html_template(*args: Any, **kwargs: Any) -> str:
        return _OFFSITE_LINK.sub("", original(*args, **kwargs))

    get_html_template._egaki_fixed = True  # type: ignore[attr-defined]
    server.get_html_template = get_html_template


def accept_empty_uploads() -> None:
    """Let an empty (0-byte) upload reach the app, which explains it in the chat.

    ``WebsocketSession.persist_file`` treats ``content=b""`` as "no content" and raises
    ``ValueError`` (chainlit/session.py:179), so ``POST /project/file`` answers 500 and
    the browser shows only an English "Upload failed" toast. An empty file is written as
    such instead; :func:`vision.uploads.load_upload` then says so in the user's language.
    """
    from chainlit.session import WebsocketSession

    original = WebsocketSession.persist_file
    if getattr(original, "_egaki_fixed", False):
        return

    async def persist_file(self: Any, name: str, mime: str, path: str | None = None,
                           content: bytes | str | None = None) -> Any:
        if path is None and content is not None and len(content) == 0:
            self.files_dir.mkdir(parents=True, exist_ok=True)
            empty = self.files_dir / ".egaki-empty"
            empty.touch()
            return await original(self, name=name, mime=mime, path=str(empty))
        return await original(self, name=name, mime=mime, path=path, content=content)

    persist_file._egaki_fixed = True  # type: ignore[attr-defined]
    WebsocketSession.persist_file = persist_file  # type: ignore[method-assign]
