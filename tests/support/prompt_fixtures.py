"""Pytest plugin: tiny SD1.5/SDXL pipelines loaded straight from the session's tiny models,
for the prompt-encoding and textual-inversion tests (no engine in between).

The tokenizer is byte-level (every character is a token, ``,</w>`` is the comma), the
text encoders have two layers of width 32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.tiny_pipelines import TinyModels


def load_pipe(path: Path) -> Any:
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def sd15(tiny_models: TinyModels) -> Any:
    """Shared SD1.5 pipeline: tests must not register embeddings into it."""
    return load_pipe(tiny_models.sd15_dir)


@pytest.fixture(scope="session")
def sdxl(tiny_models: TinyModels) -> Any:
    """Shared SDXL pipeline: tests must not register embeddings into it."""
    return load_pipe(tiny_models.sdxl_dir)


@pytest.fixture
def fresh_sd15(tiny_models: TinyModels) -> Any:
    return load_pipe(tiny_models.sd15_dir)


@pytest.fixture
def fresh_sdxl(tiny_models: TinyModels) -> Any:
    return load_pipe(tiny_models.sdxl_dir)


def render(pipe: Any, seed: int = 0, **kwargs: Any) -> np.ndarray:
    """A 64×64, 2-step picture as uint8 pixels (what a user would see)."""
    import torch

    kwargs.setdefault("num_inference_steps", 2)
    if "image" not in kwargs:
        kwargs.setdefault("width", 64)
        kwargs.setdefault("height", 64)
    out = pipe(generator=torch.Generator("cpu").manual_seed(seed), output_type="np",
               guidance_scale=7.0, **kwargs).images
    return np.asarray((np.asarray(out) * 255).round(), dtype=np.uint8)


def words(n: int, word: str = "a") -> str:
    """``n`` one-token words (with the byte-level tokenizer ``a`` is one token)."""
    return " ".join([word] * n)
