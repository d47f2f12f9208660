"""Peak memory of one image request: VRAM on CUDA, resident RAM elsewhere.

On CUDA the allocator's peak is reset before the request and read after. On Linux the
process's resident high-water mark (``VmHWM``) is reset through ``/proc/self/clear_refs``
so the figure belongs to this request; where that is not allowed (or off Linux) the
process's lifetime peak is reported, marked as such.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_PROC = Path("/proc/self")


@dataclass(frozen=True)
class PeakMemory:
    """``bytes`` at most during the request; ``kind`` says of what."""

    bytes: int
    kind: str  # "VRAM", "RAM", or "RAM (process lifetime)"

    def __str__(self) -> str:
        return f"peak {self.bytes / 2**30:.1f} GiB {self.kind}"


class PeakMeter:
    """``with PeakMeter(device) as meter: ...`` then ``meter.result``."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.result: PeakMemory | None = None
        self._per_request = False

    def __enter__(self) -> PeakMeter:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            self._per_request = _reset_rss_peak()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.device == "cuda":
                import torch

                self.result = PeakMemory(int(torch.cuda.max_memory_allocated()), "VRAM")
            elif self._per_request and (hwm := _read_hwm()) is not None:
                self.result = PeakMemory(hwm, "RAM")
            else:
                self.result = PeakMemory(lifetime_rss_peak(), "RAM (process lifetime)")
        except Exception as err:  # a measurement must never fail the request
            log.debug("peak memory unavailable: %s", err)


def _reset_rss_peak() -> bool:
    try:
        (_PROC / "clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS
    except OSError:
        return False
    return _read_hwm() is not None


def _status_bytes() -> dict[str, int]:
    """The memory lines of /proc/self/status ("VmRSS", "RssAnon"…) in bytes; empty where
    /proc is missing."""
    out: dict[str, int] = {}
    try:
        for line in (_PROC / "status").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith(" kB"):
                out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _read_hwm() -> int | None:
    return _status_bytes().get("VmHWM")


def lifetime_rss_peak() -> int:
    """The process's highest resident memory so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss() -> int | None:
    """This process's resident memory now, in bytes (None where /proc is missing)."""
    return _status_bytes().get("VmRSS")


def release_heap() -> None:
    """Hand freed memory back to the OS after a big temporary (e.g. a model conversion).

    glibc keeps freed blocks in its arenas, so without ``malloc_trim`` the process keeps
    the conversion's peak resident for the rest of its life.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError) as err:  # musl or no glibc: nothing to trim
            log.debug("malloc_trim unavailable: %s", err)


def rss_split() -> dict[str, int]:
    """This process's resident memory now by kind, in bytes: ``anon`` (heap, tensors,
    compiled models: only swap can take it), ``file`` (memory-mapped files such as
    OpenVINO IR weights and safetensors: the OS can drop and re-read those pages) and
    ``shmem``. Empty where /proc is missing."""
    names = {"RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}
    status = _status_bytes()
    return {short: status[key] for key, short in names.items() if key in status}


def file_mappings(top: int = 5) -> list[tuple[str, int]]:
    """The ``top`` files mapped into this process by resident bytes (name, bytes), from
    /proc/self/smaps: which weights the file-backed part of the RSS is."""
    sizes: dict[str, int] = {}
    name = ""
    try:
        for line in (_PROC / "smaps").read_text().splitlines():
            parts = line.split()
            if parts and "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                name = parts[5] if len(parts) > 5 and parts[5].startswith("/") else ""
            elif name and parts and parts[0] == "Rss:":
                sizes[name] = sizes.get(name, 0) + int(parts[1]) * 1024
    except (OSError, ValueError, IndexError):
        return []
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:top]


def drop_mapped_pages(path: Path) -> int:
    """Drop this process's resident pages of read-only mappings of ``path``; bytes
    advised. The mappings stay valid: a page read again comes back from the file.

    OpenVINO's compiled CPU models keep the IR's ``.bin`` mapped after the compile has
    copied the weights into its own layout, with every page it read still resident
    (SD1.5's UNet: 1.6 GiB). Only mappings without write permission are touched, so no
    private change can be lost.
    """
    if not sys.platform.startswith("linux"):
        return 0
    target = str(Path(path).resolve())
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        lines = (_PROC / "maps").read_text().splitlines()
    except (OSError, AttributeError) as err:
        log.debug("can't drop mapped pages: %s", err)
        return 0
    dropped = 0
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or parts[5] != target or "w" in parts[1]:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if libc.madvise(start, end - start, 4) == 0:  # MADV_DONTNEED
            dropped += end - start
    return dropped
