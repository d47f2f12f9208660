"""EGAKI_OFFLINE=1: the whole chat → image flow makes no outbound connection at all.

The real app runs with a socket guard (``tests/support/netguard/sitecustomize.py``) that
refuses and logs any DNS lookup of a non-local name and any non-loopback connect. The image comes
from the real diffusers engine (tiny local pipeline), so the hub path is exercised too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.app_process import AppProcess, app_env, chat_client, guarded_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.tiny_pipelines import TinyModels
from tools.infotext.png import read_png_parameters

pytestmark = pytest.mark.slow
SPEC = {"subject": "a lighthouse", "setting": "rocky coast", "lighting": "dusk",
        "style": "oil painting", "width": 512, "height": 512, "steps": 20, "cfg_scale": 7,
        "sampler": "Euler a"}


def test_guard_really_catches_outbound_connections(tmp_path: Path) -> None:
    """The guard itself must be able to fail, or the offline test proves nothing."""
    log = tmp_path / "net.log"
    code = (
        "import socket\n"
        "for target in (('93.184.215.14', 80), ('example.com', 80)):\n"
        "    try: socket.create_connection(target, timeout=1)\n"
        "    except OSError: pass\n"
        "socket.create_connection(('127.0.0.1', 9), timeout=1) if False else None\n"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **guarded_env(log)},
                   check=True, timeout=60)
    text = log.read_text()
    assert "93.184.215.14" in text and "example.com" in text


async def test_offline_full_flow_makes_no_outbound_connection(
    tmp_path: Path, tiny_models: TinyModels, ollama: FakeOllama
) -> None:
    log = tmp_path / "net.log"
    env = app_env(
        tmp_path / "data", ollama, tiny_models,
        **guarded_env(log),
        # The CPU runtime users get by default: OpenVINO, whose pip package would send
        # telemetry unless blocked. "CI" off and a fresh HOME (no consent file) make
        # it try, so a leak would show in the log.
        EGAKI_CPU_RUNTIME="openvino",
        CI="",
        HOME=str(tmp_path / "home"),
    )
    with AppProcess(env) as app:
        async with chat_client(app) as client:
            await client.wait_text("GO")
            await client.sio.emit("chat_settings_change", {"steps": "4", "sampler": "Euler"})
            ollama.enqueue(Reply(data=SPEC))
            await client.send("GO")
            await client.wait_for(lambda c: c.count("element") >= 1, timeout=120)
            caption = await client.wait_text("**Seed**")
            assert "4 steps" in caption and "Euler" in caption
            assert "GiB RAM" in caption  # time and peak memory of this request
            said = [d.get("output", "") for e, d in client.events
                    if e in ("new_message", "update_message") and isinstance(d, dict)]
            assert any("Loading the image model" in t for t in said)  # load progress
            assert any("Drawing" in t for t in said)  # step progress (status is updated)
            assert any("OpenVINO" in t for t in said)  # converted for this CPU, offline
        [png] = (app.data_dir / "images").glob("*.png")
        assert "Steps: 4, Sampler: Euler, " in (read_png_parameters(png) or "")
        assert "Traceback" not in app.log(), app.log()
    assert not log.exists() or log.read_text() == "", log.read_text()
