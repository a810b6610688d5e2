"""`make reproduce`: the whole pipeline on one preset, notebook by notebook, resumable.

Each step is a papermill execution of a stage notebook into ``experiments/runs/reproduce-<preset>/`` (by
:func:`aad1lib.notebook_runner.run_notebooks`: done markers, ``failed.json``, progress); the runs are named
``<stage>-<preset>-reproduce[-variant]`` so later steps name their inputs explicitly (never "latest", which a
study's runs could change). A step that finished earlier is skipped, so re-running resumes.

    python -m aad1lib.reproduce --preset demo            # 00 -> 03, the 4-step baselines, 06, 07
    python -m aad1lib.reproduce --preset demo --study    # then 04, 05, 09 (the longer studies) and 07 again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .config import load_preset
from .notebook_runner import Step, run_notebooks
from .paths import ROOT
from .run_folder import RUNS_ROOT

REPORTS = ROOT / "reports"
# Stage III steps per study run (demo: >= 10 D-only until D's held-out pair accuracy reaches 0.9, then G; the main
# run uses the preset's 100). Measured 2026-11-30, one thread: 5.4-5.8 s per demo Stage III step with its held-out
# D evaluations, so a 40-step run + its evaluation takes ~5 min and the 8 distinct cells x 3 seeds of make study
# ~2 h of one core: the children run STUDY_PARALLEL at a time (submitit's local executor), one torch thread each.
STUDY_STEPS = 40
STUDY_PARALLEL = max(1, min(2, os.cpu_count() or 1))


def run_path(stage: str, preset: str, variant: str = "") -> str:
    return str(RUNS_ROOT / f"{stage}-{preset}-reproduce{variant}")


def main_runs(preset: str) -> list[str]:
    """The main table's runs, in table order: teacher, 4-step baselines, AAD-1 Stage II and III."""
    return [run_path("teacher", preset), run_path("stage2", preset, "-cv4"), run_path("stage2", preset, "-sf4"),
            run_path("stage2", preset), run_path("stage3", preset)]  # fmt: skip


def eval_clips(preset: str) -> int:
    """8 held-out clips (the demo main table), or all of a smaller test split."""
    return min(8, load_preset(preset).data.test_clips)


def pipeline(preset: str) -> list[Step]:
    stage1, stage2 = run_path("stage1", preset), run_path("stage2", preset)
    return [
        Step("00_teacher", dict(run_name="reproduce"), what="Stage 0: bidirectional teacher"),
        Step("01_causal_init", dict(run_name="reproduce", init_from=run_path("teacher", preset)),
             what="Stage I: Diffusion Forcing + ODE regression"),
        Step("02_dmd_warmup", dict(run_name="reproduce", init_from=stage1),
             what="Stage II: Self-Forcing DMD warm-up (1 step)"),
        Step("02_dmd_warmup", dict(run_name="reproduce-sf4", init_from=stage1, student_steps=4),
             key="02_baseline_self_forcing", what="baseline: Self-Forcing-style, 4 steps"),
        Step("02_dmd_warmup", dict(run_name="reproduce-cv4", init_from=stage1, student_steps=4,
                                   rollout="teacher_forced"),
             key="02_baseline_causvid", what="baseline: CausVid-style, 4 steps, teacher forcing"),
        Step("03_adversarial", dict(run_name="reproduce", init_from=stage2),
             what="Stage III: asymmetric adversarial distillation"),
        Step("06_evaluate", dict(runs=main_runs(preset), num_clips=eval_clips(preset), overwrite=True,
                                 teacher_max_length=4), what="evaluation: VBench-I2V-style metrics, Drift, speed"),
        report_step(preset),
    ]  # fmt: skip


def study_steps(preset: str, seeds: list[int], steps: int | None = STUDY_STEPS, parallel: int = 1) -> list[Step]:
    """04 + 05 + 09 from the reproduce Stage II run (09: ``seeds`` but the main runs' own, the preset's seed);
    ``parallel`` > 1 runs that many children at once (submitit-local)."""
    stage2 = run_path("stage2", preset)
    dispatch = dict(executor="submitit-local", max_parallel=parallel) if parallel > 1 else {}
    sweep = dict(init_from=stage2, seeds=seeds, steps=steps, **dispatch)
    main_seeds = [s for s in seeds if s != load_preset(preset).seed]
    return [
        Step("04_discriminator_ablation", sweep, what="study: D attention × logit (+ DMD warm-up ablation)"),
        Step("05_lambda_sweep", sweep, what="study: λ of R1/R2"),
        Step("09_main_table_seeds", dict(init_from=stage2, seeds=main_seeds, **dispatch),
             what="study: the main table's trained rows with more seeds"),
        report_step(preset, key="07_report_with_studies"),
    ]  # fmt: skip


def report_step(preset: str, key: str = "07_report") -> Step:
    # no html=: 07 writes reports/index.html itself, from index.md (no notebook residue, figures and GIF inlined)
    return Step("07_report", dict(main_runs=main_runs(preset), out_dir=str(REPORTS)), key=key,
                what="report: tables, plots and verdicts into reports/")  # fmt: skip


def run_steps(steps: list[Step], preset: str, out_dir: Path) -> int:
    """Run (or resume) ``steps`` on ``preset`` into ``out_dir``; 1 when a step failed (see its failed.json)."""
    steps = [dataclasses.replace(step, parameters=dict(preset=preset, **step.parameters)) for step in steps]
    outcome = run_notebooks(steps, out_dir, cell_progress=True)
    (out_dir / "timings.json").write_text(json.dumps(outcome.seconds, indent=2))
    return 0 if outcome.ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--study", action="store_true", help="run the ablation studies (04, 05) and the report")
    parser.add_argument("--seeds", default="0,1,2", help="study seeds, comma-separated (verdicts need >= 3)")
    parser.add_argument(
        "--parallel",
        type=int,
        default=STUDY_PARALLEL,
        help=f"study children at once, one torch thread each (here: {STUDY_PARALLEL})",
    )
    args = parser.parse_args()
    if args.study:
        if args.parallel > 1:  # two 2-thread trainings on 2 cores slow each other ~10x: one thread per child
            os.environ.setdefault("OMP_NUM_THREADS", "1")
        steps = study_steps(args.preset, [int(s) for s in args.seeds.split(",")], parallel=args.parallel)
        sys.exit(run_steps(steps, args.preset, RUNS_ROOT / f"study-{args.preset}"))
    sys.exit(run_steps(pipeline(args.preset), args.preset, RUNS_ROOT / f"reproduce-{args.preset}"))


if __name__ == "__main__":
    main()
