"""Launch a stage trainer from the command line (what torchrun / accelerate launch run on a cluster).

    python -m aad1lib.train teacher --preset demo --run-name my-teacher --set teacher.steps=2000
    torchrun --nproc_per_node 8 -m aad1lib.train teacher --preset wan2.1-14b
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m aad1lib.train teacher --preset tiny

(``accelerate launch --cpu --num_processes 2`` silently starts ONE process: DESIGN.md §4.)
"""

from __future__ import annotations

import argparse

import yaml

from ..config import load_preset

STAGES = ("teacher",)


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key] = yaml.safe_load(value)  # "3" -> 3, "1e-4" -> 1e-4 needs a dot: 1.0e-4
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--runs-root", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load_preset(args.preset, parse_overrides(args.overrides))
    if args.stage == "teacher":
        from .teacher import train_teacher

        result = train_teacher(cfg, run_name=args.run_name, runs_root=args.runs_root)
        print(f"teacher run: {result.run.path} ({result.train_seconds:.0f} s)")


if __name__ == "__main__":
    main()
