"""Stage 0: the bidirectional I2V teacher, trained with flow matching (CPU presets) or loaded (Wan presets).

Training (rectified flow, as Wan): x_t = (1 - σ) x0 + σ ε with σ ~ shifted U(0, 1) per clip, the model
regresses v = ε - x0. I2V: the first frame(s) enter clean with timestep 0 and are left out of the loss;
captions are dropped ~10 % of the time so classifier-free guidance works at sampling time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.optimization import get_scheduler

from .. import flow
from ..builders import build_dataset, build_latent_codec, build_text, build_wan, collate
from ..conditioning import I2VConditioner, build_image_encoder
from ..config import ExperimentConfig, check_pretrained_sizes
from ..losses import flow_matching_loss, x0_loss_sigma
from ..models.causal_wan import CausalWanTransformer3DModel
from ..run_folder import RunFolder
from ..sampling import sample_i2v
from .encoders import StageBatches, frozen_encoders
from .loop import TrainLoop
from .samples import save_samples

STAGE = "teacher"


@dataclass
class TeacherRun:
    run: RunFolder
    model: CausalWanTransformer3DModel | None  # None for a pretrained teacher loaded by several processes
    train_seconds: float


def teacher_loss(
    model: CausalWanTransformer3DModel,
    latents: torch.Tensor,
    text: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor,
    context_frames: int,
    condition: dict | None = None,
) -> torch.Tensor:
    """Flow-matching loss on ``latents`` ``[B, C, F, H, W]`` at ``sigma`` ``[B]``; the first
    ``context_frames`` are clean context (timestep 0, no loss). ``condition``: the conditioner's inputs.

    A first-frame residual model (``condition["anchor"]``, docs/design.md §9) predicts r0: its loss is the MSE of
    x0 = x_t − σv. The velocity loss weights its r0 error by 1/σ², the rare small-σ draws dominate, and the demo
    teacher's samples filled with patch-sized noise within 600 steps (seen in its sample strips)."""
    sigma = sigma[:, None].repeat(1, latents.shape[2])  # [B, F]
    sigma[:, :context_frames] = 0.0
    x_t = flow.add_noise(latents, noise, sigma)
    v = model(x_t, flow.sigma_to_timestep(sigma), text, return_dict=False, **(condition or {}))[0]
    generated = torch.arange(latents.shape[2]) >= context_frames
    return flow_matching_loss(v, latents, noise, generated, x0_sigma=x0_loss_sigma(sigma, condition))


@dataclass
class TeacherData(StageBatches):
    """Training batches for :func:`teacher_loss` (this rank's share): clips, captions (dropped with probability
    ``teacher.caption_dropout``, for CFG), σ ~ shifted U(0, 1) per clip and the noise."""

    def __post_init__(self):
        self.train_set = build_dataset(self.cfg, "train")

    def draw(self, gen: torch.Generator) -> dict:
        cfg, loop, n = self.cfg, self.loop, self.cfg.train.batch_size  # global batch: drawn on every rank, sliced
        idx = torch.randint(len(self.train_set), (n,), generator=gen)
        drop = torch.rand(n, generator=gen) < cfg.teacher.caption_dropout
        sigma = flow.sample_timesteps(n, generator=gen, shift=cfg.sampling.shift)
        noise = torch.randn((n, *self.latent_shape), generator=gen)
        idx, drop, sigma, noise = (loop.local(t) for t in (idx, drop, sigma, noise))
        batch = collate([self.train_set[i] for i in idx.tolist()])
        prompts = ["" if d else p for d, p in zip(drop.tolist(), batch["prompt"], strict=True)]
        with torch.no_grad():
            latents = self.codec.encode(batch["video"].to(loop.device))
            text = self.text_encoder.encode(prompts)[0]
            condition = self.conditioner(batch["first_frame"].to(loop.device))
        return dict(latents=latents, text=text, sigma=sigma.to(latents), noise=noise.to(latents), condition=condition)


