"""Best-of-N with automatic checks: make several candidates, show the best, hide the rest.

:meth:`QualityLoop.run` reads as numbered steps (1 here, 2–6 in
:class:`~assistant.quality.run.QualityRun`):

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from assistant.prompting.spec import PromptSpec
from assistant.quality.check import ImageScorer, Verdict, VisionChecker
from assistant.quality.constraints import Constraint, ConstraintDeriver, rule_constraints
from assistant.quality.report import QualityReport, explain
from assistant.quality.run import Candidate, ProgressPhase, QualityRun, Runner
from assistant.quality.settings import QualitySettings, default_candidates, engine_device
from tools.core.engine import GeneratedImage
from tools.core.request import ImageRequest
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

# The ledger's statuses: a screening preview whose final is shown is "rejected" there too
# (hidden); the report keeps the finer "preview".
LedgerStatus = Literal["shown", "rejected"]
CandidateHook = Callable[[GeneratedImage, Path, Verdict, LedgerStatus], Any]
ProgressHook = Callable[["QualityProgress"], Any]


@dataclass
class QualityProgress:
    """A step of the loop, for a progress line in the UI."""

    phase: ProgressPhase
    round: int
    done: int
    total: int


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
        base = (request or spec.to_image_request()).with_seed()
        run = QualityRun(self, spec, list(constraints), base)
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

    async def progress(self, phase: ProgressPhase, rnd: int, done: int, total: int) -> None:
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
