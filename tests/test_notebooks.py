"""The user notebooks: each one runs top to bottom in smoke mode, and git holds them stripped.

Every ``notebooks/*.ipynb`` is executed with nbclient in a fresh ``python3`` kernel whose working
directory is ``notebooks/`` (the notebooks resolve ``../../shared/data`` from there) and whose
environment sets ``RECGYM_SMOKE=1`` (tiny sizes). The kernel imports recgym from this checkout:
the repository root is put first on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
"""Per-cell limit; smoke cells take seconds, the margin is for a loaded CI machine."""


def test_notebooks_exist():
    names = [path.name for path in NOTEBOOKS]
    assert len(names) >= 5, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    # The kernel is a subprocess: it inherits these variables.
    monkeypatch.setenv("RECGYM_SMOKE", "1")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    )
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as err:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # drop the traceback's ANSI colours
        pytest.fail(f"{path.name} failed:\n{plain}", pytrace=False)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_outputs_are_stripped(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} hold outputs or execution counts; strip them "
        "(e.g. `jupyter nbconvert --clear-output --inplace` or nbstripout) before committing"
    )
