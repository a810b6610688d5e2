"""What Stage II's early stopping rewards: its validation loss (the teacher's denoising loss on a clip,
``aad1lib.losses.teacher_denoising_loss``) on held-out real clips, on static copies of their first frame, and on the
samples of trained runs, all from the same first frames and captions.

    python benchmarks/stage2_criterion.py --preset demo --runs latest:teacher latest:stage2 latest:stage3

A criterion that scores a static copy below the real clips rewards a student for not moving (docs/design.md §13).
"""

from __future__ import annotations

import argparse

import torch

from aad1lib.builders import load_run_model
from aad1lib.config import from_run_config
from aad1lib.eval.generate import eval_inputs, generate_latents
from aad1lib.eval.plan import generation_plan
from aad1lib.losses import teacher_denoising_loss
from aad1lib.runs import resolve_spec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--teacher-run", default="latest:teacher", help="the teacher whose loss is the criterion")
    parser.add_argument("--runs", nargs="*", default=["latest:teacher", "latest:stage2", "latest:stage3"],
                        help="runs whose samples to score (run folders or latest: specs)")  # fmt: skip
    parser.add_argument("--clips", type=int, default=8, help="held-out clips (Stage II validates on 8)")
    args = parser.parse_args(argv)

    teacher_run = resolve_spec(args.teacher_run, args.preset)
    cfg = from_run_config(teacher_run.config).validate()  # the teacher run's own resolved config
    teacher = load_run_model(teacher_run).eval()
    inputs = eval_inputs(cfg, args.clips, 1, cfg.seed)
    ctx = cfg.chunking.context_frames

    @torch.no_grad()
    def criterion(latents: torch.Tensor) -> float:  # [B, C, F, h, w], the first ctx frames the given ones
        return teacher_denoising_loss(teacher, latents, inputs.text, ctx, cfg.seed, inputs.condition)

    static = inputs.latents[:, :, :ctx].expand_as(inputs.latents)  # every frame = the first: perfect collapse
    print(f"{'clips':<40} validation loss (teacher denoising, {args.clips} held-out first frames)")
    print(f"{'held-out real clips':<40} {criterion(inputs.latents):.5f}")
    print(f"{'static copy of the first frame':<40} {criterion(static):.5f}")
    for spec in args.runs:
        run = resolve_spec(spec, args.preset)
        with torch.no_grad():
            latents, _ = generate_latents(cfg, load_run_model(run).eval(), generation_plan(cfg, run), inputs, False)
        print(f"{run.path.name:<40} {criterion(latents):.5f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
