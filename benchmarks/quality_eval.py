"""Pass rate of single-shot vs best-of-N with automatic checks, and what it costs.

    python -m benchmarks.quality_eval                      # your Settings (EGAKI_* / .env)
    python -m benchmarks.quality_eval --candidates 4 --rounds 2 --screen fast \\
        --json quality.json --judge-model gemma3:12b
    python -m benchmarks.quality_eval --dry-run --limit 2  # fake Ollama + FakeEngine

For each fixed request (English and Japanese: counts, colours, no-text signs, …) it
does what the chat does on the GO path: builds the prompt spec with
:class:`~assistant.prompting.builder.SpecBuilder` from an :class:`InterviewState` holding the
request words, derives the constraints (one LLM call), then runs the
:class:`~assistant.quality.loop.QualityLoop` with the configured engine
behind the job queue, through :class:`~assistant.studio.runner.ImageRunner`), all wired by
the app's composition root (:class:`assistant.app.App`) as in the chat.

*Single-shot* is the loop's first candidate: the same prompt and seed a plain run
would have used, so both numbers come from one run. Passing is judged by the checking
vision model; ``--judge-model`` re-judges the single-shot and the shown image with an
independent model, which removes the bias of grading one's own picks. Times: single-shot
is that one render; best-of-N is the whole loop (constraints, renders, checks).
Everything runs locally; ``--dry-run`` needs no models at all (it is what the tests run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import unicodedata
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from assistant.app import App
from assistant.prompting.builder import SpecBuilder
from assistant.prompting.interview import InterviewState
from assistant.quality.check import VisionChecker
from assistant.quality.loop import QualityResult, QualitySettings, engine_device
from assistant.studio.runner import ImageRunner
from tools.core.messages import detect_language
from tools.core.settings import Settings
from tools.llm.structured import LLMCallCounter


@dataclass(frozen=True)
class EvalRequest:
    """One fixed request; ``english`` only feeds the dry run's fake spec writer."""

    text: str
    english: str


REQUESTS: tuple[EvalRequest, ...] = (
    EvalRequest(
        "two women playing beach volleyball on a sunny beach",
        "two women playing beach volleyball on a sunny beach",
    ),
    EvalRequest(
        "二人の女性が晴れたビーチでビーチバレーをしている写真",
        "two women playing beach volleyball on a sunny beach, photo",
    ),
    EvalRequest("three cats sleeping on a sofa", "three cats sleeping on a sofa"),
    EvalRequest("三匹の猫がソファで寝ている", "three cats sleeping on a sofa"),
    EvalRequest(
        "a woman holding a red umbrella on a rainy city street",
        "a woman holding a red umbrella on a rainy city street",
    ),
    EvalRequest("雨の街角で赤い傘をさす女性", "a woman with a red umbrella, rainy street corner"),
    EvalRequest(
        "a blank wooden sign in a forest, with no text on it", "a blank wooden sign in a forest"
    ),
    EvalRequest("文字のない木の看板が立つ森の小道", "a blank wooden sign beside a forest path"),
    EvalRequest("two dogs running across a snowy field", "two dogs running across a snowy field"),
    EvalRequest("青い花瓶に黄色いチューリップが五本", "five yellow tulips in a blue vase"),
)


def guess_family(settings: Settings) -> str:
    """sdxl when the configured image model looks like one, else sd15."""
    name = settings.image_model.lower()
    return "sdxl" if "xl" in name else "sd15"


def quality_settings(args: argparse.Namespace) -> QualitySettings:
    return QualitySettings(
        candidates=args.candidates,
        show=args.show,
        max_rounds=args.rounds,
        max_images=args.max_images,
        max_seconds=args.max_seconds,
        screen=args.screen,
        clip_model=args.clip,
    )


