"""From images and PNG files to ledger rows, and the start-up reconcile pass.

A generated image becomes a row with everything its generator knew; a PNG found on disk
without a record becomes a row rebuilt from its A1111 infotext (read with
:mod:`tools.infotext`, never trusted beyond plain parsing). :func:`reconcile_files`
compares the images folder with the records after a crash or a manual copy.
"""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.infotext.png import read_png_metadata
from tools.infotext.text import format_infotext, infotext_to_request
from tools.ledger.store import LedgerStore
from tools.ledger.types import ReconcileReport, RecordContext

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"  # what tools.infotext.save_png writes before renaming
# Infotext keys that map onto ImageRequest fields or columns; anything else is "extra".
_KNOWN_KEYS = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size",
               "Model hash", "Model", "Denoising strength", "Version"}  # fmt: skip
_STOPWORDS = {"a", "an", "the", "of", "in", "on", "at", "with", "and", "or", "like", "to",
              "for", "my", "me", "some", "image", "images", "picture", "pictures", "photo",
              "photos"}  # fmt: skip
# Japanese has no spaces: split CJK runs on common particles so 夕焼けの海 finds 夕焼け.
_CJK = r"[\u3040-\u30ff\u4e00-\u9fff]"
_JA_PARTICLES = re.compile(rf"(?<={_CJK})[のをがとでにはへや](?={_CJK})")
_WORD = re.compile(r"\w+", re.UNICODE)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def generated_row(gen: GeneratedImage, path: Path, context: RecordContext,
                  key: str) -> dict[str, Any]:
    """The row for an image the app just made and saved at ``path``."""
    request = gen.request
    if request.seed != gen.seed or request.batch_size != 1:
        # Some engines report the batch request; each image reproduces from its own seed.
        request = request.model_copy(update={"seed": gen.seed, "batch_size": 1})
    meta = read_png_metadata(path)
    infotext = meta.text if meta is not None and meta.parsed is not None else ""
    return {
        "path": key,
        "request_json": request.model_dump_json(),
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": gen.seed,
        "width": gen.image.width,
        "height": gen.image.height,
        "model_name": gen.model_name,
        "model_hash": gen.model_hash,
        "extra_json": json.dumps(gen.extra, ensure_ascii=False),
        "infotext": infotext or format_infotext(gen),
        "user_words": context.user_words,
        "thread_id": context.thread_id,
        "parent_id": context.parent_id,
        "created_at": now_iso(),
        "duration_s": gen.duration_s,
        "status": context.status,
        "quality_json": (json.dumps(dict(context.quality), ensure_ascii=False)
                         if context.quality is not None else None),
        "origin": "generated",
    }


def png_row(path: Path, key: str) -> dict[str, Any] | None:
    """The row for a PNG found on disk, from its A1111 infotext; None if it has none."""
    meta = read_png_metadata(path)
    if meta is None or meta.parsed is None:
        return None
    parsed = meta.parsed
    try:
        request = infotext_to_request(parsed)
    except InvalidRequest as err:
        log.info("ledger: %s has parameters Egaki can't use: %s", path.name, err.message)
        return None
    created = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return {
        "path": key,
        "request_json": request.model_dump_json(),
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed or 0,
        "width": request.output_size[0],  # the image's: hires fix makes it larger
        "height": request.output_size[1],
        "model_name": parsed.params.get("Model", ""),
        "model_hash": parsed.params.get("Model hash", ""),
        "extra_json": json.dumps(
            {k: v for k, v in parsed.params.items() if k not in _KNOWN_KEYS},
            ensure_ascii=False,
        ),
        "infotext": meta.text,
        "user_words": "",
        "thread_id": "",
        "parent_id": None,
        "created_at": created.isoformat(timespec="microseconds"),
        "duration_s": 0.0,
        "status": "shown",
        "quality_json": None,
        "origin": "reconciled",
    }


def search_terms(text: str, limit: int = 8) -> list[str]:
    """Words worth matching with LIKE: no stopwords, no repeats, Japanese split on particles."""
    words = _WORD.findall(_JA_PARTICLES.sub(" ", text.lower()))
    out: list[str] = []
    for w in words:
        if w not in _STOPWORDS and w not in out:
            out.append(w)
    return out[:limit] or words[:limit]


def reconcile_files(store: LedgerStore, images_dir: Path, *,
                    stale_temp_after_s: float = 3600.0) -> ReconcileReport:
    """Record unrecorded PNGs under ``images_dir``, flag and unflag missing files.

    Leftover ``.tmp-*.png`` files are half-written images from a crash (``save_png``
    renames only complete files); those older than ``stale_temp_after_s`` are removed,
    younger ones may belong to a save in progress and are left alone.
    """
    report = ReconcileReport()
    known = store.paths()
    rows: list[dict[str, Any]] = []
    if images_dir.is_dir():
        now = time.time()
        for path in sorted(images_dir.rglob("*.png")):
            if path.name.startswith(TEMP_PREFIX):
                try:
                    if now - path.stat().st_mtime > stale_temp_after_s:
                        path.unlink()
                        report.stale_temp_files.append(path)
                except OSError:
                    pass  # already renamed or removed by its writer
                continue
            key = store.path_key(path)
            if key in known or not path.is_file():
                continue
            row = png_row(path, key)
            if row is None:
                report.skipped.append(path)
            else:
                rows.append(row)
    if rows:
        report.added = store.insert(rows, upgrade=False)

    for key, (record_id, was_missing) in known.items():
        exists = store.full_path(key).is_file()
        if not exists and not was_missing:
            report.missing.append(record_id)
        elif exists and was_missing:
            report.restored.append(record_id)
    store.set_missing(report.missing, True)
    store.set_missing(report.restored, False)
    return report
