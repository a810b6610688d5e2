"""Discriminator sensitivity probe: which Stage III critic design tells real clips from fakes with known flaws?

AAD-1 Stage III's mechanism claim: *a frame-wise or causal critic is deceived by realistic static frames; a
bidirectional video-level critic is not.* The probe tests the critic alone, without a generator: each
``VideoDiscriminator`` design (attention bidirectional|causal × logit video|frame), built as Stage III builds it
(:func:`aad1lib.train.stage3.build_discriminator`), is trained D-only with Stage III's own objective
(:func:`~aad1lib.train.stage3.discriminator_objective`: same noising, λ, R1/R2 σ, AdamW betas, gradient clip) on
the preset's train clips against synthetic failure modes, and scored on held-out clips with fixed noise:

- ``static``: every frame = the clip's first frame (perfect motion collapse);
- ``drift``: frame k + k·rate·(a per-clip unit colour direction), clamped to [-1, 1];
- ``grid``: frame k + k·rate on the rows and columns ≡ 0 mod the patch period (``patch_grid_pixels``: the model's
  patch size × the codec's spatial factor, the grid the evaluation's blockiness score reads), clamped: it GROWS
  linearly with the frame index, like drift;
- ``samples``: one-step rollouts of a finished Stage II run (Stage III's own fakes), only when one is given.

Every fake keeps the real first frame (the I2V frame the generator is given). Fakes are made in pixel space and
encoded by the codec. A seed sets D's heads, the batches, the noise and the drift directions; the backbone (a
teacher run's weights, else a fresh ``build_wan``) and the held-out clips are the same for every run.
It lives in ``study/`` (not ``eval/``): it trains critics and reuses :func:`aad1lib.study.results.mean_ci`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import flow
from ..builders import build_dataset, build_latent_codec, build_text, build_wan, collate, load_run_model, load_wan
from ..conditioning import I2VConditioner, build_image_encoder, context_of
from ..config import ExperimentConfig
from ..eval.scoring import patch_grid_pixels
from ..models.discriminator import ATTENTION_MODES, LOGIT_MODES
from ..rollout import seeded_renoise, stream_generate
from ..run_folder import RunFolder
from ..train.stage3 import (
    build_discriminator,
    check_init_run,
    clip_logits,
    discriminator_condition,
    discriminator_objective,
    heldout_accuracy,
)
from .results import format_cell, mean_ci

DESIGNS = tuple(f"{a}/{logit}" for a in ATTENTION_MODES for logit in LOGIT_MODES)
FAILURES = ("static", "drift", "grid", "samples")
METRICS = ("accuracy", "pair_accuracy", "gap")
RGB = 3  # channels of the pixel clips the fakes are made from


# ---- fakes: pure functions of pixel clips [B, C, F, H, W] in [-1, 1] -----------------------------------------
def static_fake(video: torch.Tensor) -> torch.Tensor:
    """``[B, C, F, H, W]`` -> the same shape, every frame replaced by frame 0 (perfect motion collapse)."""
    return video[:, :, :1].expand_as(video).clone()


def drift_direction(batch: int, channels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, C]`` random unit colour directions, one per clip."""
    direction = torch.randn(batch, channels, generator=generator)
    return direction / direction.norm(dim=1, keepdim=True)


def drift_fake(video: torch.Tensor, rate: float, direction: torch.Tensor) -> torch.Tensor:
    """``[B, C, F, H, W]`` + k·rate·``direction [B, C]`` on frame k, clamped to [-1, 1]: a colour/brightness drift
    growing linearly with the frame index (frame 0 untouched)."""
    k = torch.arange(video.shape[2], dtype=video.dtype, device=video.device)
    shift = rate * direction.to(video)[:, :, None, None, None] * k[None, None, :, None, None]  # [B, C, F, 1, 1]
    return (video + shift).clamp(-1, 1)


def grid_pattern(height: int, width: int, period: int) -> torch.Tensor:
    """``[H, W]``: 1 on the rows and columns ≡ 0 mod ``period`` (the first pixel of each patch), else 0."""
    rows, cols = torch.arange(height) % period == 0, torch.arange(width) % period == 0
    return (rows[:, None] | cols[None, :]).float()


def grid_fake(video: torch.Tensor, period: int, rate: float) -> torch.Tensor:
    """``[B, C, F, H, W]`` + k·rate on the patch-grid lines (:func:`grid_pattern`) of frame k, clamped to [-1, 1]:
    grid artefacts at the patch period, growing linearly with the frame index (frame 0 untouched)."""
    k = torch.arange(video.shape[2], dtype=video.dtype, device=video.device)
    grid = grid_pattern(video.shape[3], video.shape[4], period).to(video)
    return (video + rate * k[:, None, None] * grid).clamp(-1, 1)  # [F, H, W] broadcast over B, C


