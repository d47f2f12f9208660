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
