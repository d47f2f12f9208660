"""Small builders for ledger tests: a request, a ledger on a data dir, a recording runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assistant.studio.runner import ImageRunner
from tools.core.request import ImageRequest
from tools.engines.fake import FakeEngine
from tools.ledger.embeddings import Embedder, HashEmbedder
from tools.ledger.service import Ledger
from tools.ledger.types import RecordContext


def req(prompt: str, **kw: Any) -> ImageRequest:
    """A quick 64×64, 2-step request."""
    return ImageRequest(**{"prompt": prompt, "width": 64, "height": 64, "steps": 2, **kw})


def make_ledger(data: Path, embedder: Embedder | None = None, **kw: Any) -> Ledger:
    """A ledger on ``data`` with the offline hash embedder, indexing in the foreground."""
    kw.setdefault("background_index", False)
    return Ledger(data, embedder=embedder or HashEmbedder(), **kw)


def runner_for(ledger: Ledger, engine: Any = None, **context: Any) -> ImageRunner:
    """A runner that records every image in ``ledger`` (with ``context``) before showing it."""
    return ImageRunner(engine or FakeEngine(), output_dir=ledger.images_dir,
                       recorder=ledger.record_batch, context=RecordContext(**context))
