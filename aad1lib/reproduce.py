"""`make reproduce`: the whole pipeline on one preset, notebook by notebook, resumable.

Each step is a papermill execution of a stage notebook into ``experiments/runs/reproduce-<preset>/``;
a step whose executed notebook finished earlier is skipped, so re-running resumes. Steps whose
notebook does not exist yet are listed as missing instead of failing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

# (notebook, what it does) in pipeline order
PIPELINE = [
    ("00_teacher", "Stage 0: bidirectional teacher"),
    ("01_causal_init", "Stage I: Diffusion Forcing + ODE regression"),
    ("02_dmd_warmup", "Stage II: Self-Forcing DMD warm-up"),
    ("03_adversarial", "Stage III: asymmetric adversarial distillation"),
    ("06_evaluate", "evaluation: VBench-I2V-style metrics, Drift, speed"),
    ("07_report", "report: tables and plots into reports/"),
]


def run_pipeline(preset: str, out_root: Path) -> int:
    out_dir = out_root / f"reproduce-{preset}"
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    missing, failed = [], []
    for i, (name, what) in enumerate(PIPELINE, 1):
        source = NOTEBOOKS / f"{name}.ipynb"
        executed = out_dir / f"{name}.ipynb"
        done = out_dir / f"{name}.done.json"
        prefix = f"[{i}/{len(PIPELINE)}] {name} ({what})"
        if not source.exists():
            print(f"{prefix}: MISSING — notebook not implemented yet", flush=True)
            missing.append(name)
            continue
        if done.exists():
            print(f"{prefix}: done earlier, skipped ({json.loads(done.read_text())['seconds']:.0f} s)", flush=True)
            continue
        print(f"{prefix}: running …", flush=True)
        step_start = time.time()
        cmd = [
            sys.executable,
            "-m",
            "papermill",
            str(source),
            str(executed),
            "-p",
            "preset",
            preset,
            "--cwd",
            str(NOTEBOOKS),
            "--progress-bar",
        ]
        if subprocess.call(cmd) != 0:
            print(f"{prefix}: FAILED — see {executed}", flush=True)
            failed.append(name)
            break
        seconds = time.time() - step_start
        done.write_text(json.dumps({"seconds": seconds, "preset": preset}))
        print(f"{prefix}: finished in {seconds:.0f} s", flush=True)
    print(f"total wall time: {time.time() - start:.0f} s")
    if missing:
        print(f"not implemented yet: {', '.join(missing)}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "runs")
    args = parser.parse_args()
    sys.exit(run_pipeline(args.preset, args.out))


if __name__ == "__main__":
    main()
