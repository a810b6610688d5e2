"""Committed notebooks carry no outputs (executed copies belong in run folders)."""

import json
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_outputs(path: Path) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    cells = json.loads(path.read_text())["cells"]
    return [
        i
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebook_has_no_outputs(path):
    assert notebook_outputs(path) == [], f"{path.name} has outputs: run nbstripout (make setup installs the filter)"


def test_output_check_detects_an_executed_cell(tmp_path):
    nb = {
        "cells": [
            {"cell_type": "code", "source": "1", "outputs": [], "execution_count": None, "metadata": {}},
            {
                "cell_type": "code",
                "source": "2",
                "execution_count": 3,
                "metadata": {},
                "outputs": [{"output_type": "execute_result", "data": {"text/plain": "2"}, "metadata": {}}],
            },
        ]
    }
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    assert notebook_outputs(path) == [1]


@pytest.mark.parametrize("path", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebook_is_what_the_nbstripout_filter_stores(path):
    """Otherwise every clone with the filter sees the notebook as modified, and each `git status` re-runs the
    filter (slow enough to time out the commit lookup of run folders and reports)."""
    import subprocess
    import sys

    stripped = subprocess.run([sys.executable, "-m", "nbstripout", "-t"], input=path.read_text(), text=True,
                              capture_output=True, check=True).stdout  # fmt: skip
    assert stripped == path.read_text(), f"{path.name}: run `nbstripout notebooks/*.ipynb` before committing"
