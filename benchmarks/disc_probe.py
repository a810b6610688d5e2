"""Discriminator sensitivity probe: train each Stage III critic design D-only against fakes with known flaws
(static / drift / grid, + a Stage II run's samples) and print held-out accuracy and gap, mean ± 95 % CI over seeds.

    python benchmarks/disc_probe.py --preset tiny --updates 8 --eval-every 4             # seconds
    python benchmarks/disc_probe.py --preset demo --seeds 0 1 2 --updates 200 --teacher-run latest:teacher
    python benchmarks/disc_probe.py --preset demo --designs bidirectional/video --failures static \\
        --lam 0 --t-max 0.1 --lr 1e-3 --updates 150                                     # choose D settings

AAD-1 Stage III claims a frame-wise or causal critic is deceived by realistic static frames and a bidirectional
video-level one is not (aad1lib/study/disc_probe.py). D settings are the preset's Stage III ones; the flags below
(and --set KEY=VALUE) override them. Without --teacher-run (or --init-from, whose teacher Stage III would use)
D's backbone is a fresh random Wan: fine for tiny/CI, not evidence about a pretrained critic. Writes probe.json
(settings, backbone, s/update, the table and every curve point) and probe.png into --out.
"""

import argparse
import json
import time
from pathlib import Path

import torch

from aad1lib.config import load_preset
from aad1lib.paths import ROOT
from aad1lib.run_folder import atomic_write_json
from aad1lib.runs import resolve_spec
from aad1lib.study.disc_probe import DESIGNS, FAILURES, markdown_table, plot_probe, run_probe
from aad1lib.train.__main__ import parse_overrides

# flag -> the config key it overrides (None: keep the preset's)
CONFIG_FLAGS = {"batch_size": "train.batch_size", "lr": "stage3.lr_discriminator", "lam": "stage3.lam",
                "t_min": "stage3.t_min", "t_max": "stage3.t_max", "r1_sigma": "stage3.r1_sigma",
                "eval_clips": "stage3.disc_eval_clips"}  # fmt: skip


def records(frame) -> list[dict]:
    """Rows as JSON objects, NaN (one seed's interval, the loss before training) as null."""
    return json.loads(frame.to_json(orient="records"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--updates", type=int, default=100, help="D updates per design × failure × seed")
    parser.add_argument("--eval-every", type=int, default=20, help="D updates between held-out evaluations")
    parser.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=DESIGNS)
    parser.add_argument("--failures", nargs="+", default=["static", "drift", "grid"], choices=FAILURES)
    parser.add_argument("--teacher-run", help="D's backbone: a teacher run folder or latest:teacher")
    parser.add_argument("--init-from", help="a finished Stage II run (folder or latest:stage2): adds 'samples'")
    parser.add_argument("--batch-size", type=int, help="default: the preset's train.batch_size")
    parser.add_argument("--lr", type=float, help="default: the preset's stage3.lr_discriminator")
    parser.add_argument("--lam", type=float, help="λ of R1/R2; default: the preset's stage3.lam")
    parser.add_argument("--t-min", type=float, help="default: the preset's stage3.t_min")
    parser.add_argument("--t-max", type=float, help="default: the preset's stage3.t_max")
    parser.add_argument("--r1-sigma", type=float, help="default: the preset's stage3.r1_sigma")
    parser.add_argument("--eval-clips", type=int, help="held-out clips; default: the preset's stage3.disc_eval_clips")
    parser.add_argument("--drift-rate", type=float, default=0.05, help="colour drift per frame (pixels in [-1, 1])")
    parser.add_argument("--grid-rate", type=float, default=0.05, help="grid-line amplitude added per frame")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, help="default: experiments/studies/disc_probe-<preset>-<time>")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    overrides.update(
        {key: getattr(args, flag) for flag, key in CONFIG_FLAGS.items() if getattr(args, flag) is not None}
    )
    cfg = load_preset(args.preset, overrides)
    teacher = resolve_spec(args.teacher_run, args.preset) if args.teacher_run else None
    init = resolve_spec(args.init_from, args.preset) if args.init_from else None
    failures = args.failures + (["samples"] if init and "samples" not in args.failures else [])

    tic = time.time()
    result = run_probe(cfg, args.designs, failures, args.seeds, args.updates, args.eval_every, teacher_run=teacher,
                       init_run=init, drift_rate=args.drift_rate, grid_rate=args.grid_rate, device=args.device,
                       progress=not args.no_progress)  # fmt: skip
    seconds = time.time() - tic
    table = result.table()
    print(f"preset {args.preset}; D backbone: {result.backbone}; {result.seconds_per_update:.2f} s per D update "
          f"({torch.get_num_threads()} threads); {seconds:.0f} s in all")  # fmt: skip
    s = result.settings
    print(f"λ {s['lam']}, t in [{s['t_min']}, {s['t_max']}] (shift {s['shift']}), lr {s['lr']}, "
          f"batch {s['batch_size']}, {s['eval_clips']} held-out clips; after {args.updates} updates, "
          f"mean ± 95 % CI over {len(args.seeds)} seed(s):")  # fmt: skip
    print(markdown_table(table))

    out = args.out or ROOT / "experiments" / "studies" / f"disc_probe-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "probe.json", dict(settings=s, backbone=result.backbone, seconds=seconds,
                                               seconds_per_update=result.seconds_per_update,
                                               table=records(table), curves=records(result.curves)))  # fmt: skip
    plot_probe(result.curves).savefig(out / "probe.png", dpi=120)
    print(f"wrote {out / 'probe.json'} and {out / 'probe.png'}")


if __name__ == "__main__":
    main()
