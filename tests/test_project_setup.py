"""The promises of the README and the lock: two commands, CI runs the test one, full pins."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.support import ROOT


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[_norm(name)] = version
    return pins


def test_lock_pins_every_declared_dependency_exactly() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = _pins()
    for req in declared:
        name = _norm(re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0])
        assert name in pins, f"{name} is declared but not pinned in constraints.txt"
    assert pins["torch"] == "2.13.0"  # no local '+cpu' suffix: users get their platform build
    assert all(re.fullmatch(r"[\w.!+]+", v) for v in pins.values())


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Set up (two commands)")[1].split("```")[1]
    commands = [ln.split("#")[0].strip() for ln in block.splitlines()[1:] if ln.strip()]
    assert commands == ["python3 bootstrap.py run", "python3 bootstrap.py test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 bootstrap.py test" in ci


def test_chainlit_config_is_private_and_localised() -> None:
    config = tomllib.loads((ROOT / ".chainlit" / "config.toml").read_text())
    assert config["UI"]["name"] == "Egaki"
    assert "*" not in config["project"]["allow_origins"]
    accept = config["features"]["spontaneous_file_upload"]["accept"]
    assert set(accept) == {"image/png", "image/jpeg", "image/webp"}
    for name in ("chainlit.md", "chainlit_ja.md", "chainlit_ja-JP.md"):
        assert (ROOT / name).read_text().strip()
    assert (ROOT / ".chainlit" / "translations" / "ja.json").exists()


def test_cli_sets_private_environment_before_chainlit_loads() -> None:
    from assistant.ui.cli import PRIVATE_ENV

    assert PRIVATE_ENV["HF_HUB_DISABLE_TELEMETRY"] == "1"
    assert PRIVATE_ENV["ANONYMIZED_TELEMETRY"] == "False"


def test_chainlit_works_inside_the_data_dir_not_the_source_tree(tmp_path: Path) -> None:
    from assistant.ui.cli import prepare_app_root
    from tools.core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    root = prepare_app_root(settings)
    assert root == tmp_path / "app"
    assert (root / ".chainlit" / "config.toml").read_text() == (
        ROOT / ".chainlit" / "config.toml"
    ).read_text()
    assert (root / ".chainlit" / "translations" / "ja.json").exists()
    assert (root / "chainlit_ja-JP.md").exists()


def test_chainlit_lazy_getattr_answers_attribute_error() -> None:
    """pickle (and so torch.compile's cache) probes modules; KeyError would crash it."""
    import chainlit

    from assistant.ui import compat as chainlit_compat  # noqa: F401

    assert getattr(chainlit, "no_such_thing", None) is None
    assert chainlit.Message.__name__ == "Message"  # the lazy imports still work
