"""The layer contract holds, can fail, covers every module; modules stay small.

The contract is ``[tool.importlinter]`` in ``pyproject.toml`` (see ARCHITECTURE.md): layers
from the UI edge down to the prompt data, chainlit only at the UI edge, no cycles between
siblings. Here it is run with the ``lint-imports`` next to this Python, on this checkout
(it must be kept) and on copies with one deliberate violation each (it must break, and
say which contract and which import). All four runs start at once: about 2 s in all.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support import ROOT

PACKAGES = ("assistant", "tools", "vision", "prompts")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]
LAYERS = next(c for c in CONTRACTS if c["type"] == "layers")
CHAINLIT = next(c for c in CONTRACTS if c["type"] == "forbidden")

# --- size limits (STYLE.md: modules under ~400 lines) ----------------------------------
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_FOLDER_MODULES = 12  # .py files in one package folder, its __init__.py not counted
# Known offenders, as "path": size (functions as "path::Class.method"): each may not grow
# past its size, and once within the limit its line goes (a warning says so). None today:
# tools/infotext.py (418 lines), assistant/quality/loop.py (403) and
# DiffusersEngine._run (131) were split in "One clear house".
KNOWN_LONG_MODULES: dict[str, int] = {}
KNOWN_LONG_FUNCTIONS: dict[str, int] = {}
KNOWN_BIG_FOLDERS: dict[str, int] = {}


# --- running lint-imports ------------------------------------------------------------------


class Lint(NamedTuple):
    returncode: int
    output: str  # whitespace collapsed: contract names wrap over lines in the report

    def says(self, text: str) -> bool:
        return " ".join(text.split()) in self.output

    def verdict(self, contract: dict[str, object]) -> str:
        """``KEPT`` or ``BROKEN`` for ``contract``, as the report's summary gives it."""
        for verdict in ("KEPT", "BROKEN"):
            if self.says(f"{contract['name']} {verdict}"):
                return verdict
        raise AssertionError(f"{contract['name']!r} is not in the report:\n{self.output}")


def _upward_import(root: Path) -> None:
    with (root / "tools/core/request.py").open("a") as f:
        f.write("\nimport assistant.ui.render  # deliberate: core importing the UI edge\n")


def _function_local_import(root: Path) -> None:
    with (root / "vision/masks.py").open("a") as f:
        f.write("\n\ndef _deliberate() -> None:\n"
                "    from assistant.chat import conversation  # noqa: F401\n")


def _chainlit_in_tools(root: Path) -> None:
    with (root / "tools/engines/jobs.py").open("a") as f:
        f.write("\nimport chainlit  # deliberate: chainlit below the UI edge\n")


VIOLATIONS: dict[str, Callable[[Path], None]] = {
    "upward": _upward_import,
    "function_local": _function_local_import,
    "chainlit_in_tools": _chainlit_in_tools,
}