async def evaluate_one(
    req: EvalRequest, app: App, args: argparse.Namespace, runner: ImageRunner
) -> dict[str, Any]:
    """Spec → constraints → quality loop for one request; a JSON-ready row."""
    lang = detect_language(req.text)
    counter = LLMCallCounter()
    chat = app.chat_models(app.settings.chat_model)
    state = InterviewState(language=lang, user_words=[req.text], questions=[[]], done=True)
    t0 = time.perf_counter()
    spec = await SpecBuilder(chat, counter=counter).build(state, family=args.family)
    spec_s = time.perf_counter() - t0
    loop = app.quality_loop(chat, runner.run, device=engine_device(app.settings),
                            quality=quality_settings(args), counter=counter)
    result = await loop.run(spec)
    row = _row(req, lang, spec.positive, result, spec_s)
    row["llm_calls_with_spec"] = counter.total
    if args.judge_model:
        row["judge"] = await _judge(app, args.judge_model, result)
    return row


def _row(
    req: EvalRequest, lang: str, positive: str, result: QualityResult, spec_s: float
) -> dict[str, Any]:
    report = result.report
    first = result.candidates[0]
    best = result.shown[0]
    return {
        "request": req.text,
        "language": lang,
        "prompt": positive,
        "checks": len(report.constraints),
        "single_pass": first.record.verdict.all_passed,
        "single_passes": first.record.verdict.passes,
        "single_phase": first.record.phase,
        "best_pass": best.record.verdict.all_passed,
        "best_passes": best.record.verdict.passes,
        "single_seconds": round(first.record.duration_s, 3),
        "best_seconds": round(report.seconds.get("total", 0.0), 3),
        "spec_seconds": round(spec_s, 3),
        "images": report.images_generated,
        "rounds": report.rounds,
        "llm_calls": report.llm_calls,
        "explanation": report.explanation,
        "single_path": first.record.path,
        "best_path": best.record.path,
        "report": report.model_dump(mode="json"),
    }


async def _judge(app: App, model: str, result: QualityResult) -> dict[str, Any]:
    """Re-judge the single-shot and the shown image with an independent model."""
    judge = VisionChecker(app.chat_models(model), model_name=model, gateway=app.gateway)
    await judge.ensure_vision()
    single = await judge.check(result.candidates[0].image.image, result.constraints)
    best = await judge.check(result.shown[0].image.image, result.constraints)
    return {"model": model, "single_pass": single.all_passed, "best_pass": best.all_passed}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)

    def rate(key: str, src: str | None = None) -> float:
        items = [r[src][key] for r in rows if src in r] if src else [r[key] for r in rows]
        return round(sum(map(bool, items)) / len(items), 3) if items else 0.0

    out: dict[str, Any] = {
        "requests": n,
        "single_pass_rate": rate("single_pass"),
        "best_pass_rate": rate("best_pass"),
        "single_seconds_mean": round(statistics.fmean(r["single_seconds"] for r in rows), 3),
        "best_seconds_mean": round(statistics.fmean(r["best_seconds"] for r in rows), 3),
        "images_mean": round(statistics.fmean(r["images"] for r in rows), 2),
        "llm_calls_mean": round(statistics.fmean(r["llm_calls"] for r in rows), 2),
    }
    if any("judge" in r for r in rows):
        out["judge_single_pass_rate"] = rate("single_pass", "judge")
        out["judge_best_pass_rate"] = rate("best_pass", "judge")
    return out


