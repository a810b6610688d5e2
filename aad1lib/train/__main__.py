"""Launch a stage trainer from the command line (what torchrun / accelerate launch run on a cluster).

    python -m aad1lib.train teacher --preset demo --run-name my-teacher --set teacher.steps=2000
    torchrun --nproc_per_node 8 -m aad1lib.train teacher --preset wan2.1-14b
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m aad1lib.train teacher --preset tiny

(``accelerate launch --cpu --num_processes 2`` silently starts ONE process: docs/design.md §4.)
"""

from __future__ import annotations

import argparse

from ..config import load_preset, yaml_load
from ..run_folder import RunFolder
from ..runs import resolve_run
from .stage1 import train_stage1
from .stage2 import train_stage2
from .stage3 import train_stage3
from .teacher import train_teacher

STAGES = ("teacher", "stage1", "stage2", "stage3")
PREVIOUS = {"stage1": "teacher", "stage2": "stage1", "stage3": "stage2"}


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        # "3" -> 3, "1e-4" -> 1e-4 needs a dot: 1.0e-4; "no" stays the string "no" (YAML 1.2 booleans)
        overrides[key] = yaml_load(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--runs-root", default=None)
    parser.add_argument("--init-from", default="latest", help="run folder of the previous stage, or 'latest'")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load_preset(args.preset, parse_overrides(args.overrides))
    if args.stage == "teacher":
        result = train_teacher(cfg, run_name=args.run_name, runs_root=args.runs_root)
    else:
        trainer = {"stage1": train_stage1, "stage2": train_stage2, "stage3": train_stage3}[args.stage]
        previous = PREVIOUS[args.stage]
        if args.stage == "stage3" and args.init_from != "latest":
            init = RunFolder.open(args.init_from)  # Stage II, or Stage I for the warm-up ablation
        else:
            init = resolve_run(args.init_from, previous, cfg.name, args.runs_root)
        result = trainer(cfg, init, run_name=args.run_name, runs_root=args.runs_root)
    print(f"{args.stage} run: {result.run.path} ({result.train_seconds:.0f} s)")


if __name__ == "__main__":
    main()
