"""The quality evaluation script runs end to end in its dry-run mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import quality_eval


def test_dry_run_reports_single_shot_vs_best_of_n(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    argv = ["--dry-run", "--limit", "2", "--candidates", "3", "--json", str(out)]
    assert quality_eval.main(argv) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    rows = data["requests"]
    assert [r["request"] for r in rows] == [
        "two women playing beach volleyball on a sunny beach",
        "二人の女性が晴れたビーチでビーチバレーをしている写真",
    ]
    assert [r["language"] for r in rows] == ["en", "ja"]
    for row in rows:
        report = row["report"]
        assert report["constraints"][0]["expected"] == 2  # "two women" / 「二人の女性」
        assert row["images"] == report["images_generated"] >= 3
        assert row["llm_calls"] == 1 + len(report["candidates"])  # constraints + one check each
        assert row["best_passes"] >= row["single_passes"]
    summary = data["summary"]
    assert summary["requests"] == 2 and summary["best_pass_rate"] >= summary["single_pass_rate"]
    assert data["meta"]["dry_run"] and data["meta"]["quality"]["candidates"] == 3
    printed = capsys.readouterr().out
    assert "pass rate: single-shot" in printed and "二人の女性" in printed


def test_the_real_path_imports_no_test_code() -> None:
    source = Path(quality_eval.__file__).read_text(encoding="utf-8")
    assert "tests." not in source.replace("quality_dry_run", "")
