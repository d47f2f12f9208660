"""The ``--dry-run`` world of :mod:`benchmarks.quality_eval`: fake Ollama + FakeEngine.

Imported only for ``--dry-run`` (it needs the repository's ``tests`` package), so the
real evaluation runs on a user's GPU box without any test code. The fake Ollama answers
the spec, constraint and check steps deterministically: the spec is the request's
English wording, constraints come from the word rules alone, and each check answer is
a stable pseudo-random yes/no (~60 % yes) from the image bytes, with the count seen one
too many on a "no", so the loop, its fixes and the report all get exercised.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from tools.core.settings import Settings

_QUESTION = re.compile(r"^(\d+)\.\s+(.*)$", re.M)
_EXACTLY = re.compile(r"exactly (\d+|one)\b")


class _Request(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def english(self) -> str: ...


def _spec(body: dict[str, Any], requests: Sequence[_Request]) -> dict[str, Any]:
    said = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    english = next((r.english for r in requests if r.text in said), "a picture")
    return {
        "subject": english,
        "setting": "",
        "time_of_day": "",
        "weather": "",
        "lighting": "natural light",
        "color_palette": "",
        "framing": "medium shot",
        "style": "photo",
        "negative_extra": "",
        "width": 512,
        "height": 512,
        "steps": 20,
        "cfg_scale": 7.0,
        "sampler": "Euler a",
        "seed": None,
        "size_reason": "",
        "steps_reason": "",
        "cfg_scale_reason": "",
        "sampler_reason": "",
    }


def _answers(body: dict[str, Any]) -> dict[str, Any]:
    user = next(m for m in reversed(body["messages"]) if m.get("images"))
    image = user["images"][0]
    answers = []
    for number, question in _QUESTION.findall(str(user.get("content", ""))):
        h = hashlib.sha256(f"{image}|{number}".encode()).digest()
        yes = h[0] < 154
        count = None
        m = _EXACTLY.search(question)
        if m:
            expected = 1 if m.group(1) == "one" else int(m.group(1))
            count = expected if yes else expected + 1
        answers.append(
            {
                "number": int(number),
                "answer": "yes" if yes else "no",
                "count": count,
                "reason": "dry run",
            }
        )
    return {"answers": answers}


def responder(requests: Sequence[_Request]) -> Any:
    """The fake Ollama's answer function for the three structured steps."""
    from tests.support.fake_ollama import Reply

    def answer(body: dict[str, Any]) -> Any:
        props = (body.get("format") or {}).get("properties", {})
        if "negative_extra" in props:
            return Reply(data=_spec(body, requests))
        if "constraints" in props:
            return Reply(data={"constraints": []})
        if "answers" in props:
            return Reply(data=_answers(body))
        return None

    return answer


@contextmanager
def dry_run_settings(data_dir: Path, requests: Sequence[_Request]) -> Iterator[Settings]:
    """Settings pointing at a running fake Ollama and the fake engine."""
    from tests.support.fake_ollama import FakeOllama

    with FakeOllama(responder=responder(requests)) as srv:
        yield Settings(
            _env_file=None,
            data_dir=data_dir,
            ollama_host=srv.url,
            chat_model="qwen3-vl:8b",
            vision_model="",
            image_engine="fake",
            offline=True,
        )