def _fit(text: str, width: int) -> str:
    """``text`` cut and padded to ``width`` terminal columns (CJK characters are 2 wide)."""
    out, used = "", 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > width - 1 and len(text) > len(out) + 1:
            return out + "…" + " " * (width - used - 1)
        out, used = out + ch, used + w
    return out + " " * (width - used)


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    head = (
        f"{'#':>2} {'lang':4} {'request':36} {'chk':>3} {'1-shot':>6} {'best':>6} "
        f"{'imgs':>4} {'rnd':>3} {'llm':>3} {'1-shot s':>9} {'best s':>8}"
    )
    print(head)
    print("-" * len(head))
    for i, r in enumerate(rows, 1):
        text = _fit(r["request"], 36)
        one = f"{r['single_passes']}/{r['checks']}" + ("✓" if r["single_pass"] else " ")
        best = f"{r['best_passes']}/{r['checks']}" + ("✓" if r["best_pass"] else " ")
        print(
            f"{i:>2} {r['language']:4} {text} {r['checks']:>3} {one:>6} {best:>6} "
            f"{r['images']:>4} {r['rounds']:>3} {r['llm_calls']:>3} "
            f"{r['single_seconds']:>9.2f} {r['best_seconds']:>8.2f}"
        )
    print("-" * len(head))
    s = summary
    print(
        f"pass rate: single-shot {s['single_pass_rate']:.0%}, best-of-N {s['best_pass_rate']:.0%}"
        f" over {s['requests']} requests"
    )
    print(
        f"mean time: single-shot {s['single_seconds_mean']:.2f} s, best-of-N "
        f"{s['best_seconds_mean']:.2f} s ({s['images_mean']:.1f} images, "
        f"{s['llm_calls_mean']:.1f} LLM calls per request)"
    )
    if "judge_best_pass_rate" in s:
        print(
            f"independent judge: single-shot {s['judge_single_pass_rate']:.0%}, "
            f"best-of-N {s['judge_best_pass_rate']:.0%}"
        )


async def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Evaluate the selected requests with ``settings``' models and engine."""
    requests = [r for r in REQUESTS if args.lang in ("all", detect_language(r.text))]
    requests = requests[: args.limit] if args.limit else requests
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or settings.data_dir / "benchmarks" / f"quality-{stamp}"
    app = App(settings)
    runner = app.image_runner(output_dir=out_dir)  # no display: nothing is "shown"
    rows = []
    try:
        for req in requests:
            rows.append(await evaluate_one(req, app, args, runner))
    finally:
        await app.aclose()
    summary = summarize(rows)
    print_table(rows, summary)
    meta = {
        "when": stamp,
        "dry_run": args.dry_run,
        "chat_model": settings.chat_model,
        "vision_model": settings.effective_vision_model,
        "image_engine": settings.image_engine,
        "image_model": settings.image_model,
        "device": engine_device(settings),
        "family": args.family,
        "quality": quality_settings(args).model_dump(mode="json"),
        "images_dir": str(out_dir),
    }
    result = {"meta": meta, "summary": summary, "requests": rows}
    json_path = args.json or out_dir / "quality_eval.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"wrote {json_path}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.quality_eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dry-run", action="store_true", help="fake Ollama + FakeEngine (no models)")
    p.add_argument("--candidates", type=int, default=None, help="N; default from the device")
    p.add_argument("--show", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-images", type=int, default=12)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--screen", choices=["off", "fast", "small"], default="off")
    p.add_argument("--clip", type=Path, default=None, help="local transformers CLIP folder")
    p.add_argument("--judge-model", default="", help="independent Ollama vision model")
    p.add_argument("--family", choices=["sd15", "sdxl"], default=None)
    p.add_argument("--lang", choices=["all", "en", "ja"], default="all")
    p.add_argument("--limit", type=int, default=0, help="only the first K requests")
    p.add_argument("--json", type=Path, default=None, help="where to write the JSON results")
    p.add_argument("--out", type=Path, default=None, help="folder for the images")
    p.add_argument("--ollama-host", default=None)
    p.add_argument("--chat-model", default=None)
    p.add_argument("--vision-model", default=None)
    p.add_argument("--image-model", default=None)
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """The user's Settings (environment, .env) with the command-line overrides."""
    overrides = {
        k: v
        for k, v in {
            "ollama_host": args.ollama_host,
            "chat_model": args.chat_model,
            "vision_model": args.vision_model,
            "image_model": args.image_model,
        }.items()
        if v
    }
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        if args.dry_run:
            from benchmarks.quality_dry_run import dry_run_settings

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            settings = stack.enter_context(dry_run_settings(tmp, REQUESTS))
        else:
            settings = settings_from(args)
        args.family = args.family or guess_family(settings)
        asyncio.run(run(args, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
