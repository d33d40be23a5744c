"""Layers point one way: agents -> rewards -> recgym. recgym never imports the other two."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _imported_roots(package: str) -> set[str]:
    roots = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize(
    ("package", "forbidden"), [("recgym", {"rewards", "agents"}), ("rewards", {"agents"})]
)
def test_lower_layers_never_import_upper_ones(package, forbidden):
    assert not (_imported_roots(package) & forbidden), (
        f"{package} imports {_imported_roots(package) & forbidden}; layers are "
        "agents -> rewards -> recgym"
    )


def test_importing_recgym_loads_no_upper_layer():
    code = "import sys, recgym; print(sorted(m for m in ('rewards', 'agents') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _lint_imports(config: Path) -> subprocess.CompletedProcess:
    # `python -m importlinter.cli` runs nothing (the module has no __main__ guard): call the
    # console script's function and hand back its exit code.
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, cwd=ROOT
    )


def test_import_linter_contracts():
    pytest.importorskip("importlinter")
    lint = _lint_imports(ROOT / "pyproject.toml")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "4 kept, 0 broken" in lint.stdout, lint.stdout


def test_import_linter_catches_a_broken_contract(tmp_path):
    """The contract test above can fail: the layers reversed are reported broken."""
    pytest.importorskip("importlinter")
    config = tmp_path / ".importlinter"
    config.write_text(
        "[importlinter]\nroot_packages =\n    recgym\n    rewards\n\n"
        "[importlinter:contract:reversed]\nname = reversed\ntype = layers\n"
        "layers =\n    recgym\n    rewards\n"
    )
    lint = _lint_imports(config)
    assert lint.returncode == 1 and "0 kept, 1 broken" in lint.stdout, lint.stdout + lint.stderr


def test_every_agents_core_module_is_under_the_core_contract():
    """A new flat module of agents/ must not slip past the core -> baselines/experiments rule."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    core = next(c for c in contracts["contracts"] if c["name"].startswith("The agents core"))
    flat = {f"agents.{p.stem}" for p in (ROOT / "agents").glob("*.py") if p.stem != "__init__"}
    core_packages = {"agents.distributed"}  # core code in a folder: under the rule as a whole
    assert set(core["source_modules"]) == flat | core_packages
    packages = {f"agents.{p.parent.name}" for p in (ROOT / "agents").glob("*/__init__.py")}
    assert packages == {"agents.baselines", "agents.experiments"} | core_packages


CYCLES = """
import sys, grimp
graph = grimp.build_graph(sys.argv[1], exclude_type_checking_imports=True)
for module in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(module)):
        if imported != module and graph.chain_exists(importer=imported, imported=module):
            print(module, imported)
"""


def _import_cycles(package: str, path: Path = ROOT) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", CYCLES, package],
        capture_output=True, text=True, check=True, cwd=path,
        env={**os.environ, "PYTHONPATH": str(path)},
    )  # fmt: skip
    return out.stdout.splitlines()


@pytest.mark.parametrize("package", ["recgym", "rewards", "agents"])
def test_no_module_imports_one_that_imports_it_back(package):
    pytest.importorskip("grimp")
    assert _import_cycles(package) == []


def test_the_cycle_check_finds_a_circle(tmp_path):
    pytest.importorskip("grimp")
    pkg = tmp_path / "circle"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "env.py").write_text("from circle import dynamics\n")
    (pkg / "dynamics.py").write_text("from circle.env import EnvConfig\n")
    assert _import_cycles("circle", tmp_path) == [
        "circle.dynamics circle.env",
        "circle.env circle.dynamics",
    ]
