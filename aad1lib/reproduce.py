"""`make reproduce`: the whole pipeline on one preset, notebook by notebook, resumable.

Each step is a papermill execution of a stage notebook into ``experiments/runs/reproduce-<preset>/``; the
runs are named ``<stage>-<preset>-reproduce[-variant]`` so later steps name their inputs explicitly (never
"latest", which a study's runs could change). A step whose executed notebook finished earlier is skipped,
so re-running resumes; a step whose notebook does not exist yet is listed as missing.

    python -m aad1lib.reproduce --preset demo            # 00 -> 03, the 4-step baselines, 06, 07
    python -m aad1lib.reproduce --preset demo --study    # then 04 + 05 (the longer studies) and 07 again
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
RUNS = ROOT / "experiments" / "runs"
REPORTS = ROOT / "reports"
# Stage III generator updates per study run (10 D-only + 30 with G on demo: ~2.5 min each, 16 runs): the main
# run uses the preset's 100; the studies trade length for seeds and cells on 2 CPU cores
STUDY_STEPS = 40


@dataclass
class Step:
    key: str  # unique name of the step (its executed notebook and done marker)
    notebook: str
    what: str
    parameters: dict[str, Any] = field(default_factory=dict)
    html: Path | None = None  # also render the executed notebook to this HTML file, without input cells


def run_path(stage: str, preset: str, variant: str = "") -> str:
    return str(RUNS / f"{stage}-{preset}-reproduce{variant}")


def main_runs(preset: str) -> list[str]:
    """The main table's runs, in table order: teacher, 4-step baselines, AAD-1 Stage II and III."""
    return [run_path("teacher", preset), run_path("stage2", preset, "-cv4"), run_path("stage2", preset, "-sf4"),
            run_path("stage2", preset), run_path("stage3", preset)]  # fmt: skip


def eval_clips(preset: str) -> int:
    """8 held-out clips (the demo main table), or all of a smaller test split."""
    from .config import load_preset

    return min(8, load_preset(preset).data.test_clips)


def pipeline(preset: str) -> list[Step]:
    stage1, stage2 = run_path("stage1", preset), run_path("stage2", preset)
    return [
        Step("00_teacher", "00_teacher", "Stage 0: bidirectional teacher", dict(run_name="reproduce")),
        Step("01_causal_init", "01_causal_init", "Stage I: Diffusion Forcing + ODE regression",
             dict(run_name="reproduce", init_from=run_path("teacher", preset))),
        Step("02_dmd_warmup", "02_dmd_warmup", "Stage II: Self-Forcing DMD warm-up (1 step)",
             dict(run_name="reproduce", init_from=stage1)),
        Step("02_baseline_self_forcing", "02_dmd_warmup", "baseline: Self-Forcing-style, 4 steps",
             dict(run_name="reproduce-sf4", init_from=stage1, student_steps=4)),
        Step("02_baseline_causvid", "02_dmd_warmup", "baseline: CausVid-style, 4 steps, teacher forcing",
             dict(run_name="reproduce-cv4", init_from=stage1, student_steps=4, rollout="teacher_forced")),
        Step("03_adversarial", "03_adversarial", "Stage III: asymmetric adversarial distillation",
             dict(run_name="reproduce", init_from=stage2)),
        Step("06_evaluate", "06_evaluate", "evaluation: VBench-I2V-style metrics, Drift, speed",
             dict(runs=main_runs(preset), num_clips=eval_clips(preset), overwrite=True, teacher_max_length=4)),
        report_step(preset),
    ]  # fmt: skip


def study_steps(preset: str, seeds: list[int], steps: int | None = STUDY_STEPS) -> list[Step]:
    stage2 = run_path("stage2", preset)
    return [
        Step("04_discriminator_ablation", "04_discriminator_ablation",
             "study: D attention × logit (+ DMD warm-up ablation)", dict(init_from=stage2, seeds=seeds, steps=steps)),
        Step("05_lambda_sweep", "05_lambda_sweep", "study: λ of R1/R2", dict(init_from=stage2, seeds=seeds,
                                                                          steps=steps)),
        report_step(preset, key="07_report_with_studies"),
    ]  # fmt: skip


def report_step(preset: str, key: str = "07_report") -> Step:
    return Step(
        key,
        "07_report",
        "report: tables, plots and verdicts into reports/",
        dict(main_runs=main_runs(preset), out_dir=str(REPORTS)),
        html=REPORTS / "index.html",
    )


def run_steps(steps: list[Step], preset: str, out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    missing, failed, timings = [], [], {}
    for i, step in enumerate(steps, 1):
        source = NOTEBOOKS / f"{step.notebook}.ipynb"
        executed, done = out_dir / f"{step.key}.ipynb", out_dir / f"{step.key}.done.json"
        prefix = f"[{i}/{len(steps)}] {step.key} ({step.what})"
        if not source.exists():
            print(f"{prefix}: MISSING — notebook not implemented yet", flush=True)
            missing.append(step.key)
            continue
        if done.exists():
            timings[step.key] = json.loads(done.read_text())["seconds"]
            print(f"{prefix}: done earlier, skipped ({timings[step.key]:.0f} s)", flush=True)
            continue
        print(f"{prefix}: running …", flush=True)
        tic = time.time()
        cmd = [sys.executable, "-m", "papermill", str(source), str(executed), "-p", "preset", preset,
               "--cwd", str(NOTEBOOKS), "--progress-bar"]  # fmt: skip
        for name, value in step.parameters.items():  # -y: YAML keeps lists and types
            cmd += ["-y", json.dumps({name: value})]
        if subprocess.call(cmd) != 0:
            print(f"{prefix}: FAILED — see {executed}", flush=True)
            failed.append(step.key)
            break
        if step.html is not None:
            step.html.parent.mkdir(parents=True, exist_ok=True)
            convert = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--no-input", str(executed),
                       "--output", step.html.stem, "--output-dir", str(step.html.parent)]  # fmt: skip
            subprocess.check_call(convert)
        timings[step.key] = time.time() - tic
        done.write_text(json.dumps({"seconds": timings[step.key], "preset": preset, "parameters": step.parameters}))
        print(f"{prefix}: finished in {timings[step.key]:.0f} s", flush=True)
    (out_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"wall time of this invocation: {time.time() - start:.0f} s; "
          f"all steps so far (incl. earlier invocations): {sum(timings.values()):.0f} s")  # fmt: skip
    if missing:
        print(f"not implemented yet: {', '.join(missing)}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--study", action="store_true", help="run the ablation studies (04, 05) and the report")
    parser.add_argument("--seeds", default="0,1", help="study seeds, comma-separated")
    args = parser.parse_args()
    if args.study:
        steps = study_steps(args.preset, [int(s) for s in args.seeds.split(",")])
        sys.exit(run_steps(steps, args.preset, RUNS / f"study-{args.preset}"))
    sys.exit(run_steps(pipeline(args.preset), args.preset, RUNS / f"reproduce-{args.preset}"))


if __name__ == "__main__":
    main()
