"""Evaluate finished runs side by side (notebook 06): same held-out first frames, same noise, same metrics.

For every run (a folder, or ``latest:<stage>``):
1. load its model and generate one clip per held-out first frame of the preset's test split, from noise
   drawn once for all runs (``seed``): the teacher samples the whole clip bidirectionally (its sampler
   steps × CFG), a causal student streams it chunk by chunk with its KV cache (its few-step ``sigmas``);
2. score the clips with a :class:`~aad1lib.eval.metrics.MetricSuite` (VBench-I2V formulas; every
   column carries its backbone's name) and the motion ratio against the clips' ground-truth motion;
3. roll causal students out to ``long_video_factor`` × the training length and report Drift (Rolling
   Forcing: |IQ(first segment) − IQ(last segment)|, one segment per training length) and the per-segment
   curve. A bidirectional teacher cannot stream past its training length: its Drift is *not applicable*;
4. count the model passes with a forward hook (NFE: a CFG call on 2B rows counts 2; KV-cache writes are
   listed separately) and write ``summary.json`` into the run folder, never over an existing one unless
   ``overwrite=True``.

The long rollout's first ``training length`` frames ARE the short clip (same noise prefix, same re-noising
draws, same cache), so each causal run is generated once (tested).

This module orchestrates; the parts: ``plan`` (what a run samples, its label), ``generate`` (shared inputs, a
run's latents), ``passes`` (pass counting, NFE), ``scoring`` (metric suite, motion), ``tables`` (rows, table,
plot, JSON).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..builders import build_dataset, build_latent_codec, collate, load_run_model
from ..config import ExperimentConfig
from ..run_folder import RunFolder, atomic_write_json, git_commit
from ..runs import resolve_spec
from .generate import eval_inputs, generate_latents
from .metrics import MetricSuite, drift
from .passes import nfe_summary
from .plan import generation_plan
from .scoring import ground_truth_motion, patch_grid_pixels, score_clips, suite_backbones
from .tables import json_default, table_row


def evaluate_runs(
    cfg: ExperimentConfig,
    run_specs: list[str],
    num_clips: int = 4,
    long_video_factor: int = 4,
    seed: int | None = None,
    suite: MetricSuite | None = None,
    out_name: str = "summary.json",
    overwrite: bool = False,
    runs_root: Path | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    collect_videos: dict | None = None,
) -> dict[str, dict]:
    """Evaluate every run on the same held-out first frames and noise; write ``out_name`` into each run folder.

    Args:
        run_specs: run folders (path or name) or ``latest:<stage>[?key=value]`` (see :func:`resolve_spec`).
        num_clips: held-out test clips (the first ``num_clips`` of the preset's test split).
        long_video_factor: Drift rollouts are this many training lengths long (>= 2; 0 = no Drift).
        seed: noise seed (None = the preset's seed).
        suite: the metrics (None = offline defaults with the preset's fps).
        overwrite: replace existing summaries; otherwise an existing one raises FileExistsError before any work.
        collect_videos: if a dict is given, it receives ``{"data": clips, run name: clips}`` (pixels
            ``[B, 3, F, H, W]``) for strips.

    Returns ``{run folder name: summary}``; each summary has a ``row`` for
    :func:`~aad1lib.eval.tables.format_main_table`.
    """
    seed = cfg.seed if seed is None else seed
    if long_video_factor == 1 or long_video_factor < 0:
        raise ValueError(f"long_video_factor must be >= 2 (or 0 = no Drift), got {long_video_factor}")
    ctx, gen_frames = cfg.chunking.context_frames, cfg.latent_frames - cfg.chunking.context_frames
    long_frames = ctx + gen_frames * long_video_factor
    if long_video_factor and long_frames > cfg.model.rope_max_seq_len:
        raise ValueError(
            f"long rollouts of {long_frames} latent frames exceed model.rope_max_seq_len={cfg.model.rope_max_seq_len} "
            f"(absolute frame positions); use long_video_factor <= {(cfg.model.rope_max_seq_len - ctx) // gen_frames}"
        )

    # 1. resolve every run and check its summary can be written, before any work
    runs: list[RunFolder] = []
    for spec in run_specs:
        run = resolve_spec(spec, cfg.name, runs_root)
        if run.info.get("preset") != cfg.name:
            raise ValueError(f"{run.path} was trained with preset {run.info.get('preset')!r}, not {cfg.name!r}")
        if all(run.path != r.path for r in runs):
            runs.append(run)
    existing = [str(r.path / out_name) for r in runs if (r.path / out_name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing} already exist: pass overwrite=True (notebook: -p overwrite True) to replace them, "
            "or out_name=... to write beside them"
        )
    plans = {r.path.name: generation_plan(cfg, r) for r in runs}

    # 2. shared inputs and the reference motion
    suite = suite or MetricSuite(fps=cfg.data.fps, grid_period=patch_grid_pixels(cfg))
    inputs = eval_inputs(cfg, num_clips, long_video_factor, seed)
    codec = build_latent_codec(cfg)
    gt_motion, gt_source = ground_truth_motion(inputs.batch, suite)
    images = inputs.batch["first_frame"]
    if collect_videos is not None:
        collect_videos["data"] = inputs.batch["video"]
    pixel_ctx = 1 + (ctx - 1) * codec.temporal_factor if ctx else 0  # pixel frames of the context latents

    results = {}
    for run in runs:
        name, plan = run.path.name, plans[run.path.name]
        model = load_run_model(run, device).eval()
        long = plan.kind == "causal" and inputs.long_noise is not None
        # 3. generate (causal: once, long; the training-length clip is its prefix)
        tic = time.perf_counter()
        latents, counter = generate_latents(cfg, model, plan, inputs, long, batch_size, device)
        generate_seconds = time.perf_counter() - tic
        counted_frames = (inputs.long_noise if long else inputs.noise).shape[2]
        with torch.no_grad():
            clips = codec.decode(latents[:, :, : cfg.latent_frames]).clamp(-1, 1).float()
            long_clips = codec.decode(latents).clamp(-1, 1).float() if long else None
        del model
        # 4. metrics, motion ratio and Drift
        tic = time.perf_counter()
        means, per_clip = score_clips(suite, clips, images, gt_motion)
        if long:
            result = drift(long_clips[:, :, pixel_ctx:], suite.quality, num_segments=long_video_factor)
            drift_info = dict(applicable=True, name=result.name, value=result.drift, curve=result.curve,
                              segment_bounds=result.bounds, per_clip=result.per_video,
                              frames=long_frames, segments=long_video_factor)  # fmt: skip
        else:
            why = ("bidirectional teacher: it samples a whole clip of its training length at once and cannot "
                   "stream a longer video" if plan.kind == "teacher" else "long_video_factor = 0")  # fmt: skip
            drift_info = dict(applicable=False, name=f"Drift ({suite.quality.name})", value=None, reason=why)
        metric_seconds = time.perf_counter() - tic
        nfe = nfe_summary(cfg, plan, counter, counted_frames)
        summary = dict(
            run=name, run_path=str(run.path), stage=run.info["stage"], preset=cfg.name, method=plan.method,
            kind=plan.kind, sigmas=plan.sigmas, steps_per_chunk=plan.steps_per_chunk,
            teacher_steps=plan.teacher_steps, guidance_scale=plan.guidance_scale,
            teacher_sampler=cfg.sampling.teacher_sampler if plan.kind == "teacher" else None,
            nfe=nfe, metrics=means, per_clip=per_clip, drift=drift_info,
            motion=dict(ground_truth_px=gt_motion, source=gt_source),
            num_clips=num_clips, clip_sources=list(inputs.batch["source"]), seed=seed,
            long_video_factor=long_video_factor, backbones=suite_backbones(suite),
            clip=dict(latent_frames=cfg.latent_frames, pixel_frames=int(clips.shape[2]), height=cfg.data.height,
                      width=cfg.data.width, fps=cfg.data.fps, frames_per_chunk=cfg.chunking.frames_per_chunk,
                      context_frames=ctx, sink_frames=cfg.chunking.sink_frames,
                      window_frames=cfg.chunking.window_frames),
            generate_seconds=generate_seconds, metric_seconds=metric_seconds, batch_size=batch_size,
            device=str(device), commit=git_commit(), evaluated=time.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
        summary["row"] = table_row(summary)
        atomic_write_json(run.path / out_name, summary, overwrite, default=json_default)
        results[name] = summary
        if collect_videos is not None:
            collect_videos[name] = clips
    return results


def evaluate_data(cfg: ExperimentConfig, num_clips: int, suite: MetricSuite | None = None) -> dict:
    """The reference row: the held-out clips themselves, scored like the runs (no NFE, no Drift)."""
    suite = suite or MetricSuite(fps=cfg.data.fps, grid_period=patch_grid_pixels(cfg))
    test = build_dataset(cfg, "test")
    batch = collate([test[i] for i in range(min(num_clips, len(test)))])
    gt_motion, source = ground_truth_motion(batch, suite)
    means, per_clip = score_clips(suite, batch["video"], batch["first_frame"], gt_motion)
    summary = dict(method="Data (held-out clips)", kind="data", metrics=means, per_clip=per_clip, nfe=None,
                   drift=dict(applicable=False, name=f"Drift ({suite.quality.name})", value=None, reason="data"),
                   motion=dict(ground_truth_px=gt_motion, source=source))  # fmt: skip
    summary["row"] = table_row(summary)
    return summary