def design_config(cfg: ExperimentConfig, design: str, seed: int) -> ExperimentConfig:
    """``cfg`` with ``stage3.disc_attention/disc_logit`` from ``design`` (``"causal/frame"``) and ``seed``."""
    attention, _, logit = design.partition("/")
    if attention not in ATTENTION_MODES or logit not in LOGIT_MODES:
        raise ValueError(f"unknown discriminator design {design!r}; allowed: {list(DESIGNS)}")
    stage3 = dataclasses.replace(cfg.stage3, disc_attention=attention, disc_logit=logit)
    return dataclasses.replace(cfg, seed=seed, stage3=stage3)


def _rows(condition: dict, sl: slice) -> dict:
    return {k: v[sl] for k, v in condition.items()}


@dataclass
class ProbeResult:
    curves: pd.DataFrame  # a row per (design, failure, seed, update): accuracy, pair_accuracy, gap, d_real, d_fake,
    #                       d_loss (the training loss's mean since the previous evaluation)
    backbone: str  # where D's backbone came from
    seconds_per_update: float  # one D update with its batch (clips, encoding, fakes), no evaluations; mean of all
    settings: dict

    def table(self, update: int | None = None) -> pd.DataFrame:
        return probe_table(self.curves, update)


def run_probe(
    cfg: ExperimentConfig, designs=DESIGNS, failures=("static", "drift", "grid"), seeds=(0,), updates: int = 100,
    eval_every: int = 20, teacher_run: RunFolder | None = None, init_run: RunFolder | None = None,
    drift_rate: float = 0.05, grid_rate: float = 0.05, device: str = "cpu", progress: bool = True,
) -> ProbeResult:  # fmt: skip
    """Train every design × failure × seed D-only for ``updates``; measure it at update 0 and every ``eval_every``
    updates on held-out clips (the test split's first ``stage3.disc_eval_clips``, as Stage III's held-out metrics).
    D settings come from ``cfg`` (``stage3.lam/t_min/t_max/r1_sigma/lr_discriminator/beta1/beta2``,
    ``train.batch_size/grad_clip``, ``sampling.shift``): pass overrides to ``load_preset``. ``init_run``: a finished
    Stage II run for ``samples`` (skipped without one); its teacher is D's backbone unless ``teacher_run`` is given,
    as in Stage III."""
    bad = [f for f in failures if f not in FAILURES]
    if bad or updates < 1 or eval_every < 1:
        raise ValueError(f"failures {bad} unknown (allowed {list(FAILURES)}) or updates/eval_every < 1")
    for design in designs:
        design_config(cfg, design, cfg.seed)  # fails early on an unknown design
    if "samples" in failures and init_run is None:
        warnings.warn("failure mode 'samples' skipped: no Stage II run (init_run) given", stacklevel=2)
        failures = [f for f in failures if f != "samples"]
    s3, n, ctx, layout = cfg.stage3, cfg.train.batch_size, cfg.chunking.context_frames, cfg.chunk_layout()
    text_encoder = build_text(cfg).requires_grad_(False).eval().to(device)
    codec = build_latent_codec(cfg).requires_grad_(False).eval().to(device)
    conditioner = I2VConditioner(cfg, codec, build_image_encoder(cfg))

    student, sigmas = None, None
    if init_run is not None:
        summary = check_init_run(init_run)
        teacher_run = teacher_run or RunFolder.open(summary["teacher_run"])
        student = load_run_model(init_run, device).requires_grad_(False).eval()
        if init_run.info["stage"] == "stage2":  # one step per chunk, as Stage III
            sigmas = torch.tensor(summary["sigmas"])[[0, -1]]
        else:
            sigmas = torch.tensor([summary["target_sigmas"][0], 0.0])
    if s3.disc_pretrained:
        backbone, source = load_wan(s3.disc_pretrained), f"Wan checkpoint {s3.disc_pretrained} (stage3.disc_pretrained)"
    elif teacher_run is not None:
        backbone, source = load_run_model(teacher_run), f"{teacher_run.info.get('stage')} run {teacher_run.path}"
    else:
        backbone, source = build_wan(cfg), f"fresh build_wan (seed {cfg.seed}): no teacher run given"

    def disc_inputs(condition: dict) -> dict | None:  # as Stage III gives it
        return discriminator_condition(cfg, backbone, condition)

    @torch.no_grad()
    def encode(batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        condition = conditioner(batch["first_frame"].to(device))
        return codec.encode(batch["video"].to(device)), text_encoder.encode(batch["prompt"])[0], condition

    @torch.no_grad()
    def make_fake(failure, batch, real, text, condition, direction, seed) -> torch.Tensor:
        if failure == "samples":  # Stage III's fakes: the rollout from the real clip's first frame
            noise = torch.randn(real[:, :, ctx:].shape, generator=torch.Generator().manual_seed(seed)).to(real)
            return stream_generate(student, layout, text, noise, sigmas.to(real), context=context_of(real, ctx),
                                   renoise=seeded_renoise(seed), condition=condition).video  # fmt: skip
        video = batch["video"].to(device)
        pixels = {"static": lambda: static_fake(video), "drift": lambda: drift_fake(video, drift_rate, direction),
                  "grid": lambda: grid_fake(video, patch_grid_pixels(cfg), grid_rate)}[failure]()  # fmt: skip
        return codec.encode(pixels)

    pool, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    held = collate([test[i] for i in range(min(s3.disc_eval_clips, len(test)))])
    held_real, held_text, held_cond = encode(held)
    shape, m = held_real.shape[1:], held_real.shape[0]

    @torch.no_grad()
    def evaluate(disc, fake, sigma, noise) -> dict[str, float]:
        """Stage III's held-out metrics (:func:`heldout_accuracy`): sign accuracy, pair accuracy, gap."""
        logits: list[list[torch.Tensor]] = [[], []]
        for out, x, eps in zip(logits, (held_real, fake), noise, strict=True):
            for i in range(0, m, n):
                sl, s = slice(i, i + n), sigma[i : i + n]
                out.append(disc(flow.add_noise(x[sl], eps[sl], s), flow.sigma_to_timestep(s), held_text[sl],
                                disc_inputs(_rows(held_cond, sl))))  # fmt: skip
        real, fake_logits = torch.cat(logits[0]), torch.cat(logits[1])
        acc = heldout_accuracy(real, fake_logits)
        return dict(accuracy=acc["d_acc"], pair_accuracy=acc["d_pair_acc"], gap=acc["d_gap_heldout"],
                    d_real=clip_logits(real).mean().item(), d_fake=clip_logits(fake_logits).mean().item())  # fmt: skip

    rows, train_seconds, done = [], 0.0, 0
    bar = tqdm(total=len(seeds) * len(designs) * len(failures) * updates, desc="D probe", disable=not progress)
    for seed in seeds:
        gen_eval = torch.Generator().manual_seed(10_000 + seed)  # fixed held-out noise: same for every design/update
        sigma_eval = flow.sample_timesteps(m, gen_eval, cfg.sampling.shift, s3.t_min, s3.t_max).to(held_real)
        noise_eval = torch.randn((2, *held_real.shape), generator=gen_eval).to(held_real)
        dir_eval = drift_direction(m, RGB, gen_eval)
        held_fakes = {f: make_fake(f, held, held_real, held_text, held_cond, dir_eval, 20_000 + seed) for f in failures}
        for design in designs:
            for failure in failures:
                bar.set_postfix(design=design, failure=failure, seed=seed)
                disc = build_discriminator(design_config(cfg, design, seed), backbone).to(device)
                params = [p for p in disc.parameters() if p.requires_grad]
                opt = torch.optim.AdamW(params, s3.lr_discriminator, betas=(s3.beta1, s3.beta2), weight_decay=0.0)
                gen = torch.Generator().manual_seed(seed)  # the same batches and noise for every design and failure
                key = dict(design=design, failure=failure, seed=seed)
                metrics = evaluate(disc.eval(), held_fakes[failure], sigma_eval, noise_eval)  # before training
                rows.append(dict(key, update=0, d_loss=np.nan, **metrics))
                disc.train()
                losses = []
                for update in range(1, updates + 1):
                    idx = torch.randint(len(pool), (n,), generator=gen).tolist()
                    sigma = flow.sample_timesteps(n, gen, cfg.sampling.shift, s3.t_min, s3.t_max).to(device)
                    d_noise = torch.randn((4, n, *shape), generator=gen).to(device)  # real/fake noising, R1/R2
                    direction, fake_seed = drift_direction(n, RGB, gen), int(torch.randint(2**62, (1,), generator=gen))
                    tic = time.perf_counter()
                    batch = collate([pool[i] for i in idx])
                    real, text, condition = encode(batch)
                    fake = make_fake(failure, batch, real, text, condition, direction, fake_seed)
                    loss, logs = discriminator_objective(disc, real, fake, sigma, d_noise, text, s3.lam, s3.r1_sigma,
                                                         disc_inputs(condition))  # fmt: skip
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"D loss {loss.item()} at update {update} ({key})")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.train.grad_clip and cfg.train.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
                    opt.step()
                    train_seconds, done = train_seconds + time.perf_counter() - tic, done + 1
                    losses.append(logs["d_loss"])
                    bar.update()
                    if update % eval_every == 0 or update == updates:
                        metrics = evaluate(disc.eval(), held_fakes[failure], sigma_eval, noise_eval)
                        rows.append(dict(key, update=update, d_loss=float(np.mean(losses)), **metrics))
                        disc.train()
                        losses = []
                del disc, opt
    bar.close()
    settings = dict(preset=cfg.name, designs=list(designs), failures=list(failures), seeds=list(seeds),
                    updates=updates, eval_every=eval_every, eval_clips=m, batch_size=n, lam=s3.lam,
                    r1_sigma=s3.r1_sigma, t_min=s3.t_min, t_max=s3.t_max, shift=cfg.sampling.shift,
                    lr=s3.lr_discriminator, betas=[s3.beta1, s3.beta2], drift_rate=drift_rate, grid_rate=grid_rate,
                    grid_period=patch_grid_pixels(cfg), init_run=str(init_run.path) if init_run else None)  # fmt: skip
    return ProbeResult(pd.DataFrame(rows), source, train_seconds / max(done, 1), settings)


