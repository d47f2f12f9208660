"""The panel's speed preset becomes request overrides; its own fields still win."""

from __future__ import annotations

from assistant.studio.panel import read_panel


def test_presets_set_fast_mode_steps_and_cfg_and_explicit_fields_win() -> None:
    assert read_panel({"preset": "quick"}, "sd15").overrides == {"fast": True}
    assert read_panel({"preset": "balanced"}, "sd15").overrides == {
        "fast": True, "steps": 8, "cfg_scale": 1.5}
    assert read_panel({"preset": "full"}, "sd15").overrides == {"fast": False}
    assert read_panel({"preset": "auto"}, "sd15").overrides == {}
    mine = read_panel({"preset": "balanced", "steps": "4", "fast": True}, "sd15")
    assert mine.overrides == {"fast": True, "steps": 4, "cfg_scale": 1.5}
