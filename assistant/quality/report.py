"""What the quality loop hands back: a JSON-serialisable report and a short explanation.

:class:`QualityReport` is plain data for the ledger (constraints, every candidate's
verdict and status, rounds, images, LLM calls, seconds per phase). :func:`explain`
turns it into one or two sentences in the person's language about why the other
candidates were dropped ("2 of 4 had 3 women instead of 2").
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from assistant.quality.check import Verdict
from assistant.quality.constraints import Constraint
from assistant.quality.counts import singular
from tools.core.messages import lang_code, msg

__all__ = ["CandidateRecord", "CandidateStatus", "Phase", "QualityReport", "explain"]

CandidateStatus = Literal["shown", "rejected", "preview"]
Phase = Literal["candidate", "preview", "final"]
StopReason = Literal["passed", "rounds", "images", "seconds"]


class CandidateRecord(BaseModel):
    """One generated image: where it is, how it was made and judged, and its fate.

    ``phase``: ``candidate`` (full quality), ``preview`` (screening render) or ``final``
    (a preview re-rendered at full quality with the same seed; ``of_index`` names it).
    ``status``: ``shown``, ``rejected`` or ``preview`` (a screened preview superseded by
    its final render).
    """

    index: int
    round: int
    phase: Phase
    seed: int
    status: CandidateStatus = "rejected"
    path: str
    verdict: Verdict
    of_index: int | None = None
    duration_s: float = 0.0


class QualityReport(BaseModel):
    """Everything the loop did, for the ledger (``report.model_dump_json()``)."""

    language: Literal["en", "ja"] = "en"
    constraints: list[Constraint] = Field(default_factory=list)
    candidates: list[CandidateRecord] = Field(default_factory=list)
    shown: list[int] = Field(default_factory=list, description="indexes of shown candidates")
    candidates_per_round: int = 0
    rounds: int = 0
    prompts: list[str] = Field(default_factory=list, description="positive prompt per round")
    negatives: list[str] = Field(default_factory=list, description="negative prompt per round")
    fixes: list[list[str]] = Field(default_factory=list, description="rules applied per round")
    screen: str = "off"
    images_generated: int = 0
    llm_calls: int = 0
    llm_calls_by_purpose: dict[str, int] = Field(default_factory=dict)
    seconds: dict[str, float] = Field(default_factory=dict, description="time per phase")
    stop_reason: StopReason = "rounds"
    explanation: str = ""

    def checked(self) -> list[CandidateRecord]:
        """The candidates that competed (full-quality candidates or previews)."""
        return [c for c in self.candidates if c.phase != "final"]

    def best_passes(self) -> int:
        shown = [self.candidates[i] for i in self.shown]
        return max((c.verdict.passes for c in shown), default=0)


_STOP = {"seconds": "report_stop_seconds", "images": "report_stop_images"}


def _reasons(report: QualityReport, lang: str) -> list[str]:
    """One clause per failed constraint across the rejected candidates, most common first."""
    checked = report.checked()
    n = len(checked)
    rejected = [c for c in checked if c.status == "rejected"]
    unchecked = sum(1 for c in rejected if c.verdict.error)
    clauses: list[tuple[int, str]] = []
    for i, con in enumerate(report.constraints):
        results = [
            r
            for c in rejected
            if not c.verdict.error
            for r in c.verdict.results
            if r.index == i and r.passed is False
        ]
        if not results:
            continue
        label = con.name()
        if con.kind == "count":
            by_seen = Counter(r.seen for r in results)
            for seen, f in by_seen.most_common():
                # English names the counted noun, Japanese the check's label (see quality.yaml)
                english = lang_code(lang) == "en"
                if seen is None:
                    counted = f"{con.expected} {con.subject}" if english else label
                    text = msg("report_count", lang, f=f, n=n, counted=counted)
                else:
                    noun = singular(con.subject) if seen == 1 else con.subject
                    counted = noun if english else label
                    text = msg("report_count_seen", lang, f=f, n=n, seen=seen,
                               expected=con.expected, counted=counted)
                clauses.append((f, text))
        elif con.kind == "text_free":
            clauses.append((len(results), msg("report_text_free", lang, f=len(results), n=n)))
        else:
            clauses.append(
                (len(results), msg("report_generic", lang, f=len(results), n=n, label=label))
            )
    clauses.sort(key=lambda fc: -fc[0])  # stable: constraint order breaks ties
    if unchecked:
        clauses.append((unchecked, msg("report_unchecked", lang, f=unchecked, n=n)))
    return [text for _, text in clauses]


def explain(report: QualityReport, lang: str | None = None) -> str:
    """A brief, localized account of what was made and why the others were dropped."""
    lang = lang or report.language
    n = len(report.checked())
    k = len(report.constraints)
    if not report.shown or not k:
        return ""
    shown = [report.candidates[i] for i in report.shown]
    if all(c.verdict.all_passed for c in shown):
        head = (
            msg("report_head_single", lang, k=k)
            if n == 1
            else msg("report_head_pass", lang, n=n, s=len(shown), k=k)
        )
    else:
        head = msg("report_head_partial", lang, n=n, p=report.best_passes(), k=k)
    parts = [head]
    reasons = _reasons(report, lang)
    if reasons:
        joined = msg("report_reason_sep", lang).join(reasons)
        parts.append(msg("report_dropped", lang, reasons=joined))
    if report.rounds > 1:
        parts.append(msg("report_rounds", lang, r=report.rounds))
    if report.stop_reason in _STOP:
        parts.append(msg(_STOP[report.stop_reason], lang))
    return msg("report_sentence_sep", lang).join(parts)
