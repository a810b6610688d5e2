"""The one papermill runner (make reproduce, make study, the studies' children): a finished step leaves a done
marker and is skipped on a re-run, a failing step leaves a failure report and its executed notebook without
losing the finished steps, and the report step's HTML copy has no input cells."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from aad1lib.notebook_runner import Step, run_notebooks


@pytest.fixture
def probe(tmp_path):
    """A notebook that appends its ``name`` to a log (to count executions), prints, and raises when told to."""
    params = new_code_cell("name: str = ''\nlog: str = ''\nfail: bool = False\npreset: str = ''")
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "with open(log, 'a') as f:\n    f.write(name + '\\n')\nprint(f'hello from {name} on {preset!r}')\n"
        "if fail:\n    raise RuntimeError(f'{name} broke on purpose')"
    )
    nb = new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "probe.ipynb")
    return tmp_path / "probe.ipynb", tmp_path / "executions.log"


def _step(probe, name, fail=False, **kw):
    notebook, log = probe
    return Step(str(notebook), dict(name=name, log=str(log), fail=fail), key=name, **kw)


def _executions(log):
    return log.read_text().split() if log.exists() else []


def test_runner_writes_a_done_marker_naming_what_ran(probe, tmp_path):
    outcome = run_notebooks([_step(probe, "a"), _step(probe, "b")], tmp_path / "out", log=None)
    assert outcome.ok and outcome.ran == ["a", "b"] and outcome.skipped == []
    marker = json.loads((tmp_path / "out" / "b.done.json").read_text())
    assert marker["notebook"] == str(probe[0]) and marker["parameters"]["name"] == "b"
    assert marker["seconds"] > 0 and "commit" in marker and "finished" in marker
    assert (tmp_path / "out" / "b.ipynb").exists() and _executions(probe[1]) == ["a", "b"]


def test_runner_skips_finished_steps_on_rerun_and_reruns_a_changed_one(probe, tmp_path):
    steps = [_step(probe, "a"), _step(probe, "b")]
    run_notebooks(steps, tmp_path / "out", log=None)
    lines = []
    again = run_notebooks(steps, tmp_path / "out", log=lines.append)
    assert again.ran == [] and again.skipped == ["a", "b"] and set(again.seconds) == {"a", "b"}
    assert _executions(probe[1]) == ["a", "b"]  # nothing executed twice
    assert lines[0].startswith("[1/2] a") and "skipped" in lines[0]
    changed = [steps[0], Step(steps[1].notebook, dict(steps[1].parameters, preset="other"), key="b")]
    assert run_notebooks(changed, tmp_path / "out", log=None).ran == ["b"]
    assert _executions(probe[1]) == ["a", "b", "b"]


def test_failing_step_writes_a_failure_report_and_keeps_the_finished_steps(probe, tmp_path):
    folder = tmp_path / "out"
    steps = [_step(probe, "a"), _step(probe, "b", fail=True), _step(probe, "c")]
    lines = []
    outcome = run_notebooks(steps, folder, log=lines.append)
    assert not outcome.ok and outcome.ran == ["a"] and _executions(probe[1]) == ["a", "b"]  # c never ran
    failure = json.loads((folder / "failed.json").read_text())
    assert failure == outcome.failure and failure["step"] == "b" and "broke on purpose" in failure["error"]
    assert failure["executed"] == str(folder / "b.ipynb") and "broke on purpose" in (folder / "b.ipynb").read_text()
    assert any("FAILED" in line and str(folder / "b.ipynb") in line for line in lines)
    assert (folder / "a.done.json").exists() and not (folder / "b.done.json").exists()

    steps[1] = _step(probe, "b")  # fixed: the re-run resumes at b, a stays finished
    again = run_notebooks(steps, folder, log=None)
    assert again.ok and again.skipped == ["a"] and again.ran == ["b", "c"] and not (folder / "failed.json").exists()
    assert _executions(probe[1]) == ["a", "b", "b", "c"]


def test_html_export_has_the_outputs_and_no_input_cells(probe, tmp_path):
    html = tmp_path / "site" / "index.html"
    run_notebooks([_step(probe, "a", html=html)], tmp_path / "out", log=None)
    body = html.read_text()
    assert "hello from a" in body and "broke on purpose" not in body  # the code cell's source is left out


def test_steps_with_one_name_are_rejected_before_any_work(probe, tmp_path):
    with pytest.raises(ValueError, match="distinct names"):
        run_notebooks([_step(probe, "a"), _step(probe, "a")], tmp_path / "out", log=None)
    assert _executions(probe[1]) == []


def test_reproduce_passes_the_preset_to_every_step_and_fails_with_a_failed_step(probe, tmp_path):
    from aad1lib.reproduce import run_steps

    assert run_steps([_step(probe, "a")], "tiny", tmp_path / "out") == 0
    assert "hello from a on 'tiny'" in (tmp_path / "out" / "a.ipynb").read_text()
    assert json.loads((tmp_path / "out" / "timings.json").read_text()).keys() == {"a"}
    assert run_steps([_step(probe, "a"), _step(probe, "b", fail=True)], "tiny", tmp_path / "out") == 1
    assert json.loads((tmp_path / "out" / "failed.json").read_text())["step"] == "b"