def _copy_with(root: Path, violation: Callable[[Path], None]) -> Path:
    """The four packages and pyproject.toml in ``root``, with ``violation`` applied."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    violation(root)
    return root


@pytest.fixture(scope="module")
def lint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Lint]]:
    """``lint-imports`` on this checkout ("checkout") and on each violating copy."""
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the dev extra (import-linter)")
    roots = {"checkout": ROOT}
    for name, violation in VIOLATIONS.items():
        roots[name] = _copy_with(tmp_path_factory.mktemp(name), violation)
    # lint-imports puts its working directory first on sys.path: each run sees its copy.
    procs = {
        name: subprocess.Popen([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=root,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, root in roots.items()
    }
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        results[name] = Lint(proc.returncode, " ".join(out.split()))
    yield results


def test_the_checkout_keeps_every_contract(lint: dict[str, Lint]) -> None:
    report = lint["checkout"]
    assert report.returncode == 0, report.output
    assert [report.verdict(c) for c in CONTRACTS] == ["KEPT"] * len(CONTRACTS)


def test_an_upward_import_breaks_the_layer_contract(lint: dict[str, Lint]) -> None:
    report = lint["upward"]
    assert report.returncode != 0
    assert report.verdict(LAYERS) == "BROKEN"
    assert report.says("tools.core is not allowed to import assistant.ui")
    assert report.says("tools.core.request -> assistant.ui.render")


def test_a_function_local_upward_import_breaks_it_too(lint: dict[str, Lint]) -> None:
    report = lint["function_local"]
    assert report.returncode != 0
    assert report.verdict(LAYERS) == "BROKEN"
    assert report.says("vision is not allowed to import assistant.chat")
    assert report.says("vision.masks -> assistant.chat.conversation")


def test_chainlit_below_the_ui_edge_breaks_the_chainlit_contract(lint: dict[str, Lint]) -> None:
    report = lint["chainlit_in_tools"]
    assert report.returncode != 0
    assert report.verdict(CHAINLIT) == "BROKEN"
    assert report.verdict(LAYERS) == "KEPT"  # an outside package is no layer
    assert report.says("tools is not allowed to import chainlit")
    assert report.says("tools.engines.jobs -> chainlit")


# --- every module is covered ---------------------------------------------------------------


def _python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py")
                  if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _covers(owner: str, module: str) -> bool:
    return module == owner or module.startswith(owner + ".")


def _imports(path: Path) -> list[str]:
    return [ast.unparse(node) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Import | ast.ImportFrom)]


def test_every_module_belongs_to_a_layer() -> None:
    """import-linter checks only the modules its layers name; a module outside all of
    them could import anything. Only the bare roots ``assistant`` and ``tools`` (they
    hold the layers) sit outside, and they import nothing."""
    layers = [name.strip() for layer in LAYERS["layers"] for name in layer.split("|")]
    modules = {_module_name(path): path for path in _python_files()}
    assert [layer for layer in layers if layer not in modules] == []  # no typo'd layer
    outside = {m for m in modules if not any(_covers(layer, m) for layer in layers)}
    assert outside == {"assistant", "tools"}
    for root in outside:
        assert _imports(modules[root]) == [], f"{root}/__init__.py imports, outside any layer"


def test_only_the_ui_edge_may_import_chainlit() -> None:
    sources = CHAINLIT["source_modules"]
    assert CHAINLIT["forbidden_modules"] == ["chainlit"]
    free = {m for m in map(_module_name, _python_files())
            if not any(_covers(source, m) for source in sources)}
    assert {m for m in free if not _covers("assistant.ui", m)} == {"assistant"}


# --- sizes ---------------------------------------------------------------------------------


def _over(found: dict[str, int], known: dict[str, int], limit: int) -> dict[str, int]:
    """Offenders that are new or grew; warns about known ones back within the limit."""
    for name in sorted(set(known) - {n for n, size in found.items() if size > limit}):
        warnings.warn(f"{name} is within the limit now: remove it from the known list",
                      stacklevel=2)
    return {name: size for name, size in found.items()
            if size > max(limit, known.get(name, 0))}


def _function_lengths(path: Path) -> Iterator[tuple[str, int]]:
    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, (child.end_lineno or child.lineno) - child.lineno + 1
                yield from walk(child, name + ".")

    yield from walk(ast.parse(path.read_text()), "")


def test_no_new_module_over_400_lines() -> None:
    lines = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in _python_files()}
    assert _over(lines, KNOWN_LONG_MODULES, MAX_MODULE_LINES) == {}


def test_no_new_function_over_80_lines() -> None:
    lengths = {f"{p.relative_to(ROOT)}::{name}": n
               for p in _python_files() for name, n in _function_lengths(p)}
    assert _over(lengths, KNOWN_LONG_FUNCTIONS, MAX_FUNCTION_LINES) == {}


def test_no_folder_over_12_modules() -> None:
    folders = {p.parent for p in _python_files()}
    counts = {str(f.relative_to(ROOT)): sum(1 for p in f.glob("*.py") if p.name != "__init__.py")
              for f in folders}
    assert _over(counts, KNOWN_BIG_FOLDERS, MAX_FOLDER_MODULES) == {}
