"""Study children and executors: a failed child is reported and the sweep goes on, finished children are
skipped on a re-run, submitit's executors run the same children, and a configuration two studies share is
one child."""

import json
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from aad1lib.run_folder import RunFolder
from aad1lib.study.children import Child, NotebookStep, read_manifest, write_manifest
from aad1lib.study.designs import (
    WARMUP_LABELS,
    discriminator_ablation,
    lambda_sweep,
    main_table_seeds,
    warmup_ablation,
)
from aad1lib.study.executor import run_children


@pytest.fixture
def probe_notebook(tmp_path):
    """A one-cell notebook: appends its value to a log (to count executions) and raises when told to."""
    params = new_code_cell("value: int = 0\nfail: bool = False\nlog: str = ''")
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "with open(log, 'a') as f:\n    f.write(f'{value}\\n')\n"
        "if fail:\n    raise RuntimeError(f'child {value} broke on purpose')"
    )
    nb = new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    return path


def _children(probe, tmp_path, fail_value=1):
    log = tmp_path / "executions.log"
    return [
        Child(
            f"child-{v}",
            (NotebookStep(str(probe), dict(value=v, fail=v == fail_value, log=str(log))),),
            labels={"value": v},
            studies_root=str(tmp_path / "studies"),
        )  # fmt: skip
        for v in range(3)
    ], log


def _executions(log):
    return sorted(int(x) for x in log.read_text().split()) if log.exists() else []


def test_failed_child_is_reported_and_the_sweep_goes_on_then_rerun_skips_finished(probe_notebook, tmp_path):
    children, log = _children(probe_notebook, tmp_path)
    report = run_children(children, "local", progress=False)
    assert report.ran == ["child-0", "child-2"] and report.skipped == []
    assert list(report.failed) == ["child-1"] and "broke on purpose" in report.failed["child-1"]
    failure = json.loads((children[1].folder / "failed.json").read_text())
    assert failure["notebook"] == "probe" and "broke on purpose" in failure["error"]
    assert children[0].executed(0).exists() and children[0].status()["state"] == "done"
    assert _executions(log) == [0, 1, 2]

    again = run_children(children, "local", progress=False)  # resumes: only the failed child runs again
    assert again.skipped == ["child-0", "child-2"] and again.ran == [] and list(again.failed) == ["child-1"]
    assert _executions(log) == [0, 1, 1, 2]


@pytest.mark.parametrize("executor", ["debug", "submitit-local"])
def test_submitit_executors_run_children_and_report_failures(probe_notebook, tmp_path, executor):
    children, log = _children(probe_notebook, tmp_path)
    report = run_children(children, executor, progress=False)
    assert sorted(report.ran) == ["child-0", "child-2"]
    assert list(report.failed) == ["child-1"] and "broke on purpose" in report.failed["child-1"]
    assert _executions(log) == [0, 1, 2]
    assert children[2].status()["state"] == "done"


def test_slurm_jobs_carry_the_requested_resources(tmp_path, monkeypatch):
    """No cluster here: a stand-in ``srun`` lets submitit build the sbatch script it would submit."""
    from aad1lib.study.executor import SlurmOptions, make_submitter

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    options = SlurmOptions(partition="gpu", gpus_per_node=8, cpus_per_task=32, timeout_min=120, mem_gb=400,
                           additional={"account": "video"})  # fmt: skip
    script = make_submitter("slurm", tmp_path / "submitit", options)._executor._make_submission_file_text("x", "u")
    for line in ["--partition=gpu", "--gpus-per-node=8", "--cpus-per-task=32", "--time=120", "--mem=400GB",
                 "--account=video"]:  # fmt: skip
        assert f"#SBATCH {line}" in script


def test_unknown_executor_and_duplicate_children_are_rejected_before_any_work(probe_notebook, tmp_path):
    children, log = _children(probe_notebook, tmp_path)
    with pytest.raises(ValueError, match="unknown executor 'slurmm'"):
        run_children(children, "slurmm", progress=False)
    with pytest.raises(ValueError, match="distinct names"):
        run_children([children[0], children[0]], "local", progress=False)
    assert not log.exists()


