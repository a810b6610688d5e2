"""Stage II: Self-Forcing DMD warm-up of the one-step causal student (and the 4-step baselines).

Per generator update (Self-Forcing, Huang et al. 2025; DMD2, Yin et al. 2024):
1. the student rolls out the whole clip chunk by chunk with its KV cache (``student_steps`` per chunk);
   only the randomly drawn exit step keeps gradients and the cached context is detached;
2. the clip is noised at a shifted random level; the real score (frozen teacher, CFG) and the fake score
   (a critic initialised from the teacher) denoise it; the DMD gradient (x̂_fake − x̂_real)/mean|x − x̂_real|
   pushes the student's distribution toward the teacher's;
3. before each generator update the critic takes ``critic_steps`` flow-matching steps on fresh student
   samples, so it tracks the student's distribution.

``rollout="teacher_forced"`` writes ground-truth chunks into the cache instead of the student's own
(CausVid-style); ``student_steps=4`` gives the multi-step baselines. Validation every ``eval_every``
updates: the teacher's denoising loss on the student's samples for held-out first frames (lower = closer
to the teacher's distribution); with ``keep="best"`` the best checkpoint is kept and training stops early after
``patience`` evaluations without improvement (the paper early-stops without naming its signal), with
``keep="last"`` (a fixed-length warm-up) the final update's weights are kept.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import flow
from ..builders import build_dataset, collate, load_run_model
from ..chunking import ChunkLayout
from ..conditioning import context_of
from ..config import ExperimentConfig
from ..losses import dmd_loss, flow_matching_loss, teacher_denoising_loss, x0_loss_sigma
from ..models.causal_wan import CausalWanTransformer3DModel
from ..rollout import guided_velocity, seeded_renoise, stream_generate
from ..run_folder import RunFolder
from ..runs import run_summary
from .encoders import StageBatches, frozen_encoders
from .loop import TrainLoop
from .samples import save_samples

STAGE = "stage2"


@dataclass
class Stage2Run:
    run: RunFolder
    model: CausalWanTransformer3DModel  # the best checkpoint
    sigmas: torch.Tensor  # the student's sampling levels (with the terminal 0)
    train_seconds: float


def critic_objective(critic, x, sigma, noise, text, frame_mask, condition=None) -> torch.Tensor:
    """Stage II fake-score critic: flow matching on the student's clip ``x`` noised per frame (``sigma [B, F]``,
    ``noise``), the clean context frames masked out."""
    x_t = flow.add_noise(x, noise, sigma)
    v = critic(x_t, flow.sigma_to_timestep(sigma), text, return_dict=False, **(condition or {}))[0]
    return flow_matching_loss(v, x, noise, frame_mask, x0_sigma=x0_loss_sigma(sigma, condition))


def dmd_objective(teacher, critic, x, sigma, noise, text, uncond_text, guidance_scale, frame_mask, condition=None):
    """Stage II generator objective (DMD): the student's clip ``x`` (with gradients) noised at ``sigma [B, F]``; the
    real score (frozen teacher, CFG) and the fake score (critic) denoise it; ½‖x − sg(x − g)‖² with
    g = (x̂_fake − x̂_real) / mean|x − x̂_real|. Returns the loss and g."""
    condition = condition or {}
    x_t = flow.add_noise(x.detach(), noise, sigma)
    with torch.no_grad():
        v_real = guided_velocity(teacher, x_t, sigma, text, uncond_text, guidance_scale, **condition)
        v_fake = critic(x_t, flow.sigma_to_timestep(sigma), text, return_dict=False, **condition)[0]
    x0_real, x0_fake = flow.x0_from_velocity(x_t, v_real, sigma), flow.x0_from_velocity(x_t, v_fake, sigma)
    return dmd_loss(x, x0_real, x0_fake, frame_mask)


# ---- one Stage II update's parts, inputs explicit (the trainer, scale/memory_measure.py and the tests call them) ----
@dataclass
class Stage2Step:
    """The student's rollout, the critic's flow-matching objective and the generator's DMD objective on a batch dict
    (``real [B, C, F, h, w]`` whose context frames start the rollout (and, teacher-forced, whose frames it is
    forced with), ``text``, ``noise`` of the generated frames, ``sigma [B, F]`` and ``clip_noise [B, C, F, h, w]``
    for noising the student's clip, optional ``condition`` and ``seed`` of the re-noising)."""

    generator: torch.nn.Module
    critic: torch.nn.Module
    teacher: torch.nn.Module  # the real score (frozen)
    layout: ChunkLayout
    context_frames: int
    sigmas: torch.Tensor  # the student's schedule
    frame_mask: torch.Tensor  # [F]: the generated frames
    guidance_scale: float
    uncond_text: torch.Tensor  # [1, L, D]: the empty prompt
    teacher_forced: bool = False  # CausVid-style: each chunk sees the data's earlier frames

    def rollout(self, batch: dict, grad_step: int | None = None) -> torch.Tensor:
        real, seed = batch["real"], batch.get("seed")
        return stream_generate(self.generator, self.layout, batch["text"], batch["noise"], self.sigmas,
                               context=context_of(real, self.context_frames), grad_step=grad_step,
                               forced_frames=real[:, :, self.context_frames :] if self.teacher_forced else None,
                               renoise=seeded_renoise(seed) if seed is not None else None,
                               condition=batch.get("condition")).video  # fmt: skip

    def critic_loss(self, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            x = self.rollout(batch)
        return critic_objective(self.critic, x, batch["sigma"], batch["clip_noise"], batch["text"], self.frame_mask,
                                batch.get("condition"))  # fmt: skip

    def generator_loss(self, batch: dict, exit_step: int = 0, x: torch.Tensor | None = None):
        """DMD loss and its gradient g, through the rollout's ``exit_step`` (or on a given clip ``x``)."""
        x = self.rollout(batch, grad_step=exit_step) if x is None else x
        return dmd_objective(self.teacher, self.critic, x, batch["sigma"], batch["clip_noise"], batch["text"],
                             self.uncond_text.expand_as(batch["text"]), self.guidance_scale, self.frame_mask,
                             batch.get("condition"))  # fmt: skip


@dataclass
class Stage2Data(StageBatches):
    """Training batches for :class:`Stage2Step` (this rank's share): data clips (their first frames and, for the
    teacher-forced baseline, their frames), captions, rollout noise and its re-noising seed, per-frame noise levels
    (``t_min``…``t_max``, the context frames clean) and noise for the student's clip."""

    def __post_init__(self):
        self.train_set = build_dataset(self.cfg, "train")

    def draw(self, gen: torch.Generator) -> dict:
        cfg, s2, loop, n, shape = self.cfg, self.cfg.stage2, self.loop, self.cfg.train.batch_size, self.latent_shape
        ctx, frames = cfg.chunking.context_frames, cfg.latent_frames
        idx = loop.local(torch.randint(len(self.train_set), (n,), generator=gen))
        batch = collate([self.train_set[i] for i in idx.tolist()])
        with torch.no_grad():
            real = self.codec.encode(batch["video"].to(loop.device))
            text = self.text_encoder.encode(batch["prompt"])[0]
            condition = self.conditioner(batch["first_frame"].to(loop.device))
        noise = loop.local(torch.randn((n, shape[0], frames - ctx, *shape[2:]), generator=gen)).to(real)
        seed = int(torch.randint(2**62, (1,), generator=gen))
        sigma = loop.local(flow.sample_timesteps(n, generator=gen, shift=cfg.sampling.shift, t_min=s2.t_min,
                                                 t_max=s2.t_max)).to(real)  # fmt: skip
        clip_noise = loop.local(torch.randn((n, *real.shape[1:]), generator=gen)).to(real)
        return dict(real=real, text=text, noise=noise, condition=condition, seed=seed,
                    sigma=flow.per_frame_sigma(sigma, frames, ctx), clip_noise=clip_noise)  # fmt: skip


def train_stage2(
    cfg: ExperimentConfig,
    stage1_run: RunFolder,
    run_name: str | None = None,
    runs_root: Path | None = None,
    notebook_params: dict | None = None,
) -> Stage2Run:
    s2 = cfg.stage2
    summary1 = run_summary(stage1_run)
    teacher_run = RunFolder.open(summary1["teacher_run"])
    loop = TrainLoop.for_stage(STAGE, cfg, run_name, runs_root, notebook_params, init_from=stage1_run)
    device = loop.device
    text_encoder, codec, conditioner = frozen_encoders(loop, cfg)
    ctx, frames, layout = cfg.chunking.context_frames, cfg.latent_frames, cfg.chunk_layout()
    frame_mask = torch.arange(frames) >= ctx

    teacher = load_run_model(teacher_run)  # fp32 on the CPU: the critic's master weights start from it
    critic = copy.deepcopy(teacher).requires_grad_(True)  # fake score, initialised from the teacher
    teacher = loop.add_frozen(teacher)  # real score: compute dtype, sharded under FSDP2
    generator = load_run_model(stage1_run)
    sigmas = flow.student_sigmas(torch.tensor(summary1["target_sigmas"]), s2.student_steps).to(device)
    betas = (s2.beta1, s2.beta2)
    generator = loop.add_model(
        "generator",
        generator,
        lambda params: torch.optim.AdamW(params, s2.lr_generator, betas=betas, weight_decay=0.0),
        ema_decay=cfg.train.ema_decay,
    )
    critic = loop.add_model(
        "critic", critic, lambda params: torch.optim.AdamW(params, s2.lr_critic, betas=betas, weight_decay=0.0)
    )
    data = Stage2Data(cfg, loop, codec, text_encoder, conditioner)
    empty = text_encoder.encode([""])[0]
    step = Stage2Step(generator, critic, teacher, layout, ctx, sigmas, frame_mask, s2.guidance_scale, empty,
                      teacher_forced=s2.rollout == "teacher_forced")  # fmt: skip

    # validation: fixed held-out first frames and noise
    val = collate([build_dataset(cfg, "test")[i] for i in range(s2.num_val_clips)])
    val_latents = codec.encode(val["video"].to(device))
    val_text = text_encoder.encode(val["prompt"])[0]
    val_condition = conditioner(val["first_frame"].to(device))
    val_noise = torch.randn(val_latents[:, :, ctx:].shape, generator=torch.Generator().manual_seed(cfg.seed)).to(
        val_latents
    )
    # early stopping's record and the best weights survive a resume as they were at the checkpoint
    loop.state["best"] = {"value": None, "step": None, "evals_since": 0}
    loop.checkpointed_folders.append("best_model")

    @torch.no_grad()
    def student_samples(model, noise=val_noise, latents=val_latents, text=val_text, condition=val_condition):
        was = model.training
        model.eval()
        out = stream_generate(model, layout, text, noise, sigmas, context=context_of(latents, ctx),
                              renoise=seeded_renoise(cfg.seed + 1), condition=condition).video  # fmt: skip
        model.train(was)
        return out

    def validate(step: int) -> dict[str, float]:
        best = loop.state["best"]
        value = teacher_denoising_loss(teacher, student_samples(loop.unwrap("generator")), val_text, ctx, cfg.seed,
                                       val_condition)  # fmt: skip
        if best["value"] is None or value < best["value"]:
            best.update(value=value, step=step, evals_since=0)
            if s2.keep == "best":
                loop.export_model("generator", loop.run.path / "best_model", use_ema=False)
        else:
            best["evals_since"] += 1
        if s2.keep == "best" and s2.patience and best["evals_since"] >= s2.patience:
            loop.request_stop(f"early stop: no improvement of the validation loss for {s2.patience} evaluations")
        return {"val_teacher_loss": value, "val_best": best["value"]}

    def step_fn(step_index: int, gen: torch.Generator) -> dict[str, float]:
        metrics = validate(step_index) if step_index % s2.eval_every == 0 else {}
        critic_losses = []
        for _ in range(s2.critic_steps):  # (a) critic: flow matching on fresh student samples
            loss_c = step.critic_loss(data.draw(gen))
            loop.optimize("critic", loss_c)
            critic_losses.append(loss_c.item())
        # (b) generator: DMD through the rollout's exit step
        exit_step = int(torch.randint(s2.student_steps, (1,), generator=gen))
        loss_g, grad = step.generator_loss(data.draw(gen), exit_step)
        grad_norm = loop.optimize("generator", loss_g)
        return dict(metrics, dmd_loss=loss_g.item(), critic_loss=sum(critic_losses) / len(critic_losses),
                    dmd_grad_abs=grad.abs().mean().item(), grad_norm=grad_norm or 0.0)  # fmt: skip

    fixed = collate([build_dataset(cfg, "test")[i] for i in range(s2.num_samples)])
    fixed_latents = codec.encode(fixed["video"].to(device))
    fixed_text = text_encoder.encode(fixed["prompt"])[0]
    fixed_condition = conditioner(fixed["first_frame"].to(device))
    fixed_noise = torch.randn(fixed_latents[:, :, ctx:].shape, generator=torch.Generator().manual_seed(cfg.seed + 7))

    def sample_fn(done_steps: int) -> None:  # every rank runs the model (FSDP2 needs all), rank 0 writes
        video = student_samples(loop.unwrap("generator"), fixed_noise.to(fixed_latents), fixed_latents, fixed_text,
                                fixed_condition)  # fmt: skip
        if loop.is_main:
            video = codec.decode(video).clamp(-1, 1)
            named = {f"{s2.student_steps}-step {i}": v for i, v in enumerate(video)}
            save_samples(loop.run.samples_dir / f"step-{done_steps:07d}", named, cfg.data.fps, f"step {done_steps}")

    tic = time.time()
    loop.fit(step_fn, s2.steps, sample_fn=sample_fn, desc=f"Stage II (DMD, {s2.student_steps} step/chunk)")
    train_seconds = time.time() - tic
    if loop.stop_reason is None:  # evaluate the final weights too
        with loop.accelerator.autocast():
            final_val = validate(loop.step)
        if loop.is_main:
            loop.run.log_metrics(dict(step=loop.step, **final_val))
    loop.accelerator.wait_for_everyone()
    best = loop.state["best"]
    if s2.keep == "last":  # a fixed-length warm-up: the final update's weights, whatever the validation says
        final, kept_step = loop.export_model("generator", loop.run.path / "model", use_ema=False).eval(), loop.step
    else:
        final, kept_step = CausalWanTransformer3DModel.from_pretrained(loop.run.path / "best_model"), best["step"]
        final = final.to(device).eval()
        if loop.is_main:
            final.save_pretrained(loop.run.path / "model")
    if loop.is_main:
        metrics = loop.run.read_metrics()
        vals = [m["val_teacher_loss"] for m in metrics if "val_teacher_loss" in m]
        initial, final_val = (vals[0], vals[-1]) if vals else (None, None)
        loop.run.mark_finished(
            stage=STAGE, stage1_run=str(stage1_run.path), teacher_run=str(teacher_run.path), sigmas=sigmas.tolist(),
            student_steps=s2.student_steps, rollout=s2.rollout, best_step=best["step"], best_val=best["value"],
            keep=s2.keep, kept_step=kept_step, initial_val=initial, final_val=final_val, stopped_early=loop.stop_reason,
            train_seconds=train_seconds,
            peak_rss_mb=max((m["peak_rss_mb"] for m in metrics if "peak_rss_mb" in m), default=None),
        )  # fmt: skip
    loop.end()
    return Stage2Run(loop.run, final, sigmas.cpu(), train_seconds)
