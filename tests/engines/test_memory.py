"""Peak memory per request: measured for that request, not the process's whole life."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tools.engines.memory import (
    PeakMemory,
    PeakMeter,
    drop_mapped_pages,
    file_mappings,
    rss_split,
)


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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and madvise")
def test_dropped_pages_of_a_read_only_mapping_leave_rss_and_read_back_unchanged(
    tmp_path: Path
) -> None:
    path = tmp_path / "weights.bin"
    data = np.arange(64 * 2**20 // 4, dtype=np.float32)  # 64 MiB
    data.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r")
    assert float(mapped.sum(dtype=np.float64)) == float(data.sum(dtype=np.float64))
    resident = dict(file_mappings(50)).get(str(path.resolve()), 0)
    assert resident > 48 * 2**20  # read: its pages count in the RSS
    before = rss_split()["file"]
    assert drop_mapped_pages(path) >= 64 * 2**20
    assert before - rss_split()["file"] > 48 * 2**20
    assert dict(file_mappings(50)).get(str(path.resolve()), 0) < 2**20
    assert np.array_equal(mapped[::4096], data[::4096])  # still valid, from the file
    drop_mapped_pages(tmp_path / "not-mapped.bin")  # nothing mapped: nothing happens
