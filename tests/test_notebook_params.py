"""Notebook parameters: unknown names and wrong types are refused (papermill itself only warns);
`papermill --help-notebook` shows every one; each maps to a config key through one table."""

import ast
import json
import re
from pathlib import Path
from typing import Optional

import papermill
import pytest
from click.testing import CliRunner
from papermill.cli import papermill as papermill_cli

from aad1lib.config import ConfigError, apply_override, load_preset
from aad1lib.notebook import (
    NOTEBOOK_KEYS,
    UnknownParameterError,
    check_parameters,
    notebook_keys,
    preset_overrides,
    preset_value,
    with_preset_values,
)

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


# ---- papermill --help-notebook shows every parameter; the parameter -> config table ------------------------------
NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
DEMO_VALUE = re.compile(r"\(demo: (.+)\)$")  # the help's last words, for a parameter whose None is the preset's


def _parameters_cell(path: Path) -> dict[str, ast.stmt]:
    """``{name: statement}`` of every name the notebook's parameters cell assigns, in order."""
    cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged parameters"
    names = {}
    for node in ast.parse("".join(cells[0]["source"])).body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
        names.update({target.id: node for target in targets})
    return names


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.name)
def test_help_notebook_shows_every_parameter_with_type_default_and_help(path):
    """papermill's parser reads one line per parameter, `name: type = default  # help`: `int | None`, a default
    over several lines or a second `=` on the line (also in the help) drop the parameter from the help."""
    declared = _parameters_cell(path)
    shown = papermill.inspect_notebook(str(path))
    assert list(shown) == list(declared), f"{path.name}: --help-notebook lists {list(shown)}"
    output = CliRunner().invoke(papermill_cli, ["--help-notebook", str(path)]).output
    for name, node in declared.items():
        param = shown[name]
        assert isinstance(node, ast.AnnAssign), f"{path.name}: {name} has no type annotation"
        assert param["inferred_type_name"] == ast.unparse(node.annotation), name
        assert ast.literal_eval(param["default"]) == ast.literal_eval(node.value), f"{name}: {param['default']}"
        assert param["help"], f"{path.name}: {name} has no help comment"
        assert "\n" not in param["help"] and not param["help"].startswith("type:"), name
        assert f"  {name}: {param['inferred_type_name']} (default {param['default']})" in output, name


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.name)
def test_every_parameter_maps_to_a_config_key_or_is_notebook_only(path):
    keys = notebook_keys(path)
    assert set(keys) == set(_parameters_cell(path)), f"{path.name}: NOTEBOOK_KEYS and the parameters cell differ"
    cfg = load_preset("tiny")
    for name, key in keys.items():
        if isinstance(key, str):
            apply_override(cfg, key, preset_value(path, name, cfg))  # a real key (ConfigError otherwise)
        else:
            assert key is None or callable(key), f"{path.name}: {name} -> {key!r}"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.name)
def test_help_states_the_demo_presets_value_of_each_preset_default(path):
    """A parameter whose None stands for the preset's value says which value that is on `demo`, and that value is
    what `load_preset("demo")` holds (so the help cannot go stale when demo.yaml changes)."""
    demo = load_preset("demo")
    shown = papermill.inspect_notebook(str(path))
    for name, key in notebook_keys(path).items():
        param, stated = shown[name], DEMO_VALUE.search(shown[name]["help"])
        if key is None:
            assert stated is None, f"{path.name}: {name} is notebook-only; its help states a demo value"
            continue
        assert param["default"] == "None", f"{path.name}: {name} follows the preset, its default must be None"
        assert stated, f"{path.name}: {name}'s help must end with (demo: <the value on the demo preset>)"
        assert ast.literal_eval(stated.group(1)) == preset_value(path, name, demo), f"{path.name}: {name}"
        named = re.search(r"preset's (\w[\w.]*)", param["help"])
        if isinstance(key, str) and named and named.group(1) != "value":
            assert named.group(1) == key, f"{path.name}: {name}'s help names {named.group(1)}, it overrides {key}"


def test_preset_overrides_takes_the_config_parameters_that_are_not_none():
    params = {"preset": "tiny", "init_from": "latest", "steps": None, "lam": 5, "disc_logit": "frame",
              "train_disc_backbone": False, "log_every": 1, "seed": 3, "run_name": "x"}  # fmt: skip
    overrides = preset_overrides("03_adversarial", params)
    assert overrides == {"stage3.lam": 5, "stage3.disc_logit": "frame", "stage3.train_disc_backbone": False,
                         "train.log_every": 1, "seed": 3}  # fmt: skip
    cfg = load_preset("tiny", overrides)
    assert (cfg.stage3.lam, cfg.stage3.steps, cfg.train.log_every, cfg.seed) == (5.0, 4, 1, 3)
    assert preset_overrides("notebooks/00_teacher.ipynb", {"preset": "demo", "lr": 1e-3}) == {"teacher.lr": 1e-3}
    assert preset_overrides("07_report", {"preset": "tiny", "sample_clips": 2}) == {}


def test_preset_overrides_refuses_a_parameter_missing_from_the_table_and_an_unknown_notebook():
    with pytest.raises(UnknownParameterError, match=r"03_adversarial: parameter\(s\) \['lamda'\] missing"):
        preset_overrides("03_adversarial", {"lamda": 20.0})
    with pytest.raises(ConfigError, match="unknown notebook '99_nope'"):
        preset_overrides("99_nope.ipynb", {})


def test_with_preset_values_fills_the_study_defaults_from_the_preset():
    tiny, demo = load_preset("tiny"), load_preset("demo")
    params = {"preset": "tiny", "seeds": None, "num_clips": None, "steps": None, "max_parallel": None}
    assert with_preset_values("04_discriminator_ablation", params, tiny) == dict(params, seeds=[0], num_clips=4)
    assert with_preset_values("05_lambda_sweep", dict(params, sigmas=None), demo) == dict(
        params, seeds=[0, 1, 2], num_clips=8, sigmas=[0.01]
    )
    assert with_preset_values("04_discriminator_ablation", dict(params, seeds=[7]), tiny)["seeds"] == [7]
    assert set(NOTEBOOK_KEYS) == {p.stem for p in NOTEBOOK_PATHS}


def test_optional_annotations_as_the_notebooks_write_them():
    hints = {"lam": Optional[float], "seeds": Optional[list[int]]}  # noqa: UP045 - papermill reads these
    ns = {"__annotations__": hints, "lam": 20, "seeds": None}
    assert check_parameters(ns) == {"lam": 20.0, "seeds": None}
    with pytest.raises(ValueError, match="lam must be a number"):
        check_parameters(dict(ns, lam="high"))
