"""Notebook parameters: unknown names and wrong types are refused (papermill itself only warns)."""

from pathlib import Path

import papermill
import pytest

from aad1lib.notebook import UnknownParameterError, check_parameters

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _namespace(**values):
    ns = {"__annotations__": {"preset": str, "steps": int | None, "lr": float}, "preset": "tiny", "steps": None,
          "lr": 1e-3, "In": [], "_i1": "x", "print": print}  # fmt: skip
    ns.update(values)
    return ns


def test_declared_parameters_pass_and_ints_become_floats():
    ns = _namespace(lr=1)
    assert check_parameters(ns) == {"preset": "tiny", "steps": None, "lr": 1.0}
    assert isinstance(ns["lr"], float)


def test_unknown_parameter_is_rejected_with_the_allowed_names():
    with pytest.raises(UnknownParameterError, match=r"\['lamda'\].*allowed: \['lr', 'preset', 'steps'\]"):
        check_parameters(_namespace(lamda=20.0))


def test_wrong_type_is_rejected_naming_the_parameter():
    with pytest.raises(ValueError, match="steps must be an integer"):
        check_parameters(_namespace(steps="ten"))


def test_teacher_notebook_refuses_unknown_parameter_before_training(tmp_path):
    with pytest.raises(papermill.PapermillExecutionError, match="unknown notebook parameter"):
        papermill.execute_notebook(
            NOTEBOOKS / "00_teacher.ipynb", tmp_path / "out.ipynb", parameters={"stepz": 3}, cwd=NOTEBOOKS,
            progress_bar=False, kernel_name="python3",
        )  # fmt: skip
