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


_TEXTS: dict[str, dict[str, str]] = {
    "head_pass": {
        "en": "Made {n} candidates; showing the best {s}, which passed all {k} checks.",
        "ja": "候補を{n}枚作り、{k}項目のチェックをすべて満たした{s}枚を表示しています。",
    },
    "head_single": {
        "en": "Checked the image: it passed all {k} checks.",
        "ja": "画像をチェックしました。{k}項目すべてを満たしています。",
    },
    "head_partial": {
        "en": "Made {n} candidates; none passed every check, so this is the closest "
        "({p} of {k} checks).",
        "ja": "候補を{n}枚作りましたが、すべてを満たすものがなかったため、最も近いもの"
        "（{k}項目中{p}項目）を表示しています。",
    },
    "dropped": {"en": "Dropped: {reasons}.", "ja": "除外した理由: {reasons}。"},
    "sep": {"en": "; ", "ja": "、"},
    "count_seen": {
        "en": "{f} of {n} had {seen} {subject} instead of {expected}",
        "ja": "{n}枚中{f}枚は「{label}」の数が違いました（{expected}ではなく{seen}）",
    },
    "count": {
        "en": "{f} of {n} didn't show exactly {expected} {subject}",
        "ja": "{n}枚中{f}枚は「{label}」の数が違いました",
    },
    "text_free": {
        "en": "{f} of {n} contained text",
        "ja": "{n}枚中{f}枚に文字が入っていました",
    },
    "generic": {
        "en": "{f} of {n} missed “{label}”",
        "ja": "{n}枚中{f}枚は「{label}」を満たしていませんでした",
    },
    "unchecked": {
        "en": "{f} of {n} couldn't be checked",
        "ja": "{n}枚中{f}枚はチェックできませんでした",
    },
    "rounds": {
        "en": "I adjusted the prompt and tried again ({r} rounds).",
        "ja": "プロンプトを調整して作り直しました（{r}回）。",
    },
    "stop_seconds": {
        "en": "Stopped early at the time limit.",
        "ja": "時間の上限に達したため途中で止めました。",
    },
    "stop_images": {
        "en": "Stopped early at the image limit.",
        "ja": "枚数の上限に達したため途中で止めました。",
    },
}


def _t(key: str, lang: str, **values: object) -> str:
    return _TEXTS[key]["ja" if lang == "ja" else "en"].format(**values)


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
                if seen is None:
                    text = _t(
                        "count",
                        lang,
                        f=f,
                        n=n,
                        expected=con.expected,
                        subject=con.subject,
                        label=label,
                    )
                else:
                    subject = singular(con.subject) if seen == 1 else con.subject
                    text = _t(
                        "count_seen",
                        lang,
                        f=f,
                        n=n,
                        seen=seen,
                        subject=subject,
                        expected=con.expected,
                        label=label,
                    )
                clauses.append((f, text))
        elif con.kind == "text_free":
            clauses.append((len(results), _t("text_free", lang, f=len(results), n=n)))
        else:
            clauses.append((len(results), _t("generic", lang, f=len(results), n=n, label=label)))
    clauses.sort(key=lambda fc: -fc[0])  # stable: constraint order breaks ties
    if unchecked:
        clauses.append((unchecked, _t("unchecked", lang, f=unchecked, n=n)))
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
            _t("head_single", lang, k=k)
            if n == 1
            else _t("head_pass", lang, n=n, s=len(shown), k=k)
        )
    else:
        head = _t("head_partial", lang, n=n, p=report.best_passes(), k=k)
    parts = [head]
    reasons = _reasons(report, lang)
    if reasons:
        parts.append(_t("dropped", lang, reasons=_t("sep", lang).join(reasons)))
    if report.rounds > 1:
        parts.append(_t("rounds", lang, r=report.rounds))
    if report.stop_reason in ("images", "seconds"):
        parts.append(_t(f"stop_{report.stop_reason}", lang))
    return ("" if lang == "ja" else " ").join(parts)
