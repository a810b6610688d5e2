"""Stage I: causal init by Diffusion Forcing + ODE regression (CausVid's ODE initialisation, AAD-1 Stage I).

1. The bidirectional teacher samples trajectories (many Euler steps, CFG on); the states at the student's
   target timesteps and the endpoint x0 are stored (:mod:`aad1lib.ode_pairs`).
2. The student — the teacher's weights, run block-causal — sees each chunk at its own randomly drawn
   target state (Diffusion Forcing: one noise level per chunk) and regresses the ODE endpoint:
   ‖G(z_t, x̃_ctx,t, c) − S^ODE(z_t, x̃_ctx,t, c)‖². The I2V context frame is clean and has no loss.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.optimization import get_scheduler

from .. import flow
from ..builders import build_dataset, collate, load_run_model
from ..conditioning import I2VConditioner, context_of
from ..config import ExperimentConfig
from ..losses import ode_regression_loss
from ..models.causal_wan import CausalWanTransformer3DModel
from ..ode_pairs import ODEPairsDataset, generate_ode_pairs
from ..rollout import CONDITION_KWARGS, seeded_renoise, stream_generate
from ..run_folder import RunFolder
from .encoders import StageBatches, frozen_encoders
from .loop import TrainLoop
from .samples import save_samples

STAGE = "stage1"


@dataclass
class Stage1Run:
    run: RunFolder
    model: CausalWanTransformer3DModel
    target_sigmas: torch.Tensor  # [S] the student's few-step levels (without the terminal 0)
    train_seconds: float
    ode_seconds: float


def diffusion_forcing_inputs(states, x0, target_sigmas, chunk_index, context_frames, level):
    """Per-chunk target states (Diffusion Forcing) from ODE trajectories.

    Args:
        states: ``[B, S, C, F, H, W]`` trajectory states at the S target levels; x0 ``[B, C, F, H, W]``.
        chunk_index: ``[F]`` chunk of each frame (``-1`` = context).
        level: ``[B, num_chunks]`` target index of each chunk (see :func:`draw_chunk_levels`).
    Returns:
        x ``[B, C, F, H, W]`` (each chunk at its own level, context clean) and sigma ``[B, F]``.
    """
    batch = states.shape[0]
    frame_level = level[:, chunk_index.clamp_min(0)]  # [B, F]
    sigma = target_sigmas[frame_level]
    sigma[:, chunk_index < 0] = 0.0
    gather = frame_level.view(batch, 1, 1, -1, 1, 1).expand(-1, 1, *states.shape[2:])
    x = torch.gather(states, 1, gather).squeeze(1)
    x[:, :, :context_frames] = x0[:, :, :context_frames]
    return x, sigma


def draw_chunk_levels(batch: int, levels: int, chunk_index: torch.Tensor, generator) -> torch.Tensor:
    """``[batch, num_chunks]`` random target index per chunk (Diffusion Forcing: one noise level per chunk)."""
    return torch.randint(levels, (batch, int(chunk_index.max()) + 1), generator=generator)


def stage1_loss(student, layout, x, sigma, x0, text, condition) -> torch.Tensor:
    """Stage I's ODE regression ‖G(z_t, x̃_ctx, c) − S^ODE(z_t, x̃_ctx, c)‖² on the generated frames, the student
    block-causal; ``x`` ``[B, C, F, H, W]`` at ``sigma`` ``[B, F]`` (from :class:`Stage1Data`), ``x0`` the endpoints."""
    v = student(x, flow.sigma_to_timestep(sigma), text, chunk_layout=layout, return_dict=False, **condition)[0]
    frame_mask = layout.chunk_of(torch.arange(x.shape[2])) >= 0  # no loss on the clean context frame
    return ode_regression_loss(flow.x0_from_velocity(x, v, sigma), x0, frame_mask)


@dataclass
class Stage1Data(StageBatches):
    """Training batches for :func:`stage1_loss` (this rank's share): ODE pairs, each chunk at its own randomly
    drawn target state (Diffusion Forcing), their captions and I2V condition."""

    pairs: ODEPairsDataset

    def __post_init__(self):
        self.chunk_index = self.cfg.chunk_layout().chunk_of(torch.arange(self.cfg.latent_frames))  # [F], -1: context

    def draw(self, gen: torch.Generator) -> dict:
        cfg, loop, n, pairs, chunk_index = self.cfg, self.loop, self.cfg.train.batch_size, self.pairs, self.chunk_index
        idx = loop.local(torch.randint(len(pairs), (n,), generator=gen))
        level_gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen)))
        rows = [pairs[i] for i in idx.tolist()]
        states = torch.stack([r["states"] for r in rows]).to(loop.device)
        x0 = torch.stack([r["x0"] for r in rows]).to(loop.device)
        level = loop.local(draw_chunk_levels(n, len(pairs.target_sigmas), chunk_index, level_gen))
        x, sigma = diffusion_forcing_inputs(states, x0, pairs.target_sigmas.to(loop.device), chunk_index,
                                            cfg.chunking.context_frames, level)  # fmt: skip
        condition = {k: torch.stack([r[k] for r in rows]).to(loop.device) for k in CONDITION_KWARGS if k in rows[0]}
        with torch.no_grad():
            text = self.text_encoder.encode([r["prompt"] for r in rows])[0]
        return dict(x=x, sigma=sigma, x0=x0, text=text, condition=condition)


def train_stage1(
    cfg: ExperimentConfig,
    teacher_run: RunFolder,
    run_name: str | None = None,
    runs_root: Path | None = None,
    notebook_params: dict | None = None,
) -> Stage1Run:
    loop = TrainLoop.for_stage(STAGE, cfg, run_name, runs_root, notebook_params, init_from=teacher_run)
    s1 = cfg.stage1
    text_encoder, codec, conditioner = frozen_encoders(loop, cfg)
    ctx = cfg.chunking.context_frames
    teacher = load_run_model(teacher_run)  # fp32 on the CPU: the student's master weights start from it
    student = copy.deepcopy(teacher).requires_grad_(True)
    teacher = loop.add_frozen(teacher)  # compute dtype, sharded under FSDP2

    # 1. ODE trajectories (resumable; every rank runs the teacher on its rows, rank 0 writes)
    tic = time.time()
    pairs_dir = loop.run.path / "ode_pairs"
    with loop.accelerator.autocast():
        generate_ode_pairs(pairs_dir, teacher, build_dataset(cfg, "train"), text_encoder, codec, s1.ode_pairs,
                           s1.ode_steps, s1.target_steps, cfg.sampling.shift, cfg.sampling.guidance_scale, ctx,
                           s1.shard_size, cfg.train.batch_size, cfg.seed, progress=loop.is_main,
                           rank=loop.accelerator.process_index, world_size=loop.accelerator.num_processes,
                           conditioner=conditioner)  # fmt: skip
    loop.accelerator.wait_for_everyone()
    del teacher  # Stage I needs the teacher only for its trajectories
    ode_seconds = time.time() - tic
    pairs = ODEPairsDataset(pairs_dir)
    target_sigmas = pairs.target_sigmas

    # 2. Diffusion Forcing + ODE regression
    layout = cfg.chunk_layout()
    data = Stage1Data(cfg, loop, codec, text_encoder, conditioner, pairs)
    student = loop.add_model(
        "student",
        student,
        lambda params: torch.optim.AdamW(params, lr=s1.lr, weight_decay=0.0),
        lambda opt: get_scheduler("constant_with_warmup", opt, num_warmup_steps=s1.warmup_steps),
        ema_decay=cfg.train.ema_decay,
    )

    def step_fn(step: int, gen: torch.Generator) -> dict[str, float]:
        loss = stage1_loss(student, layout, **data.draw(gen))
        grad_norm = loop.optimize("student", loss)
        return dict(loss=loss.item(), grad_norm=grad_norm or 0.0)

    fixed = collate([build_dataset(cfg, "test")[i] for i in range(s1.num_samples)])

    def sample_fn(done_steps: int) -> None:  # every rank runs the model (FSDP2 needs all), rank 0 writes
        groups = sample_student(cfg, loop.unwrap("student"), text_encoder, codec, fixed, target_sigmas,
                                steps=(s1.target_steps, 1), conditioner=conditioner)  # fmt: skip
        if loop.is_main:
            named = {f"{k} {i}": v for k, videos in groups.items() for i, v in enumerate(videos)}
            save_samples(loop.run.samples_dir / f"step-{done_steps:07d}", named, cfg.data.fps, f"step {done_steps}")

    tic = time.time()
    loop.fit(step_fn, s1.steps, sample_fn=sample_fn, desc="Stage I (DF + ODE regression)")
    train_seconds = time.time() - tic
    final = loop.export_model("student", loop.run.path / "model")
    if loop.is_main:
        loop.run.mark_finished(stage=STAGE, teacher_run=str(teacher_run.path), target_sigmas=target_sigmas.tolist(),
                               train_seconds=train_seconds, ode_seconds=ode_seconds)  # fmt: skip
    loop.end()
    return Stage1Run(loop.run, final.eval(), target_sigmas, train_seconds, ode_seconds)


@torch.no_grad()
def sample_student(cfg, student, text_encoder, codec, batch, target_sigmas, steps=(4, 1), generator=None,
                   conditioner: I2VConditioner | None = None) -> dict:  # fmt: skip
    """Chunk-by-chunk samples of the causal student at each step count: ``{"4-step": [B, 3, F, H, W], ...}``."""
    device = next(student.parameters()).device
    ctx = cfg.chunking.context_frames
    latents = codec.encode(batch["video"].to(device))
    condition = (conditioner or I2VConditioner(cfg, codec))(batch["first_frame"].to(device))
    text = text_encoder.encode(batch["prompt"])[0]
    gen = generator or torch.Generator().manual_seed(cfg.seed)
    noise = torch.randn(latents[:, :, ctx:].shape, generator=gen).to(latents)
    was_training = student.training
    student.eval()
    out = {}
    for k in steps:
        k = min(k, len(target_sigmas))
        sigmas = flow.student_sigmas(target_sigmas, k).to(latents)
        video = stream_generate(student, cfg.chunk_layout(), text, noise, sigmas, context=context_of(latents, ctx),
                                renoise=seeded_renoise(cfg.seed + 1), condition=condition).video  # fmt: skip
        out[f"{k}-step"] = codec.decode(video).clamp(-1, 1)
    student.train(was_training)
    return out