def test_manifest_round_trip(probe_notebook, tmp_path):
    children, _ = _children(probe_notebook, tmp_path)
    path = write_manifest(tmp_path / "studies" / "probe-tiny.json", {"seeds": [0, 1]}, children)
    meta, loaded = read_manifest(path)
    assert meta["seeds"] == [0, 1] and loaded == children


def _fake_run(root, name, stage, run_name=None, started="2026-01-01 00:00:00", **finished):
    path = root / name
    path.mkdir(parents=True)
    info = {"stage": stage, "preset": "tiny", "name": run_name or name, "started": started}
    (path / "run.json").write_text(json.dumps(info))
    (path / "finished.json").write_text(json.dumps(dict(finished, stage=stage)))
    return RunFolder.open(path)


def test_children_are_named_by_their_parameters_and_shared_between_studies(tmp_path):
    stage1 = _fake_run(tmp_path, "stage1-tiny-a", "stage1")
    stage2 = _fake_run(tmp_path, "stage2-tiny-a", "stage2", stage1_run=str(stage1.path))
    kw = dict(runs_root=tmp_path, studies_root=tmp_path / "studies")
    ablation = discriminator_ablation("tiny", stage2, [0, 1], **kw)
    sweep = lambda_sweep("tiny", stage2, [0.0, 20.0], [0, 1], **kw)
    warmup = warmup_ablation("tiny", stage2, [0, 1], **kw)
    assert len({c.name for c in ablation}) == 8 and len({c.name for c in sweep}) == 4
    # AAD-1's D at the preset's λ is one child in all three studies (it trains once)
    ours = {c.name for c in ablation if c.labels["D attention"] == "bidirectional" and c.labels["D logit"] == "video"}
    assert ours == {c.name for c in sweep if c.labels["λ"] == 20.0}
    assert ours == {c.name for c in warmup if c.labels["init"].startswith("Stage II")}
    # no warm-up = the same Stage III, started from the Stage I run
    cold = [c for c in warmup if c.labels["init"].startswith("Stage I ")]
    assert {c.steps[0].parameters["init_from"] for c in cold} == {str(stage1.path.resolve())}
    # a changed knob is another child; every child's runs are study runs (never "latest")
    other = lambda_sweep("tiny", stage2, [20.0], [0], steps=7, **kw)[0]
    assert other.name not in ours and other.steps[0].parameters["steps"] == 7
    assert all(c.name.startswith("study-") for c in ablation + sweep + warmup)
    evaluate = ablation[0].steps[1]
    assert evaluate.notebook == "06_evaluate" and evaluate.parameters["runs"] == [ablation[0].run_path]


def test_main_table_seeds_retrain_each_trained_row_from_its_main_runs_input(tmp_path):
    """Per seed: the three Stage II rows from the Stage II run's Stage I run, with the parameters that make them the
    rows the evaluation names (their labels), and Stage III at the preset's steps from the Stage II run."""
    from aad1lib.config import load_preset
    from aad1lib.eval.plan import generation_plan

    stage1 = _fake_run(tmp_path, "stage1-tiny-a", "stage1")
    stage2 = _fake_run(tmp_path, "stage2-tiny-a", "stage2", stage1_run=str(stage1.path))
    children = main_table_seeds("tiny", stage2, [1, 2], runs_root=tmp_path, studies_root=tmp_path / "studies")
    assert len({c.name for c in children}) == 8 and {c.labels["seed"] for c in children} == {1, 2}
    for child in children:
        train = child.steps[0]
        assert train.parameters["seed"] == child.labels["seed"] and child.steps[1].notebook == "06_evaluate"
        if train.notebook == "03_adversarial":
            assert train.parameters["init_from"] == str(stage2.path.resolve()) and "steps" not in train.parameters
            assert child.labels["method"] == "AAD-1 (Stage III)"
            continue
        assert train.notebook == "02_dmd_warmup" and train.parameters["init_from"] == str(stage1.path.resolve())
        steps, rollout = train.parameters["student_steps"], train.parameters["rollout"]
        trained = _fake_run(tmp_path, f"stage2-tiny-{child.name}", "stage2", student_steps=steps, rollout=rollout,
                            sigmas=[1.0] + [0.5] * (steps - 1) + [0.0])  # fmt: skip
        assert generation_plan(load_preset("tiny"), trained).method == child.labels["method"]
    with pytest.raises(ValueError, match="start from a Stage II run"):
        main_table_seeds("tiny", stage1, [1])


