"""Peak memory per request: measured for that request, not the process's whole life."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tools.engines.memory import PeakMemory, PeakMeter


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux-only")
def test_cpu_peak_is_per_request() -> None:
    with PeakMeter("cpu") as big:
        block = np.ones(300 * 2**20, dtype=np.uint8)  # 300 MiB, touched
        del block
    with PeakMeter("cpu") as small:
        np.ones(2**20, dtype=np.uint8)
    assert big.result is not None and small.result is not None
    assert big.result.kind == small.result.kind == "RAM"
    assert big.result.bytes - small.result.bytes > 250 * 2**20


def test_text_says_what_was_measured() -> None:
    assert str(PeakMemory(int(3.25 * 2**30), "VRAM")) == "peak 3.2 GiB VRAM"
