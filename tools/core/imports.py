"""One lock for importing the heavy stacks (torch/diffusers, chromadb) from threads.

The chat opens the ledger, probes the device and loads the pipeline in worker threads.
Importing torch, diffusers and chromadb from several threads at once can trip Python's
per-module import locks into a deadlock error that diffusers' lazy loader reports as
"Failed to import diffusers.pipelines…". Taking this lock around a thread's first heavy
import makes those imports happen one after another; later imports are free.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
HEAVY_IMPORTS = threading.RLock()


def preload_numpy() -> None:
    """numpy and its lazily loaded submodules, now, on this thread.

    numpy imports ``numpy.dtypes``/``numpy._typing`` on first attribute access; when two
    threads hit that at once (accelerate does at import), a half-initialised submodule is
    left behind and every later import recurses forever. Call before starting threads.
    """
    with HEAVY_IMPORTS:
        import numpy
        import numpy._typing
        import numpy.dtypes
        import numpy.typing

        _ = numpy.dtypes.UInt32DType


def import_diffusers() -> Any:
    """``diffusers`` with the pipeline classes Egaki uses already resolved."""
    with HEAVY_IMPORTS:
        import diffusers

        for name in ("AutoPipelineForText2Image", "AutoPipelineForImage2Image",
                     "AutoPipelineForInpainting", "StableDiffusionPipeline",
                     "StableDiffusionXLPipeline", "AutoencoderTiny"):
            getattr(diffusers, name)
        return diffusers


def serialized(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` holding the heavy-import lock (for a thread's first heavy work)."""
    with HEAVY_IMPORTS:
        return fn(*args, **kwargs)