def test_warmup_ablation_skips_the_stage1_cell_when_stage2_kept_its_stage1_weights(tmp_path):
    """Stage II at best step 0 IS its Stage I model: Stage III from Stage I would be the same runs again."""
    stage1 = _fake_run(tmp_path, "stage1-tiny-a", "stage1")
    kw = dict(runs_root=tmp_path, studies_root=tmp_path / "studies")
    moved = _fake_run(tmp_path, "stage2-tiny-a", "stage2", stage1_run=str(stage1.path), best_step=10)
    kept = _fake_run(tmp_path, "stage2-tiny-b", "stage2", stage1_run=str(stage1.path), best_step=0)
    assert {c.labels["init"] for c in warmup_ablation("tiny", moved, [0, 1], **kw)} == set(WARMUP_LABELS.values())
    children = warmup_ablation("tiny", kept, [0, 1], **kw)
    assert len(children) == 2 and {c.labels["init"] for c in children} == {WARMUP_LABELS["stage2"]}
    assert {c.steps[0].parameters["init_from"] for c in children} == {str(kept.path.resolve())}


def test_warmup_ablation_needs_a_stage2_run(tmp_path):
    stage1 = _fake_run(tmp_path, "stage1-tiny-a", "stage1")
    with pytest.raises(ValueError, match="starts from a Stage II run"):
        warmup_ablation("tiny", stage1, [0])


def test_latest_never_picks_a_study_child(tmp_path):
    from aad1lib.runs import find_runs, resolve_run

    ours = _fake_run(tmp_path, "stage3-tiny-main", "stage3", run_name="main", started="2026-01-01 00:00:00")
    _fake_run(tmp_path, "stage3-tiny-study-x", "stage3", run_name="study-x", started="2026-01-02 00:00:00")
    assert resolve_run("latest", "stage3", "tiny", tmp_path).path == ours.path
    assert len(find_runs("stage3", "tiny", tmp_path, include_studies=True)) == 2


def test_reproduce_steps_name_their_runs_and_their_notebooks_exist():
    from aad1lib.reproduce import pipeline, study_steps

    steps = pipeline("demo") + study_steps("demo", [0, 1])
    assert all(step.source.exists() for step in steps)
    assert "latest" not in json.dumps([step.parameters for step in steps])  # a study run can never slip in
    assert len({step.name for step in steps}) == len(steps)


def test_study_children_run_in_parallel_through_submitit_local_only_when_asked():
    from aad1lib.reproduce import study_steps

    serial, parallel = study_steps("demo", [0, 1, 2]), study_steps("demo", [0, 1, 2], parallel=2)
    assert all("executor" not in step.parameters for step in serial[:3])
    assert all(step.parameters["executor"] == "submitit-local" and step.parameters["max_parallel"] == 2
               for step in parallel[:3])  # fmt: skip


def test_main_table_seeds_step_trains_the_other_seeds_than_the_main_runs():
    """The main runs are the preset's seed (0 on demo): 09 adds the others of make study's seeds."""
    from aad1lib.reproduce import study_steps

    main_seeds = next(step for step in study_steps("demo", [0, 1, 2]) if step.name == "09_main_table_seeds")
    assert main_seeds.parameters["seeds"] == [1, 2]


def test_study_manifest_records_the_finish_time_of_the_run_it_started_from(tmp_path):
    """So the report can tell this Stage II run from a later one that reuses its folder name."""
    from aad1lib.study.run import run_study

    init = RunFolder.create("stage2", "tiny", {}, name="x", root=tmp_path)
    init.mark_finished(stage="stage2")
    finished = json.loads((init.path / "finished.json").read_text())["finished"]
    run_study("lambda_sweep", "tiny", [], dict(init_from=str(init.path)), studies_root=tmp_path / "studies")
    meta, _ = read_manifest(tmp_path / "studies" / "lambda_sweep-tiny.json")
    assert meta["init_finished"] == finished and meta["init_from"] == str(init.path)
