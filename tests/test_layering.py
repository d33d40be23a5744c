"""Layers point one way: agents -> rewards -> recgym. recgym never imports the other two."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_import_linter_contracts():
    lint = subprocess.run(
        [sys.executable, "-m", "importlinter.cli", "--config", str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if "No module named" in lint.stderr:
        pytest.skip("import-linter is not installed")
    assert lint.returncode == 0, lint.stdout + lint.stderr
