"""What the study notebooks call: write the manifest, dispatch the children, collect their numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..run_folder import RunFolder
from ..runs import resolve_spec, run_summary
from .children import STUDIES_ROOT, Child, write_manifest
from .executor import SlurmOptions, SweepReport, check_executor, run_children
from .results import collect


def run_study(
    study: str,
    preset: str,
    children: list[Child],
    meta: dict[str, Any],
    executor: str = "local",
    max_parallel: int | None = None,
    slurm: SlurmOptions | None = None,
    studies_root: Path | None = None,
) -> tuple[SweepReport, pd.DataFrame]:
    """Run (or resume) ``children``; returns the sweep report and one row per child (failed ones included).

    The manifest ``<studies_root>/<study>-<preset>.json`` is what 07_report reads."""
    check_executor(executor)  # before anything is written
    if meta.get("init_from"):  # the Stage II run also by its finish time: a rerun may reuse the folder's name
        meta = dict(meta, init_finished=run_summary(RunFolder.open(meta["init_from"]))["finished"])
    write_manifest(Path(studies_root or STUDIES_ROOT) / f"{study}-{preset}.json", dict(meta, study=study), children)
    report = run_children(children, executor, max_parallel=max_parallel, slurm=slurm)
    return report, collect(children)


def stage2_init(init_from: str, preset: str):
    """The Stage II run a study starts from ("latest" = newest finished 1-step Stage II run of ``preset``)."""
    spec = "latest:stage2?student_steps=1" if init_from == "latest" else init_from
    run = resolve_spec(spec, preset)
    if run.info.get("stage") != "stage2":
        raise ValueError(f"init_from must be a Stage II run; {run.path} is a {run.info.get('stage')!r} run")
    return run
