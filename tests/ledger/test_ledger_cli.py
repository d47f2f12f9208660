"""``egaki ledger …`` in a terminal: search, show, export, reconcile, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.ui.cli import main
from tests.support.app_process import guarded_env
from tests.support.ledger_helpers import make_ledger, req, runner_for
from tools.engines.fake import FakeEngine
from tools.infotext.png import read_png_parameters, save_png
from tools.ledger.types import RecordContext


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with three recorded images; the CLI finds it through EGAKI_* variables."""
    data = tmp_path / "data"
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("EGAKI_DATA_DIR", str(data))
    monkeypatch.setenv("EGAKI_EMBEDDER", "hash")
    monkeypatch.delenv("EGAKI_CHROMA_URL", raising=False)
    with make_ledger(data) as ledger:
        runner = runner_for(ledger, thread_id="t1")
        for prompt, seed in (("a red fox in snow", 1), ("a bowl of ramen", 2),
                             ("a fox cub sleeping", 3)):
            runner.run_sync(req(prompt, seed=seed), context=RecordContext(user_words=prompt))
    return data


def ids_by_prompt(data: Path) -> dict[str, str]:
    with make_ledger(data) as ledger:
        return {r.request.prompt: r.id for r in ledger.recent(10)}


def test_search_lists_ids_scores_and_paths(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ledger", "search", "fox", "in", "snow", "-k", "2"]) == 0
    out = capsys.readouterr().out
    fox = ids_by_prompt(data)["a red fox in snow"]
    assert out.splitlines()[0].startswith(f"#{fox}  ")
    assert out.count("\n    a ") == 2 and "ramen" not in out
    assert str(data / "images") in out


def test_show_prints_everything_and_unknown_ids_say_so(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fox = ids_by_prompt(data)["a red fox in snow"]
    assert main(["ledger", "show", f"#{fox}"]) == 0
    out = capsys.readouterr().out
    assert f"#{fox}" in out and "seed 1" in out and "thread      t1" in out
    assert "A1111 parameters:\na red fox in snow\nSteps: 2" in out

    assert main(["ledger", "show", "deadbeef"]) == 1
    err = capsys.readouterr().err
    assert "no image #deadbeef in the ledger" in err
    assert main(["ledger", "export", "nonsense"]) == 1
    assert "no image #nonsense" in capsys.readouterr().err


def test_export_a1111_exactly_and_json_for_all(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = ids_by_prompt(data)
    fox = ids["a red fox in snow"]
    assert main(["ledger", "export", fox]) == 0
    with make_ledger(data) as ledger:
        png = ledger.get(fox).path
    assert capsys.readouterr().out == f"{read_png_parameters(png)}\n"  # pastes into A1111

    out = tmp_path / "all.json"
    assert main(["ledger", "export", "--format", "json", "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert [r["request"]["prompt"] for r in records] == [
        "a red fox in snow", "a bowl of ramen", "a fox cub sleeping"]  # oldest first
    assert "Wrote 3 record(s)" in capsys.readouterr().err

    assert main(["ledger", "export", ids["a bowl of ramen"], "--format", "json"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["seed"] == 2 and one["user_words"] == "a bowl of ramen"

    assert main(["ledger", "export", fox, ids["a bowl of ramen"]]) == 0
    both = capsys.readouterr().out
    assert both.startswith(f"### #{fox} {png}\na red fox in snow") and "\n\n### #" in both


def test_reconcile_and_recent(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stray = FakeEngine().generate(req("a lantern festival", seed=9))[0]
    save_png(stray, data / "images" / "from-another-machine.png")
    assert main(["ledger", "reconcile"]) == 0
    assert "1 added from PNGs" in capsys.readouterr().out
    assert main(["ledger", "recent", "-n", "1"]) == 0
    assert "a lantern festival" in capsys.readouterr().out


def test_settings_command_still_works(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["embedder"] == "hash" and shown["chroma_url"] == ""


@pytest.mark.slow
def test_cli_search_without_ollama_falls_back_and_stays_on_loopback(
    data: Path, tmp_path: Path
) -> None:
    log = tmp_path / "net.log"
    env = {
        **os.environ,
        **guarded_env(log),
        "EGAKI_DATA_DIR": str(data),
        "EGAKI_EMBEDDER": "ollama",
        "EGAKI_OLLAMA_HOST": "http://127.0.0.1:9",  # nothing listens: Ollama is "down"
    }
    exe = shutil.which("egaki") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "assistant.ui.cli"]
    done = subprocess.run([*cmd, "ledger", "search", "fox"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "note: Matching words only: Can't reach Ollama" in done.stderr
    assert "a red fox in snow" in done.stdout and "a fox cub sleeping" in done.stdout
    assert not log.exists() or log.read_text() == ""
