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
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..builders import build_dataset, build_latent_codec, build_text, collate, load_run_model
from ..conditioning import I2VConditioner, build_image_encoder, context_of
from ..config import ExperimentConfig
from ..flow import student_sigmas
from ..rollout import seeded_renoise, stream_generate
from ..run_folder import RunFolder, atomic_write_json, git_commit
from ..runs import resolve_spec, run_summary
from ..sampling import sample_i2v
from .metrics import (
    MetricSuite,
    OpenCVFlow,
    drift,
    load_aesthetic,
    load_clip,
    load_dino,
    load_dreamsim,
    load_musiq,
    load_raft,
    mean_flow_magnitude,
)
from .metrics.motion import motion_ratio
from .sample_motion import stated_speed_px

CAUSAL_STAGES = ("stage1", "stage2", "stage3")


# ---- how a run generates ----------------------------------------------------------------------------
@dataclass
class GenerationPlan:
    """How a run's model samples: the bidirectional teacher (whole clip) or a causal student (chunks)."""

    kind: str  # "teacher" | "causal"
    method: str  # table label
    sigmas: list[float] | None = None  # causal: few-step levels incl. the terminal 0
    teacher_steps: int | None = None
    guidance_scale: float | None = None

    @property
    def steps_per_chunk(self) -> int | None:
        return None if self.sigmas is None else len(self.sigmas) - 1


def generation_plan(cfg: ExperimentConfig, run: RunFolder) -> GenerationPlan:
    """Read from the run's finished.json what the model was trained to do, and name it for the table."""
    stage, summary = run.info["stage"], run_summary(run)
    if stage == "teacher":
        s = cfg.sampling
        cfg_text = " × CFG" if s.guidance_scale != 1.0 else ""
        return GenerationPlan("teacher", f"Teacher ({s.teacher_steps} steps{cfg_text})", None, s.teacher_steps,
                              s.guidance_scale)  # fmt: skip
    if stage == "stage1":  # the Stage I student on all of its target levels
        sigmas = student_sigmas(torch.tensor(summary["target_sigmas"]), len(summary["target_sigmas"]))
        return GenerationPlan("causal", f"Stage I ({len(sigmas) - 1}-step)", sigmas.tolist())
    if stage == "stage2":
        steps = summary.get("student_steps", len(summary["sigmas"]) - 1)
        if steps == 1:
            method = "AAD-1 Stage II (DMD, 1-step)"
        elif summary.get("rollout") == "teacher_forced":
            method = f"CausVid-style ({steps}-step)"
        else:
            method = f"Self-Forcing-style ({steps}-step)"
        return GenerationPlan("causal", method, list(summary["sigmas"]))
    if stage == "stage3":
        ablations = []
        if summary.get("disc_attention", "bidirectional") != "bidirectional":
            ablations.append(f"{summary['disc_attention']} D")
        if summary.get("disc_logit", "video") != "video":
            ablations.append(f"{summary['disc_logit']} logits")
        if summary.get("init_stage") == "stage1":
            ablations.append("no DMD warm-up")
        method = "AAD-1 (Stage III)" + (f", {', '.join(ablations)}" if ablations else "")
        return GenerationPlan("causal", method, list(summary["sigmas"]))
    raise ValueError(f"{run.path} is a {stage!r} run; can evaluate {['teacher', *CAUSAL_STAGES]}")


