"""The paper's Stage III studies as lists of child runs (03_adversarial, then 06_evaluate on its run).

- discriminator ablation: D attention {bidirectional, causal} × logit {video, frame} (the paper's 2×2);
- λ sweep: λ of the approximate R1/R2 (optionally × its σ);
- DMD warm-up ablation: Stage III from the Stage II run vs from that run's Stage I run.

Every child states all Stage III axes explicitly (unvaried ones from the preset), so the same configuration
asked for by two studies is one child and trains once (e.g. bidirectional/video at λ = 20).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import load_preset
from ..run_folder import RUNS_ROOT, RunFolder
from ..runs import run_summary
from .children import STUDIES_ROOT, Child, NotebookStep, child_name

AXES = ("disc_attention", "disc_logit", "lam", "r1_sigma")  # always explicit in a child's parameters
CHILD_PREFIX = "study"  # run folders stage3-<preset>-study-…: "latest" never picks a study's child
WARMUP_LABELS = {"stage2": "Stage II (DMD warm-up)", "stage1": "Stage I (no warm-up)"}


def stage3_child(
    preset: str,
    init_run: RunFolder,
    seed: int,
    labels: dict[str, Any],
    overrides: dict[str, Any] | None = None,
    steps: int | None = None,
    num_clips: int = 8,
    long_video_factor: int = 4,
    runs_root: Path | None = None,
    studies_root: Path | None = None,
) -> Child:
    """Stage III from ``init_run`` with ``overrides`` of the preset's stage3 knobs, then its evaluation."""
    s3 = load_preset(preset).stage3
    params: dict[str, Any] = {axis: getattr(s3, axis) for axis in AXES}
    params.update(overrides or {})
    params["lam"], params["r1_sigma"] = float(params["lam"]), float(params["r1_sigma"])
    unknown = sorted(set(params) - set(AXES) - {"d_steps", "d_warmup_steps", "lr_generator", "lr_discriminator",
                                                 "train_disc_backbone", "real_source"})  # fmt: skip
    if unknown:
        raise ValueError(f"not a Stage III notebook parameter: {unknown}")
    if steps is not None:
        params["steps"] = int(steps)
    init_path = init_run.path.resolve()
    evaluation = dict(num_clips=num_clips, long_video_factor=long_video_factor)
    identity = dict(preset=preset, init=str(init_path), seed=seed, params=params, evaluation=evaluation)
    readable = f"{params['disc_attention'][:5]}-{params['disc_logit']}-lam{params['lam']:g}-seed{seed}"
    name = child_name(f"{CHILD_PREFIX}-s3from{init_run.info['stage'][-1]}", readable, identity)
    run_path = Path(runs_root or RUNS_ROOT) / f"stage3-{preset}-{name}"
    train = NotebookStep(
        "03_adversarial", dict(preset=preset, init_from=str(init_path), run_name=name, seed=seed, log_every=1, **params)
    )  # fmt: skip  (every update: stability)
    evaluate = NotebookStep("06_evaluate", dict(preset=preset, runs=[str(run_path)], speed_lengths=[],
                                                overwrite=True, **evaluation))  # fmt: skip
    return Child(name, (train, evaluate), labels=dict(labels, seed=seed), run_path=str(run_path),
                 studies_root=str(studies_root or STUDIES_ROOT))  # fmt: skip


def discriminator_ablation(preset: str, init_run: RunFolder, seeds: list[int], **kwargs) -> list[Child]:
    """The paper's 2×2: D attention × D logit, every cell from the same Stage II run, over ``seeds``."""
    return [
        stage3_child(
            preset,
            init_run,
            seed,
            {"D attention": attention, "D logit": logit},
            {"disc_attention": attention, "disc_logit": logit},
            **kwargs,
        )  # fmt: skip
        for attention in ("bidirectional", "causal")
        for logit in ("video", "frame")
        for seed in seeds
    ]


def lambda_sweep(
    preset: str, init_run: RunFolder, lams: list[float], seeds: list[int], sigmas: list[float] | None = None, **kwargs
) -> list[Child]:
    """λ of the approximate R1/R2 (× its σ when ``sigmas`` is given); the rest as the preset (AAD-1's D)."""
    sigmas = sigmas or [load_preset(preset).stage3.r1_sigma]
    return [
        stage3_child(
            preset, init_run, seed, {"λ": float(lam), "σ": float(sigma)}, {"lam": lam, "r1_sigma": sigma}, **kwargs
        )  # fmt: skip
        for lam in lams
        for sigma in sigmas
        for seed in seeds
    ]


def warmup_ablation(preset: str, stage2_run: RunFolder, seeds: list[int], **kwargs) -> list[Child]:
    """AAD-1's Stage III from the Stage II run (with DMD warm-up) and from the Stage I run it started from."""
    if stage2_run.info.get("stage") != "stage2":
        raise ValueError(f"the warm-up ablation starts from a Stage II run; {stage2_run.path} is a "
                         f"{stage2_run.info.get('stage')!r} run")  # fmt: skip
    stage1_run = RunFolder.open(run_summary(stage2_run)["stage1_run"])
    return [
        stage3_child(preset, run, seed, {"init": WARMUP_LABELS[run.info["stage"]]}, **kwargs)
        for run in (stage2_run, stage1_run)
        for seed in seeds
    ]
