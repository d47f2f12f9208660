"""Best-of-N with automatic checks: make several candidates, show the best, hide the rest.

:meth:`QualityLoop.run` reads as numbered steps:

1. make sure the checker's model can see images (:class:`CapabilityMissing` otherwise),
   and derive the constraints (one LLM call) unless they are given;
2. per round, generate up to N candidates (seeds ``base, base+1, …``; optionally as
   cheap *previews*: ``fast=True`` or a smaller size), then check each with the vision
   model (one call per image) and, when a local CLIP is configured, score it;
3. if no candidate passed every check, apply the rules of ``prompts/quality_fixes.yaml``
   to the prompt and go again, while rounds, images and seconds last;
4. rank: checks passed, then CLIP score, then the earlier candidate;
5. with screening, re-render the winners at full quality with the SAME seed (and check
   them again);
6. report every image once through ``on_candidate(gen, path, verdict, status)``: the
   shown ones as ``"shown"``, all others (screening previews included) as
   ``"rejected"``, and return a :class:`QualityResult`: the report and an explanation.

The budget is strict: a generation starts only when the images left allow it and the
time spent plus the estimated cost of that image (and of the checks and final renders
it implies) fits in ``max_seconds``. Only the very first image always runs, so the
person always gets a picture.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.prompting.spec import PromptSpec
from assistant.quality.check import ImageScorer, Verdict, VisionChecker
from assistant.quality.constraints import Constraint, ConstraintDeriver, rule_constraints
from assistant.quality.fixes import Failure, apply_fixes
from assistant.quality.report import CandidateRecord, QualityReport, explain
from assistant.quality.settings import (
    Budget,
    QualitySettings,
    default_candidates,
    engine_device,
)
from tools.core.engine import GeneratedImage
from tools.core.request import MAX_SEED, ImageRequest
from tools.llm.structured import LLMCallCounter

__all__ = [
    "Candidate",
    "QualityLoop",
    "QualityProgress",
    "QualityResult",
    "QualitySettings",
    "default_candidates",
    "engine_device",
]

log = logging.getLogger(__name__)

Runner = Callable[[ImageRequest], Awaitable[tuple[list[GeneratedImage], list[Path]]]]
# The ledger's statuses: a screening preview whose final is shown is "rejected" there too
# (hidden); the report keeps the finer "preview".
LedgerStatus = Literal["shown", "rejected"]
CandidateHook = Callable[[GeneratedImage, Path, Verdict, LedgerStatus], Any]
ProgressHook = Callable[["QualityProgress"], Any]


@dataclass
class QualityProgress:
    """A step of the loop, for a progress line in the UI."""

    phase: Literal["generate", "check", "rerender"]
    round: int
    done: int
    total: int


@dataclass
class Candidate:
    """One generated image and everything known about it.

    ``request`` made it; ``full_request`` is its full-quality twin (same seed) when it
    is a screening preview.
    """

    record: CandidateRecord
    image: GeneratedImage
    path: Path
    request: ImageRequest
    full_request: ImageRequest | None = None


@dataclass
class QualityResult:
    """What the UI shows (``shown``), what the ledger stores, and the explanation."""

    shown: list[Candidate]
    candidates: list[Candidate]
    report: QualityReport
    constraints: list[Constraint] = field(default_factory=list)

    @property
    def explanation(self) -> str:
        return self.report.explanation

    @property
    def rejected(self) -> list[Candidate]:
        return [c for c in self.candidates if c.record.status == "rejected"]


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


class QualityLoop:
    """Best-of-N generation with vision checks, prompt fixes and a strict budget.

    ``runner(request) -> (images, paths)`` is an :meth:`ImageRunner.run` whose
    ``on_result`` does NOT display (rejected candidates must stay hidden); show
    ``result.shown`` yourself. ``on_candidate(gen, path, verdict, status)`` is called once
    per image at the end, plain or async, with the ledger's status ``"shown"`` or
    ``"rejected"`` (also when the loop is cancelled: everything made so far, rejected).
    ``device`` picks N when the settings leave it open; ``clock`` is injectable for
    tests. One loop may serve many runs, even concurrently.
    """

    def __init__(
        self,
        checker: VisionChecker,
        runner: Runner,
        settings: QualitySettings | None = None,
        *,
        deriver: ConstraintDeriver | None = None,
        scorer: ImageScorer | None = None,
        device: str = "cpu",
        clock: Callable[[], float] = time.monotonic,
        on_candidate: CandidateHook | None = None,
        on_progress: ProgressHook | None = None,
    ) -> None:
        self.checker = checker
        self.runner = runner
        self.settings = settings or QualitySettings()
        self.deriver = deriver
        self.scorer = scorer
        self.clock = clock
        self.on_candidate = on_candidate
        self.on_progress = on_progress
        self.n = self.settings.candidates or default_candidates(device)

    async def run(
        self,
        spec: PromptSpec,
        constraints: list[Constraint] | None = None,
        *,
        request: ImageRequest | None = None,
    ) -> QualityResult:
        """Make, check and pick images for ``spec`` (see the module docstring).

        ``request`` overrides ``spec.to_image_request()`` (e.g. the person's size); its
        seed, when set, is the first candidate's.
        """
        calls_before = self._calls()
        # 1. capability, constraints
        await self.checker.ensure_vision()
        t0 = self.clock()
        if constraints is None:
            constraints = (
                await self.deriver.derive(spec) if self.deriver else rule_constraints(spec)
            )
        run = _Run(self, spec, list(constraints), (request or spec.to_image_request()).with_seed())
        run.seconds["constraints"] = self.clock() - t0
        try:
            shown = await run.execute()
        except BaseException:
            await self._report_all(run.candidates)  # made images are kept, never shown
            raise
        await self._report_all(run.candidates)
        report = run.report
        calls = self._calls()
        spent = {k: v - calls_before.get(k, 0) for k, v in calls.items()}
        report.llm_calls_by_purpose = {k: v for k, v in spent.items() if v}
        report.llm_calls = sum(report.llm_calls_by_purpose.values())
        report.explanation = explain(report)
        return QualityResult(shown, run.candidates, report, run.constraints)

    async def _report_all(self, candidates: list[Candidate]) -> None:
        if self.on_candidate is None:
            return
        for c in candidates:
            status: LedgerStatus = "shown" if c.record.status == "shown" else "rejected"
            await _maybe_await(self.on_candidate(c.image, c.path, c.record.verdict, status))

    async def progress(
        self, phase: Literal["generate", "check", "rerender"], rnd: int, done: int, total: int
    ) -> None:
        if self.on_progress is not None:
            await _maybe_await(self.on_progress(QualityProgress(phase, rnd, done, total)))

    def _calls(self) -> dict[str, int]:
        counters: list[LLMCallCounter] = [self.checker.counter]
        if self.deriver is not None and self.deriver.counter is not self.checker.counter:
            counters.append(self.deriver.counter)
        total: dict[str, int] = {}
        for counter in counters:
            for k, v in counter.by_purpose.items():
                total[k] = total.get(k, 0) + v
        return total


class _Run:
    """The state of one :meth:`QualityLoop.run`: candidates, budget, report."""

    def __init__(
        self,
        loop: QualityLoop,
        spec: PromptSpec,
        constraints: list[Constraint],
        base: ImageRequest,
    ) -> None:
        self.loop, self.s = loop, loop.settings
        self.constraints = constraints
        self.base = base
        self.budget = Budget(self.s, loop.clock)
        self.candidates: list[Candidate] = []
        self.report = QualityReport(
            language=spec.language,
            constraints=constraints,
            screen=self.s.screen,
            candidates_per_round=loop.n,
        )
        self.seconds = self.report.seconds
        self.screening = self.s.screen != "off"

    async def execute(self) -> list[Candidate]:
        """Steps 2–6 of the module docstring; returns the candidates to show."""
        s, report = self.s, self.report
        round_req = self.base
        notes: list[str] = []  # the fixes that made this round's prompt
        for rnd in range(s.max_rounds):  # 2.-3. rounds of candidates, checks, fixes
            fresh = await self._round(rnd, round_req)
            if not fresh:  # the budget allowed no image at all
                break
            report.rounds = rnd + 1
            report.prompts.append(round_req.prompt)
            report.negatives.append(round_req.negative_prompt)
            if rnd:
                report.fixes.append(notes)
            if any(c.record.verdict.all_passed for c in self.candidates):
                break
            fix = apply_fixes(
                round_req.prompt, round_req.negative_prompt, _failures(fresh, self.constraints)
            )
            notes = fix.notes
            round_req = round_req.model_copy(
                update={"prompt": fix.prompt, "negative_prompt": fix.negative}
            )
        winners = sorted(self.candidates, key=_rank_key)[: s.show]  # 4. rank
        shown = await self._finals(winners) if self.screening else winners  # 5.
        for c in shown:  # 6. statuses and report
            c.record.status = "shown"
        finals_of = {c.record.of_index for c in shown}
        for c in self.candidates:
            if c.record.phase == "preview" and c.record.index in finals_of:
                c.record.status = "preview"
        report.candidates = [c.record for c in self.candidates]
        report.shown = [c.record.index for c in shown]
        report.images_generated = self.budget.images
        passed = any(c.record.verdict.all_passed for c in self.candidates)
        report.stop_reason = "passed" if passed else self.budget.hit or "rounds"
        self.seconds["total"] = self.budget.elapsed + self.seconds.get("constraints", 0.0)
        return shown

    async def _round(self, rnd: int, round_req: ImageRequest) -> list[Candidate]:
        """Generate up to N candidates, then check them all (the VLM loads once)."""
        phase: Literal["candidate", "preview"] = "preview" if self.screening else "candidate"
        budget, n = self.budget, self.loop.n
        fresh: list[Candidate] = []
        for i in range(n):
            # this image, the checks still owed, and (screening) the final renders after
            need = budget.cost.get(phase, 0.0) + budget.cost.get("check", 0.0) * (len(fresh) + 1)
            reserve = 0
            if self.screening:
                reserve = self.s.show
                need += (budget.final_estimate() + budget.cost.get("check", 0.0)) * reserve
            if not budget.allows(need, 1 + reserve):
                break
            seed = (self.base.seed or 0) + len(self.candidates)
            full = round_req.model_copy(update={"seed": seed % (MAX_SEED + 1), "batch_size": 1})
            req = self._preview_request(full) if self.screening else full
            cand = await self._generate(req, phase, rnd)
            if self.screening:
                cand.full_request = full
                budget.final_ratio = _cost(full) / max(_cost(cand.image.request), 1)
            fresh.append(cand)
            await self.loop.progress("generate", rnd, i + 1, n)
        for i, cand in enumerate(fresh):
            await self._check(cand)
            await self.loop.progress("check", rnd, i + 1, len(fresh))
        return fresh

    async def _generate(
        self,
        req: ImageRequest,
        phase: Literal["candidate", "preview", "final"],
        rnd: int,
        of_index: int | None = None,
    ) -> Candidate:
        clock = self.loop.clock
        t0 = clock()
        images, paths = await self.loop.runner(req)
        took = clock() - t0
        self.budget.images += len(images)
        self.budget.seen(phase, took)
        key = "rerender" if phase == "final" else "generate"
        self.seconds[key] = self.seconds.get(key, 0.0) + took
        gen, path = images[0], paths[0]
        record = CandidateRecord(
            index=len(self.candidates),
            round=rnd,
            phase=phase,
            seed=gen.seed,
            path=str(path),
            verdict=Verdict(),
            of_index=of_index,
            duration_s=took,
        )
        cand = Candidate(record, gen, path, req)
        self.candidates.append(cand)
        return cand

    async def _check(self, cand: Candidate) -> None:
        clock = self.loop.clock
        t0 = clock()
        verdict = await self.loop.checker.check(cand.image.image, self.constraints)
        took = clock() - t0
        self.budget.seen("check", took)
        self.seconds["check"] = self.seconds.get("check", 0.0) + took
        if self.loop.scorer is not None:
            t0 = clock()
            verdict.clip_score = await _score(self.loop.scorer, cand.image, cand.request.prompt)
            self.seconds["clip"] = self.seconds.get("clip", 0.0) + clock() - t0
        cand.record.verdict = verdict

    async def _finals(self, winners: list[Candidate]) -> list[Candidate]:
        """Re-render screened winners at full quality with the same seed; a winner whose
        final the budget can't pay for is shown as its preview."""
        shown: list[Candidate] = []
        budget = self.budget
        for i, win in enumerate(winners):
            need = budget.final_estimate() + budget.cost.get("check", 0.0)
            if win.full_request is None or not budget.allows(need):
                shown.append(win)
                continue
            final = await self._generate(
                win.full_request, "final", win.record.round, of_index=win.record.index
            )
            await self._check(final)
            shown.append(final)
            await self.loop.progress("rerender", win.record.round, i + 1, len(winners))
        return shown

    def _preview_request(self, full: ImageRequest) -> ImageRequest:
        """The cheap screening twin of ``full`` (same seed)."""
        if self.s.screen == "fast":
            return full.model_copy(update={"fast": True})
        scale = self.s.screen_scale
        width = min(full.width, max(256, int(full.width * scale) // 8 * 8))
        height = min(full.height, max(256, int(full.height * scale) // 8 * 8))
        steps = min(full.steps, max(8, round(full.steps * 0.5)))
        return full.model_copy(update={"width": width, "height": height, "steps": steps})


def _cost(req: ImageRequest) -> float:
    """Relative render cost: pixels × steps."""
    return float(req.width * req.height * req.steps)


def _failures(fresh: list[Candidate], constraints: list[Constraint]) -> list[Failure]:
    out = [Failure(c) for c in constraints]
    for cand in fresh:
        for r in cand.record.verdict.results:
            if r.passed is False and 0 <= r.index < len(out):
                out[r.index].times += 1
                if r.seen is not None:
                    out[r.index].seen.append(r.seen)
    return [f for f in out if f.times]


def _rank_key(c: Candidate) -> tuple[int, float, int]:
    """Most checks passed, then highest CLIP score, then the earlier candidate."""
    clip = c.record.verdict.clip_score
    score = clip if clip is not None else float("-inf")
    return (-c.record.verdict.passes, -score, c.record.index)


async def _score(scorer: ImageScorer, gen: GeneratedImage, text: str) -> float:
    ascore = getattr(scorer, "ascore", None)
    if ascore is not None:
        return float(await ascore(gen.image, text))
    return float(scorer.score(gen.image, text))
