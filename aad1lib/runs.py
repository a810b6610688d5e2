"""Run registry: find the runs of a stage under experiments/runs/ (``latest`` = newest finished run)."""

from __future__ import annotations

from pathlib import Path

import torch

from .train.run_folder import RUNS_ROOT, RunFolder

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


def load_run_model(run: RunFolder, device="cpu", dtype: torch.dtype = torch.float32):
    """The model a finished run produced: ``<run>/model`` (diffusers format), or the Wan checkpoint a
    teacher run points to (cluster presets load Wan instead of training), loaded in ``dtype``."""
    import json

    from .models.causal_wan import CausalWanTransformer3DModel

    if (run.path / "model" / "config.json").exists():
        return CausalWanTransformer3DModel.from_pretrained(run.path / "model", torch_dtype=dtype).to(device)
    summary = json.loads((run.path / "finished.json").read_text())
    if summary.get("teacher"):
        root = Path(summary["teacher"])
        subfolder = None if (root / "config.json").exists() else "transformer"
        return CausalWanTransformer3DModel.from_pretrained(root, subfolder=subfolder, torch_dtype=dtype).to(device)
    raise FileNotFoundError(f"{run.path} has no model/ folder and points to no checkpoint")


def run_summary(run: RunFolder) -> dict:
    import json

    return json.loads((run.path / "finished.json").read_text())
