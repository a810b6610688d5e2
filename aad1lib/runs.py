"""Run registry: find the runs of a stage under experiments/runs/ (``latest`` = newest finished run)."""

from __future__ import annotations

import json
from pathlib import Path

from .run_folder import RUNS_ROOT, RunFolder

# which notebook produces each stage's runs (for error messages)
STAGE_NOTEBOOKS = {
    "teacher": "notebooks/00_teacher.ipynb",
    "stage1": "notebooks/01_causal_init.ipynb",
    "stage2": "notebooks/02_dmd_warmup.ipynb",
    "stage3": "notebooks/03_adversarial.ipynb",
}


def find_runs(
    stage: str, preset: str | None = None, root: Path | None = None, finished_only: bool = True,
    include_studies: bool = False,
):  # fmt: skip
    """Runs of ``stage`` (and ``preset``), oldest first by start time; a study's child runs
    (``<stage>-<preset>-study-…``, see :mod:`aad1lib.study`) only with ``include_studies``."""
    root = Path(root or RUNS_ROOT)
    runs = []
    for path in root.glob(f"{stage}-*"):
        if not (path / "run.json").exists():
            continue
        run = RunFolder(path)
        info = run.info
        if info.get("stage") != stage or (preset is not None and info.get("preset") != preset):
            continue
        if finished_only and not run.finished:
            continue
        if not include_studies and str(info.get("name", "")).startswith("study-"):
            continue
        runs.append(run)
    return sorted(runs, key=lambda r: (r.info.get("started", ""), r.path.name))


def resolve_run(spec: str | Path, stage: str, preset: str, root: Path | None = None) -> RunFolder:
    """``"latest"`` -> the newest finished ``stage`` run of ``preset``; else a run folder path, checked."""
    if str(spec) == "latest":
        runs = find_runs(stage, preset, root)
        if not runs:
            raise FileNotFoundError(
                f"no finished {stage} run for preset {preset!r} under {Path(root or RUNS_ROOT)}: "
                f"run {STAGE_NOTEBOOKS.get(stage, stage)} first (e.g. papermill ... -p preset {preset})"
            )
        return runs[-1]
    run = RunFolder.open(spec)
    if run.info.get("stage") != stage:
        raise ValueError(f"{run.path} is a {run.info.get('stage')!r} run, expected a {stage!r} run")
    if not run.finished:
        raise ValueError(f"{run.path} did not finish; resume it or pick another run")
    return run


def run_summary(run: RunFolder) -> dict:
    return json.loads((run.path / "finished.json").read_text())


def resolve_spec(spec: str | Path, preset: str, root: Path | None = None) -> RunFolder:
    """A finished run from ``spec``: ``latest:<stage>`` (optionally ``latest:<stage>?key=value&...`` to pick
    the newest run whose finished.json matches, e.g. ``latest:stage2?student_steps=4``), a run folder path,
    or a run folder name under ``root``."""
    spec = str(spec)
    if spec.startswith("latest:"):
        stage, _, query = spec[len("latest:") :].partition("?")
        if stage not in STAGE_NOTEBOOKS:
            raise ValueError(f"unknown stage in {spec!r}; allowed: {[f'latest:{s}' for s in STAGE_NOTEBOOKS]}")
        if not query:
            return resolve_run("latest", stage, preset, root)
        wanted = dict(part.split("=", 1) for part in query.split("&"))
        matches = [r for r in find_runs(stage, preset, root) if _matches(run_summary(r), wanted)]
        if not matches:
            raise FileNotFoundError(
                f"no finished {stage} run of preset {preset!r} with {wanted} under {Path(root or RUNS_ROOT)}: "
                f"run {STAGE_NOTEBOOKS[stage]} with those parameters first"
            )
        return matches[-1]
    path = Path(spec)
    if not path.exists() and (Path(root or RUNS_ROOT) / spec).exists():
        path = Path(root or RUNS_ROOT) / spec
    run = RunFolder.open(path)
    if not run.finished:
        raise ValueError(f"{run.path} did not finish; resume it or pick another run")
    return run


def _matches(summary: dict, wanted: dict[str, str]) -> bool:
    return all(str(summary.get(k)).lower() == v.lower() for k, v in wanted.items())
