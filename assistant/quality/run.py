"""One run of the quality loop: rounds of candidates, checks and fixes, then the finals.

:class:`QualityRun` is steps 2–6 of :mod:`assistant.quality.loop` for one request: it
owns the candidates made so far, the :class:`~assistant.quality.settings.Budget` that
decides whether the next image may start, and the :class:`QualityReport` it fills in.
It reaches its loop's runner, checker, scorer and settings through :class:`LoopParts`,
which :class:`~assistant.quality.loop.QualityLoop` satisfies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from assistant.prompting.spec import PromptSpec
from assistant.quality.check import ImageScorer, Verdict, VisionChecker
from assistant.quality.constraints import Constraint
from assistant.quality.fixes import Failure, apply_fixes
from assistant.quality.report import CandidateRecord, QualityReport
from assistant.quality.settings import Budget, QualitySettings
from tools.core.engine import GeneratedImage
from tools.core.request import MAX_SEED, ImageRequest

Runner = Callable[[ImageRequest], Awaitable[tuple[list[GeneratedImage], list[Path]]]]
ProgressPhase = Literal["generate", "check", "rerender"]


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


class LoopParts(Protocol):
    """What a run uses of its :class:`~assistant.quality.loop.QualityLoop`."""

    @property
    def runner(self) -> Runner: ...
    @property
    def checker(self) -> VisionChecker: ...
    @property
    def scorer(self) -> ImageScorer | None: ...
    @property
    def settings(self) -> QualitySettings: ...
    @property
    def n(self) -> int: ...
    @property
    def clock(self) -> Callable[[], float]: ...

    async def progress(self, phase: ProgressPhase, rnd: int, done: int, total: int) -> None: ...


class QualityRun:
    """The state of one :meth:`QualityLoop.run <assistant.quality.loop.QualityLoop.run>`:
    candidates, budget, report."""

    def __init__(
        self,
        loop: LoopParts,
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
        """Steps 2–6 of :mod:`assistant.quality.loop`; returns the candidates to show."""
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