class PassCounter:
    """Counts a model's forward passes per sample while active (a forward pre-hook, so nothing is assumed).

    ``nfe``: denoising evaluations (a call on ``k × batch`` rows, e.g. CFG's conditional + unconditional
    batch, counts ``k``); ``cache_writes``: calls with ``update_cache=True`` (a causal model writing a
    finished chunk, or the context frame, into its KV cache).
    """

    def __init__(self, model: torch.nn.Module, batch: int):
        self.model, self.batch = model, batch
        self.nfe = 0.0
        self.cache_writes = 0.0
        self._handle = None

    def _hook(self, module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        rows = x.shape[0] / self.batch
        if kwargs.get("update_cache"):
            self.cache_writes += rows
        else:
            self.nfe += rows

    def __enter__(self) -> PassCounter:
        self._handle = self.model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


# ---- shared inputs ----------------------------------------------------------------------------------
@dataclass
class EvalInputs:
    batch: dict  # collated held-out clips (pixels, first frames, prompts, motion, sources)
    latents: torch.Tensor  # [B, C, F, H, W] encoded clips (the first ctx frames are the given context)
    text: torch.Tensor  # [B, L, D]
    empty_text: torch.Tensor  # [B, L, D] the empty prompt (teacher CFG)
    noise: torch.Tensor  # [B, C, F_gen, H, W] noise of the training-length clip (every run gets the same)
    long_noise: torch.Tensor | None  # [B, C, factor × F_gen, H, W]; its first F_gen frames are ``noise``
    seed: int
    condition: dict  # Wan I2V inputs of the clips (model.i2v = wan_i2v; {} for context_frame)
    long_condition: dict  # the same for the long rollout's length


def eval_inputs(cfg: ExperimentConfig, num_clips: int, long_video_factor: int, seed: int) -> EvalInputs:
    """The first ``num_clips`` held-out test clips and the noise every run starts from."""
    test = build_dataset(cfg, "test")
    if not 1 <= num_clips <= len(test):
        raise ValueError(f"num_clips must lie in 1..{len(test)} (the preset's test clips), got {num_clips}")
    batch = collate([test[i] for i in range(num_clips)])
    text_encoder, codec = build_text(cfg), build_latent_codec(cfg)
    conditioner = I2VConditioner(cfg, codec, build_image_encoder(cfg))  # image encoder: once per clip
    ctx = cfg.chunking.context_frames
    with torch.no_grad():
        latents = codec.encode(batch["video"])
        text = text_encoder.encode(batch["prompt"])[0]
        empty = text_encoder.encode([""])[0].expand_as(text)
    gen_shape = (latents.shape[0], latents.shape[1], latents.shape[2] - ctx, *latents.shape[3:])
    noise = torch.randn(gen_shape, generator=torch.Generator().manual_seed(seed))
    long_noise, long_condition = None, {}
    condition = conditioner(batch["first_frame"])
    if long_video_factor >= 2:  # extra noise from its own stream: the short clip does not depend on the factor
        extra = (*gen_shape[:2], gen_shape[2] * (long_video_factor - 1), *gen_shape[3:])
        long_noise = torch.cat([noise, torch.randn(extra, generator=torch.Generator().manual_seed(seed + 1))], 2)
        long_pixel_frames = 1 + cfg.temporal_factor * (ctx + long_noise.shape[2] - 1)
        long_condition = conditioner(batch["first_frame"], long_pixel_frames)
    return EvalInputs(batch, latents, text, empty, noise, long_noise, seed, condition, long_condition)


# ---- generation ---------------------------------------------------------------------------------------
@torch.no_grad()
def generate_latents(
    cfg: ExperimentConfig,
    model,
    plan: GenerationPlan,
    inputs: EvalInputs,
    long: bool,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, PassCounter]:
    """Latents ``[B, C, F, H, W]`` (context frames first) of ``plan`` for ``inputs``, in batches of ``batch_size``;
    ``long`` = the causal long rollout from ``inputs.long_noise``. Returns the latents and the pass counts of
    the first batch."""
    ctx, layout = cfg.chunking.context_frames, cfg.chunk_layout()
    noise_all = inputs.long_noise if long else inputs.noise
    condition_all = inputs.long_condition if long else inputs.condition
    outputs, counter = [], None
    for start in range(0, noise_all.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        context = context_of(inputs.latents[rows], ctx)
        context = context.to(device) if context is not None else None
        condition = {k: v[rows].to(device) for k, v in condition_all.items()}
        text, noise = inputs.text[rows].to(device), noise_all[rows].to(device)
        with PassCounter(model, noise.shape[0]) as count:
            if plan.kind == "teacher":
                s = cfg.sampling
                out = sample_i2v(model, context, text, ctx + noise.shape[2], s.teacher_steps, s.shift,
                                 uncond_text=inputs.empty_text[rows].to(device), guidance_scale=s.guidance_scale,
                                 sampler=s.teacher_sampler, noise=noise, condition=condition)  # fmt: skip
            else:
                sigmas = torch.tensor(plan.sigmas).to(noise)
                out = stream_generate(model, layout, text, noise, sigmas, context=context, condition=condition,
                                      renoise=seeded_renoise(inputs.seed + 2 + start)).video  # fmt: skip
        counter = counter or count
        outputs.append(out.float().cpu())
    return torch.cat(outputs), counter


def nfe_summary(cfg: ExperimentConfig, plan: GenerationPlan, counter: PassCounter, generated_frames: int) -> dict:
    """Passes per chunk / per training-length clip from the counted passes of ``generated_frames`` frames."""
    per_chunk_frames, ctx = cfg.chunking.frames_per_chunk, cfg.chunking.context_frames
    clip_chunks = (cfg.latent_frames - ctx) // per_chunk_frames
    if plan.kind == "teacher":
        nfe = counter.nfe
        return dict(nfe_per_chunk=None, nfe_per_clip=_int(nfe), cache_writes_per_chunk=0, passes_per_chunk=None,
                    passes_per_clip=_int(nfe), chunks_per_clip=clip_chunks,
                    note="bidirectional: the whole clip per pass; NFE = sampler steps × 2 with CFG")  # fmt: skip
    chunks = generated_frames // per_chunk_frames
    context_writes = 1 if ctx else 0
    nfe_chunk = counter.nfe / chunks
    writes_chunk = (counter.cache_writes - context_writes) / chunks
    return dict(
        nfe_per_chunk=_int(nfe_chunk), nfe_per_clip=_int(nfe_chunk * clip_chunks),
        cache_writes_per_chunk=_int(writes_chunk), passes_per_chunk=_int(nfe_chunk + writes_chunk),
        passes_per_clip=_int(context_writes + (nfe_chunk + writes_chunk) * clip_chunks), chunks_per_clip=clip_chunks,
        note="causal: few-step denoising per chunk + 1 pass writing the finished chunk into the KV cache "
             "(+1 for the context frame per clip)",
    )  # fmt: skip


def _int(x: float) -> int | float:
    return int(round(x)) if abs(x - round(x)) < 1e-6 else x


# ---- metrics ---------------------------------------------------------------------------------------
def make_suite(
    flow: str = "DIS",
    dino_dir: str | None = None,
    clip_dir: str | None = None,
    raft_path: str | None = None,
    musiq_path: str | None = None,
    dreamsim_dir: str | None = None,
    fps: float | None = None,
    device: str = "cpu",
    grid_period: int | None = None,
    aesthetic_clip_dir: str | None = None,
    aesthetic_head_path: str | None = None,
) -> MetricSuite:
    """A MetricSuite whose roles use the published backbone where a local path is given, else the offline one.

    ``flow``: "DIS" | "Farneback" (OpenCV) | "RAFT" (needs ``raft_path``). Aesthetic Quality needs both
    ``aesthetic_clip_dir`` (CLIP ViT-L/14) and ``aesthetic_head_path`` (the LAION head), or neither.
    """
    if flow == "RAFT" and raft_path is None:
        raise ValueError("flow='RAFT' needs raft_path (local RAFT weights)")
    if raft_path is not None:
        flow_estimator = load_raft(raft_path, device=device)
    elif flow in ("DIS", "Farneback"):
        flow_estimator = OpenCVFlow(flow)
    else:
        raise ValueError(f"flow must be 'DIS', 'Farneback' or 'RAFT', got {flow!r}")
    if (aesthetic_clip_dir is None) != (aesthetic_head_path is None):
        raise ValueError("Aesthetic Quality needs both aesthetic_clip_dir (CLIP ViT-L/14) and aesthetic_head_path "
                         "(LAION head weights), or neither (offline stand-in)")  # fmt: skip
    aesthetic = load_aesthetic(aesthetic_clip_dir, aesthetic_head_path, device=device) if aesthetic_clip_dir else None
    return MetricSuite(
        subject=load_dino(dino_dir, device=device) if dino_dir else None,
        background=load_clip(clip_dir, device=device) if clip_dir else None,
        flow=flow_estimator,
        quality=load_musiq(musiq_path, device=device) if musiq_path else None,
        i2v_background=load_dreamsim(dreamsim_dir, device=device) if dreamsim_dir else None,
        fps=fps,
        grid_period=grid_period,
        aesthetic=aesthetic,
    )


def patch_grid_pixels(cfg: ExperimentConfig) -> int:
    """Pixels per generator patch along a side (patch size × the codec's spatial factor): the grid that
    λ-too-large artefacts line up with."""
    return int(cfg.model.patch_size[-1]) * cfg.spatial_factor


def suite_backbones(suite: MetricSuite) -> dict[str, str]:
    roles = ("subject", "background", "flow", "quality", "aesthetic", "i2v_subject", "i2v_background")
    return {role: getattr(suite, role).name for role in roles}


def ground_truth_motion(batch: dict, suite: MetricSuite) -> tuple[list[float], str]:
    """Per-clip true motion in px/frame: the synthetic set's stated motion, else the data clip's measured flow."""
    speeds = stated_speed_px(batch["motion"])
    if speeds is not None:
        return speeds, "synthetic ground truth (mean_speed_px)"
    return [mean_flow_magnitude(v, suite.flow) for v in batch["video"]], f"data clip flow ({suite.flow.name})"


def score_clips(suite: MetricSuite, videos: torch.Tensor, images: torch.Tensor, gt_motion: list[float]):
    """(means, per-clip lists) of every suite metric and the motion ratio for pixel clips [B, 3, F, H, W]."""
    per_clip = suite.evaluate(videos, images, per_video=True)
    means = {name: float(np.mean(values)) for name, values in per_clip.items()}
    moved = per_clip[f"Motion px/frame ({suite.flow.name})"]
    ratio_name = f"Motion Ratio ({suite.flow.name})"
    means[ratio_name], per_clip[ratio_name] = motion_ratio(moved, gt_motion)
    return means, per_clip


# ---- the evaluation -------------------------------------------------------------------------------------
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

    Returns ``{run folder name: summary}``; each summary has a ``row`` for :func:`format_main_table`.
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
        atomic_write_json(run.path / out_name, summary, overwrite, default=_json_default)
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


# ---- tables -------------------------------------------------------------------------------------------
def table_row(summary: dict) -> dict[str, Any]:
    """One row of the main table: method, NFE, every metric (backbone in the name), Drift, motion ratio."""
    nfe = summary.get("nfe") or {}
    row: dict[str, Any] = {
        "Method": summary["method"],
        "NFE / chunk": nfe.get("nfe_per_chunk"),
        "NFE / clip": nfe.get("nfe_per_clip"),
        "passes / chunk": nfe.get("passes_per_chunk"),
    }
    metrics = dict(summary["metrics"])
    ratio = {k: metrics.pop(k) for k in list(metrics) if k.startswith("Motion Ratio")}
    row.update(metrics)
    drift_info = summary["drift"]
    row[drift_info["name"] + " ↓"] = drift_info["value"] if drift_info["applicable"] else "n/a"
    row.update(ratio)
    return row


def format_main_table(results: dict[str, dict] | list[dict], reference: dict | None = None, digits: int = 3) -> str:
    """Markdown table of :func:`evaluate_runs`'s results (plus an optional :func:`evaluate_data` row)."""
    summaries = list(results.values()) if isinstance(results, dict) else list(results)
    if reference is not None:
        summaries = [reference, *summaries]
    rows = [s["row"] for s in summaries]
    headers = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value):
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(row.get(h)) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def plot_drift_curves(results: dict[str, dict]):
    """Imaging quality per segment of the long rollouts (one line per causal run); a matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for summary in results.values():
        d = summary["drift"]
        if d["applicable"]:
            ax.plot(range(1, len(d["curve"]) + 1), d["curve"], marker="o", label=summary["method"])
    if not ax.lines:
        ax.text(0.5, 0.5, "no long rollouts (teacher only, or long_video_factor = 0)", ha="center",
                transform=ax.transAxes)  # fmt: skip
    else:
        ax.legend(fontsize=8)
        ax.set_xticks(range(1, max(len(line.get_xdata()) for line in ax.lines) + 1))
    ax.set_xlabel("segment (one training length each)")
    ax.set_ylabel(next((s["drift"]["name"].replace("Drift", "IQ") for s in results.values()), "IQ"))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _json_default(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
