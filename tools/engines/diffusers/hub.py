"""Everything that may talk to the Hugging Face hub, in one place.

* :func:`ensure_snapshot` returns a local folder for a repo id: from the cache, or (when
  ``Settings.offline`` is false) by downloading with progress reported to a callback.
  Offline and not cached raises :class:`ModelMissing` saying how to fetch it.
* :func:`single_file_config` finds the small diffusers config folder that
  ``from_single_file`` needs to build a pipeline around a checkpoint, so loading a
  ``.safetensors`` never reaches the network once those configs are cached.

Everything afterwards loads from local folders with ``local_files_only=True``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tools.core.errors import EngineError, ModelMissing
from tools.core.events import Downloading, EngineEventSink
from tools.core.settings import Settings

log = logging.getLogger(__name__)

# Hears Downloading(label, done, total) and the other engine events; from worker threads.
DownloadCallback = EngineEventSink

# A pipeline needs configs, tokenizers and component weights; not the root-level single-file
# checkpoints, EMA/fp16 duplicates, other frameworks, or the SD1.x safety checker (A1111 and
# this app don't run it; 1.2 GB saved).
PIPELINE_ALLOW = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", "*/*.safetensors"]
PIPELINE_IGNORE = ["*.fp16.*", "*non_ema*", "*.ema.*", "safety_checker/*", "*/flax_*", "*.onnx*"]
# Same patterns diffusers' ``from_single_file`` fetches, so a cache it made is recognised.
CONFIG_ALLOW = ["**/*.json", "*.json", "*.txt", "**/*.txt", "**/*.model"]


def progress_tqdm(callback: DownloadCallback) -> type:
    """A tqdm class for ``snapshot_download(tqdm_class=...)`` that forwards progress.

    It counts updates itself, so reporting works even when hub progress bars are disabled.
    """
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _Reporting(hf_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._egaki_done = int(kwargs.get("initial") or 0)
            self._egaki_label = str(kwargs.get("desc") or "download")
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            self._egaki_done += int(n or 0)
            total = int(self.total) if self.total else None
            try:
                label = getattr(self, "desc", "") or self._egaki_label  # unset when disabled
                callback(Downloading(str(label), self._egaki_done, total))
            except Exception:  # a broken progress display must not break the download
                log.exception("download progress callback failed")
            return super().update(n)

    return _Reporting


def cached_snapshot(
    repo_id: str, settings: Settings, allow_patterns: list[str] | None = None
) -> Path | None:
    """The cached snapshot folder of ``repo_id``, or None. Never touches the network."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id, cache_dir=settings.hf_cache_dir, local_files_only=True,
                allow_patterns=allow_patterns,
            )
        )
    except Exception as err:  # LocalEntryNotFound, IncompleteSnapshot, bad id...
        log.debug("%s not usable from the cache: %s", repo_id, err)
        return None


def ensure_snapshot(
    repo_id: str,
    settings: Settings,
    on_download: DownloadCallback | None = None,
    *,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    what: str = "model",
) -> Path:
    """A local folder for ``repo_id``: cached, or downloaded when online.

    ``what="configs"`` only changes the suggested download command.
    """
    allow = PIPELINE_ALLOW if allow_patterns is None else allow_patterns
    ignore = PIPELINE_IGNORE if ignore_patterns is None else ignore_patterns
    if settings.offline:
        found = cached_snapshot(repo_id, settings, allow)
        if found is not None:
            return found
        patterns = " --include '*.json' '*.txt'" if what == "configs" else ""
        raise ModelMissing.of(
            "hub_offline_missing", model=repo_id, repo=repo_id,
            command=f"hf download {repo_id}{patterns}",
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        return Path(
            snapshot_download(
                repo_id, cache_dir=settings.hf_cache_dir, allow_patterns=allow,
                ignore_patterns=ignore,
                tqdm_class=progress_tqdm(on_download) if on_download else None,
            )
        )
    except GatedRepoError as err:
        raise ModelMissing.of("hub_gated", model=repo_id, repo=repo_id) from err
    except RepositoryNotFoundError as err:
        raise ModelMissing.of("hub_not_found", model=repo_id, repo=repo_id) from err
    except Exception as err:  # network down, disk full...
        raise EngineError.of(
            "hub_download_failed", repo=repo_id, error=f"{type(err).__name__}: {str(err)[:200]}"
        ) from err


def single_file_config(
    header: dict[str, Any], settings: Settings, on_download: DownloadCallback | None = None
) -> Path:
    """The diffusers config folder matching a checkpoint (from its keys and shapes).

    diffusers names the reference repo (e.g. SD1.5 → ``stable-diffusion-v1-5/...``,
    SDXL → ``stabilityai/stable-diffusion-xl-base-1.0``); only its configs and tokenizer
    files (a few MB) are needed, never its weights.
    """
    from diffusers.loaders.single_file_utils import fetch_diffusers_config

    try:
        repo_id = str(fetch_diffusers_config(header)["pretrained_model_name_or_path"])
    except Exception as err:
        raise EngineError.of("checkpoint_family_unknown", error=err) from err
    try:
        return ensure_snapshot(
            repo_id, settings, on_download, allow_patterns=CONFIG_ALLOW, ignore_patterns=[],
            what="configs",
        )
    except ModelMissing as err:
        raise ModelMissing.of(
            "single_file_needs_config", model=repo_id, repo=repo_id, reason=err
        ) from err
