"""App overhead per chat turn with a zero-latency model, and LLM calls per image.

    python -m benchmarks.turn_overhead [--turns 50]

Drives :class:`assistant.chat.conversation.Conversation` (the code behind the Chainlit
handlers), wired by the composition root (:class:`assistant.app.App`) as in the app,
against the wire-compatible fake Ollama server, which answers instantly, and the fake
image engine behind the job queue. Whatever time a turn takes is Egaki's own overhead: message
handling, prompt building, LangChain, HTTP to Ollama, PNG saving. Goal: < 50 ms a turn,
≤ 2 LLM calls per generated image after the interview.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from assistant.app import App
from assistant.chat.state import ChatState
from assistant.studio.runner import ImageRunner
from tests.support.fake_ollama import FakeOllama, Reply
from tools.core.settings import Settings

SPEC = {"subject": "a red fox", "setting": "snowy forest", "lighting": "morning light",
        "style": "photo", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7,
        "sampler": "Euler a"}
INTERVIEW = {"slots": {"subject": "a red fox"},
             "questions": [{"slot": "setting", "text": "Where is the fox?"}], "ready": False}


class NullUI:
    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[Any]) -> None: ...
    async def stream_token(self, token: str) -> None: ...
    async def end_stream(self) -> None: ...
    async def confirm_pull(self, model: str, lang: str) -> bool:
        return False

    async def pull_progress(self, *args: Any) -> None: ...


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms, p90 " \
           f"{sorted(samples)[int(len(samples) * 0.9)] * 1000:.1f} ms"


async def run(turns: int) -> None:
    with FakeOllama() as srv, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp), ollama_host=srv.url,  # type: ignore[call-arg]
                            image_engine="fake", unload_ollama_before_image=False)
        app = App(settings)
        ui = NullUI()
        chat, interview, image, engine = [], [], [], []
        calls_per_image = []
        for _ in range(turns):
            runner = app.image_runner(output_dir=Path(tmp) / "img")
            spent: list[float] = []

            async def timed_run(request: Any, _r: ImageRunner = runner,
                                _s: list[float] = spent) -> Any:
                t = time.perf_counter()
                out = await _r.run(request)
                _s.append(time.perf_counter() - t)
                return out

            conv = app.conversation(ChatState(), runner, run=timed_run)
            await conv.start(ui)
            assert conv.studio is not None
            srv.enqueue(Reply(data=INTERVIEW))
            t0 = time.perf_counter()
            await conv.on_message("a fox", ui)
            interview.append(time.perf_counter() - t0)
            before = conv.studio.counter.total
            srv.enqueue(Reply(data=SPEC))
            t0 = time.perf_counter()
            await conv.on_message("GO", ui)
            image.append(time.perf_counter() - t0 - sum(spent))
            engine.append(sum(spent))
            calls_per_image.append((conv.studio.counter.total - before) / conv.studio.images_made)
            srv.enqueue(Reply("Nice, glad you like it."))
            t0 = time.perf_counter()
            await conv.on_message("thanks", ui)
            chat.append(time.perf_counter() - t0)
        print(f"free chat turn (streamed):          {_ms(chat)}")
        print(f"interview turn (1 structured call): {_ms(interview)}")
        print(f"GO → spec → card → buttons:         {_ms(image)}  (excluding the image job)")
        print(f"image job (fake engine + PNG save): {_ms(engine)}")
        print(f"LLM calls per image after the interview: {statistics.mean(calls_per_image):.2f}")
        await app.aclose()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--turns", type=int, default=30)
    asyncio.run(run(p.parse_args().turns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
