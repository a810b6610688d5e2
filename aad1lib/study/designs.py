"""The paper's Stage III studies as lists of child runs (03_adversarial, then 06_evaluate on its run).

- discriminator ablation: D attention {bidirectional, causal} × logit {video, frame} (the paper's 2×2);
- λ sweep: λ of the approximate R1/R2 (optionally × its σ);
- DMD warm-up ablation: Stage III from the Stage II run vs from that run's Stage I run;
- main-table seeds: the main table's trained rows (the 4-step baselines, AAD-1 Stage II and III) again with other
  seeds, each stage from the same input run as its main run, so those rows get intervals.

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
    readable = f"{params['disc_attention'][:5]}-{params['disc_logit']}-lam{params['lam']:g}-seed{seed}"
    kind = f"s3from{init_run.info['stage'][-1]}"
    # log_every=1: every update, for the stability signals
    return trained_child("03_adversarial", "stage3", kind, readable, preset, init_run, seed, labels, params,
                         num_clips, long_video_factor, runs_root, studies_root, log_every=1)  # fmt: skip


def trained_child(
    notebook: str,
    stage: str,
    kind: str,
    readable: str,
    preset: str,
    init_run: RunFolder,
    seed: int,
    labels: dict[str, Any],
    params: dict[str, Any],
    num_clips: int,
    long_video_factor: int,
    runs_root: Path | None,
    studies_root: Path | None,
    **logging: Any,
) -> Child:
    """One stage notebook from ``init_run`` with ``params`` and ``seed``, then 06_evaluate on the run it trained.
    The child's name hashes everything that defines the run; ``logging`` parameters (e.g. ``log_every``) don't."""
    init_path = init_run.path.resolve()
    evaluation = dict(num_clips=num_clips, long_video_factor=long_video_factor)
    identity = dict(preset=preset, init=str(init_path), seed=seed, params=params, evaluation=evaluation)
    if notebook != "03_adversarial":  # (Stage III children keep the names they had before other notebooks)
        identity["notebook"] = notebook
    name = child_name(f"{CHILD_PREFIX}-{kind}", readable, identity)
    run_path = Path(runs_root or RUNS_ROOT) / f"{stage}-{preset}-{name}"
    train = NotebookStep(notebook, dict(preset=preset, init_from=str(init_path), run_name=name, seed=seed, **params,
                                           **logging))  # fmt: skip
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
    """AAD-1's Stage III from the Stage II run (with DMD warm-up) and from the Stage I run it started from —
    the Stage I cell only when the Stage II run moved (see :func:`kept_stage1_weights`)."""
    if stage2_run.info.get("stage") != "stage2":
        raise ValueError(f"the warm-up ablation starts from a Stage II run; {stage2_run.path} is a "
                         f"{stage2_run.info.get('stage')!r} run")  # fmt: skip
    inits = [stage2_run]
    if not kept_stage1_weights(stage2_run):
        inits.append(RunFolder.open(run_summary(stage2_run)["stage1_run"]))
    return [
        stage3_child(preset, run, seed, {"init": WARMUP_LABELS[run.info["stage"]]}, **kwargs)
        for run in inits
        for seed in seeds
    ]


def kept_step(stage2_info: dict) -> int | None:
    """The update whose weights a Stage II run handed on (its finished.json): ``kept_step``, or for runs made before
    ``stage2.keep`` existed the early-stopping ``best_step``."""
    return stage2_info.get("kept_step", stage2_info.get("best_step"))


def kept_stage1_weights(stage2_run: RunFolder) -> bool:
    """Whether the Stage II run kept step 0 (early stopping: DMD raised the teacher's validation loss at every
    evaluation): its model IS its Stage I model, so Stage III from Stage I would repeat Stage III from Stage II bit
    for bit (measured on demo, session 7: every metric of the 3 seeds equal) — the warm-up ablation then has nothing
    to compare."""
    return kept_step(run_summary(stage2_run)) == 0


# The main table's trained rows as eval.plan names them: the 02_dmd_warmup parameters of each Stage II row
MAIN_STAGE2_ROWS = {
    "CausVid-style (4-step)": dict(student_steps=4, rollout="teacher_forced"),
    "Self-Forcing-style (4-step)": dict(student_steps=4, rollout="self"),
    "AAD-1 Stage II (DMD, 1-step)": dict(student_steps=1, rollout="self"),
}
MAIN_STAGE3_ROW = "AAD-1 (Stage III)"


def main_table_seeds(
    preset: str,
    stage2_run: RunFolder,
    seeds: list[int],
    num_clips: int = 8,
    long_video_factor: int = 4,
    runs_root: Path | None = None,
    studies_root: Path | None = None,
) -> list[Child]:
    """The main table's trained rows with ``seeds``: the three Stage II rows from ``stage2_run``'s Stage I run and
    AAD-1's Stage III (the preset's steps) from ``stage2_run`` — each stage from the run its main run started
    from, so a seed varies that stage's own training (as in the other studies). Labels: ``{"method": row}``."""
    if stage2_run.info.get("stage") != "stage2":
        raise ValueError(f"the main-table seeds start from a Stage II run; {stage2_run.path} is a "
                         f"{stage2_run.info.get('stage')!r} run")  # fmt: skip
    stage1_run = RunFolder.open(run_summary(stage2_run)["stage1_run"])
    evaluation = dict(num_clips=num_clips, long_video_factor=long_video_factor)
    roots = dict(runs_root=runs_root, studies_root=studies_root)
    children = []
    for seed in seeds:
        for method, params in MAIN_STAGE2_ROWS.items():
            readable = f"{params['student_steps']}step-{params['rollout']}-seed{seed}"
            children.append(trained_child("02_dmd_warmup", "stage2", "s2from1", readable, preset, stage1_run, seed,
                                          {"method": method}, params, **evaluation, **roots))  # fmt: skip
        children.append(stage3_child(preset, stage2_run, seed, {"method": MAIN_STAGE3_ROW}, **evaluation, **roots))
    return children