def train_teacher(
    cfg: ExperimentConfig,
    run_name: str | None = None,
    runs_root: Path | None = None,
    notebook_params: dict | None = None,
) -> TeacherRun:
    """Train (or, for Wan presets, load) the teacher into a new run folder; resumes an unfinished run."""
    loop = TrainLoop.for_stage(STAGE, cfg, run_name, runs_root, notebook_params)
    device = loop.device
    start = time.time()

    if cfg.model.pretrained:  # cluster: Wan 2.1 is the teacher, nothing to train
        check_pretrained_sizes(cfg)
        if loop.is_main:
            loop.run.mark_finished(stage=STAGE, teacher=str(cfg.model.pretrained), trained_steps=0, train_seconds=0.0)
        loop.end()
        # the model itself only for a single process (the notebook samples it); ranks of a cluster job need nothing
        model = build_wan(cfg).to(device).eval() if loop.accelerator.num_processes == 1 else None
        return TeacherRun(loop.run, model, 0.0)

    text_encoder, codec, conditioner = frozen_encoders(loop, cfg, image_encoder=False)  # a trained teacher: no CLIP
    ctx = cfg.chunking.context_frames

    data = TeacherData(cfg, loop, codec, text_encoder, conditioner)
    test_set = build_dataset(cfg, "test")
    model = build_wan(cfg)
    model = loop.add_model(
        "teacher",
        model,
        lambda params: torch.optim.AdamW(params, lr=cfg.teacher.lr, weight_decay=cfg.teacher.weight_decay),
        lambda opt: get_scheduler(
            "cosine" if cfg.teacher.lr_schedule == "cosine" else "constant_with_warmup",
            opt,
            num_warmup_steps=cfg.teacher.warmup_steps,
            num_training_steps=cfg.teacher.steps,
        ),  # fmt: skip
        ema_decay=cfg.train.ema_decay,
    )
    empty_text = text_encoder.encode([""])[0]

    def step_fn(step: int, gen: torch.Generator) -> dict[str, float]:
        loss = teacher_loss(model, context_frames=ctx, **data.draw(gen))
        grad_norm = loop.optimize("teacher", loss)
        return dict(loss=loss.item(), lr=loop.schedulers["teacher"].get_last_lr()[0], grad_norm=grad_norm or 0.0)

    fixed = collate([test_set[i] for i in range(min(cfg.teacher.num_samples, len(test_set)))])

    def sample_fn(done_steps: int) -> None:  # every rank runs the model (FSDP2 needs all), rank 0 writes
        videos = sample_teacher(
            cfg, loop.unwrap("teacher"), text_encoder, codec, fixed, empty_text, conditioner=conditioner
        )
        if not loop.is_main:
            return
        named = {f"{i}-{s}": v for i, (s, v) in enumerate(zip(fixed["source"], videos, strict=True))}
        save_samples(
            loop.run.samples_dir / f"step-{done_steps:07d}", named, cfg.data.fps, f"teacher, step {done_steps}"
        )

    loop.fit(step_fn, cfg.teacher.steps, sample_fn=sample_fn, desc="Stage 0 teacher")
    train_seconds = time.time() - start
    final = loop.export_model("teacher", loop.run.path / "model")  # the EMA weights are the teacher
    if loop.is_main:
        metrics = loop.run.read_metrics()
        loop.run.mark_finished(
            stage=STAGE, trained_steps=cfg.teacher.steps, train_seconds=train_seconds,
            final_loss=sum(m["loss"] for m in metrics[-20:]) / max(1, len(metrics[-20:])),
        )  # fmt: skip
    loop.end()
    return TeacherRun(loop.run, final.eval(), train_seconds)


@torch.no_grad()
def sample_teacher(cfg, model, text_encoder, codec, batch, empty_text=None, generator=None,
                   conditioner: I2VConditioner | None = None) -> torch.Tensor:  # fmt: skip
    """Teacher samples (pixels ``[B, 3, F, H, W]``) from the batch's first frames and prompts, with CFG."""
    device = next(model.parameters()).device
    ctx = cfg.chunking.context_frames
    first = codec.encode(batch["video"][:, :, :1].to(device))  # [B, C, 1, h, w]: the latent shape
    text = text_encoder.encode(batch["prompt"])[0]
    empty = (empty_text if empty_text is not None else text_encoder.encode([""])[0]).expand_as(text)
    gen = generator or torch.Generator().manual_seed(cfg.seed)
    noise = torch.randn((first.shape[0], first.shape[1], cfg.latent_frames - ctx, *first.shape[3:]),
                        generator=gen).to(first)  # fmt: skip
    condition = (conditioner or I2VConditioner(cfg, codec))(batch["first_frame"].to(device))
    was_training = model.training
    model.eval()
    out = sample_i2v(model, first[:, :, :ctx] if ctx else None, text, cfg.latent_frames, cfg.sampling.teacher_steps,
                     cfg.sampling.shift, uncond_text=empty, guidance_scale=cfg.sampling.guidance_scale,
                     sampler=cfg.sampling.teacher_sampler, noise=noise, condition=condition)  # fmt: skip
    model.train(was_training)
    return codec.decode(out).clamp(-1, 1)


def teacher_test_samples(cfg: ExperimentConfig, result: TeacherRun, num_clips: int) -> tuple[dict, torch.Tensor]:
    """Teacher samples for the first ``num_clips`` held-out test clips, saved to ``samples/final``.

    Returns the test batch (ground truth, prompts, motion) and the samples ``[B, 3, F, H, W]``.
    """
    test = build_dataset(cfg, "test")
    batch = collate([test[i] for i in range(min(len(test), num_clips))])
    device = next(result.model.parameters()).device
    codec = build_latent_codec(cfg).to(device)
    conditioner = I2VConditioner(cfg, codec, build_image_encoder(cfg))  # Wan I2V teachers: their CLIP encoder
    samples = sample_teacher(cfg, result.model, build_text(cfg).to(device), codec, batch, conditioner=conditioner)
    named = {f"{i}-{s}": v for i, (s, v) in enumerate(zip(batch["source"], samples, strict=True))}
    save_samples(result.run.samples_dir / "final", named, cfg.data.fps, "teacher, held-out first frames")
    return batch, samples