def probe_table(curves: pd.DataFrame, update: int | None = None) -> pd.DataFrame:
    """One row per design × failure at ``update`` (default: the last): each metric's mean over seeds and the
    half-width of its 95 % Student-t interval (``<metric> ±``, NaN for one seed), and the number of seeds."""
    update = int(curves["update"].max()) if update is None else update
    rows = []
    for (design, failure), group in curves[curves["update"] == update].groupby(["design", "failure"], sort=False):
        row = dict(design=design, failure=failure, update=update)
        for metric in METRICS:
            mean, half, seeds = mean_ci(group[metric].tolist())
            row[metric], row[f"{metric} ±"] = mean, half
        rows.append(dict(row, seeds=seeds))
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """:func:`probe_table` as Markdown: design, failure, mean ± 95 % interval per metric, seeds."""
    lines = ["| design | failure | " + " | ".join(METRICS) + " | seeds |", "|---" * (len(METRICS) + 3) + "|"]
    for _, r in table.iterrows():
        cells = [format_cell(r[m], r[f"{m} ±"], digits) for m in METRICS]
        lines.append(f"| {r['design']} | {r['failure']} | " + " | ".join(cells) + f" | {r['seeds']} |")
    return "\n".join(lines)


def plot_probe(curves: pd.DataFrame, metrics=("accuracy", "gap"), title: str = "D probe (mean ± 95 % CI over seeds)"):
    """Each metric against D updates, one column per failure mode, one line (+ CI band) per design; a Figure."""
    from matplotlib.figure import Figure

    failures = list(dict.fromkeys(curves["failure"]))
    fig = Figure(figsize=(3.4 * len(failures), 2.6 * len(metrics)), layout="constrained")
    axes = fig.subplots(len(metrics), len(failures), squeeze=False, sharex=True)
    for col, failure in enumerate(failures):
        for design, group in curves[curves["failure"] == failure].groupby("design", sort=False):
            for row, metric in enumerate(metrics):
                stats = np.array([(u, *mean_ci(g[metric].tolist())[:2]) for u, g in group.groupby("update")])
                x, mean, half = stats.T
                (line,) = axes[row, col].plot(x, mean, marker=".", label=design)
                band = np.nan_to_num(half)
                axes[row, col].fill_between(x, mean - band, mean + band, color=line.get_color(), alpha=0.2)
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            ax.axhline(0.5 if "accuracy" in metric else 0.0, color="grey", lw=0.8, ls=":")  # chance / no gap
            if "accuracy" in metric:
                ax.set_ylim(-0.03, 1.03)  # a t-interval over 2-3 seeds reaches far past [0, 1]
            ax.set_title(f"{failure}: {metric}", fontsize=9)
            ax.grid(alpha=0.3)
        axes[-1, col].set_xlabel("D updates")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    ncol = min(len(labels), 2 * len(failures))  # one failure column is too narrow for four names in a row
    fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig
