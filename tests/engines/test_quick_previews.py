"""Four quick previews of one prompt share work: one encode, one batch, same pictures.

benchmarks/preview_batch.py measured the batch faster than four singles on this CPU
(tiny: 0.38×, full-size SD1.5 fast 1 step: 0.66× the singles' time), so the studio's
"quick previews" stay one batch request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tools.core.request import ImageRequest
from tools.engines.diffusers.engine import DiffusersEngine

pytestmark = pytest.mark.slow


def test_four_quick_previews_encode_the_prompt_once_and_match_four_singles(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = DiffusersEngine(make_tiny_settings(tmp_path / "data", tiny_models),
                             preview_every=0)
    encodes: list[str] = []
    real = engine._encode

    def counted(pipe: Any, req: ImageRequest, kwargs: dict[str, Any]) -> dict[str, str]:
        encodes.append(str(kwargs.get("prompt")))
        return real(pipe, req, kwargs)

    monkeypatch.setattr(engine, "_encode", counted)
    batch = engine.generate(ImageRequest(prompt="a red cat", width=64, height=64, seed=20,
                                         batch_size=4, fast=True))
    assert len(batch) == 4 and len(encodes) == 1
    assert [g.seed for g in batch] == [20, 21, 22, 23]
    for preview in batch:
        [alone] = engine.generate(preview.request)
        diff = np.abs(np.asarray(preview.image, np.int16) - np.asarray(alone.image, np.int16))
        assert diff.max() <= 3  # batched math may round (TAESD, LoRA adapters)
    engine.unload()
