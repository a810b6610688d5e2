"""Stage III: asymmetric adversarial distillation — AAD-1's contribution.

The generator stays causal and one-step: it rolls out the whole clip chunk by chunk with its KV cache
(sink + window), exactly the deployment path. The critic is asymmetric: a ``VideoDiscriminator`` whose
backbone (initialised from the teacher) sees the whole clip in both directions and returns one
video-level logit. Real and generated clips are noised to the same random level before D sees them.

Per generator update (logistic GAN + approximate R1/R2, AAD-1 §"Noised Discriminator Inputs"):
- D (``d_steps`` times): softplus(−D(real_t)) + softplus(D(fake_t)) + λ·[R1(real_t) + R2(fake_t)],
  R(x) = mean(((D(x + σε) − D(x)) / σ)²), λ = 20 by default (the paper's value, in this convention);
- G (after the D warm-up): softplus(−D(fake_t)), gradients through the rollout's single step.

Held-out D accuracy every ``disc_eval_every`` steps (and at step 0): fixed test clips and their fakes (the current
generator's rollouts from the same first frames), noised as the D objective noises them (noise and levels drawn
once); logged as ``d_acc`` (logit sign: real > 0, fake < 0), ``d_pair_acc`` (D(real_i) > D(fake_i), same noise
level) and ``d_gap_heldout``. D warm-up: G starts after ``d_warmup_steps``; with ``d_warmup_accuracy`` set, at the
first evaluation at or after that whose ``d_pair_acc`` reaches it, or at ``d_warmup_max_steps`` anyway (a warning).
Warm-up steps count toward ``steps``. The step G starts at carries ``warmup_reached`` in metrics.jsonl, from which a
resumed run reads the warm-up state back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list

from .. import flow
from ..builders import build_dataset, collate, load_run_model, load_wan
from ..chunking import ChunkLayout
from ..conditioning import context_of
from ..config import ExperimentConfig
from ..losses import approximate_r1, discriminator_loss, generator_adversarial_loss
from ..models.causal_wan import CausalWanTransformer3DModel
from ..models.discriminator import VideoDiscriminator
from ..ode_pairs import ODEPairsDataset
from ..rollout import CONDITION_KWARGS, seeded_renoise, stream_generate
from ..run_folder import RunFolder
from ..runs import run_summary
from .encoders import StageBatches, frozen_encoders
from .loop import DivergenceError, TrainLoop
from .samples import save_samples

STAGE = "stage3"


@dataclass
class Stage3Run:
    run: RunFolder
    model: CausalWanTransformer3DModel
    sigmas: torch.Tensor
    train_seconds: float


def check_init_run(run: RunFolder) -> dict:
    """Stage III starts from a finished Stage II run (or a Stage I run for the no-warm-up ablation)."""
    stage = run.info.get("stage")
    if stage not in ("stage2", "stage1") or not run.finished:
        raise ValueError(f"init_from must be a finished Stage II run (or Stage I for the ablation); {run.path} is "
                         f"a {'finished' if run.finished else 'unfinished'} {stage!r} run")  # fmt: skip
    return run_summary(run)


def build_discriminator(cfg: ExperimentConfig, teacher: CausalWanTransformer3DModel) -> VideoDiscriminator:
    """Teacher-initialised backbone + freshly initialised heads (seeded: the same on every process and run)."""
    s3 = cfg.stage3
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 3)
        return VideoDiscriminator.from_teacher(
            teacher, attention=s3.disc_attention, logit=s3.disc_logit, chunk_layout=cfg.chunk_layout(),
            tap_fractions=tuple(s3.disc_taps), num_queries=s3.disc_queries, train_backbone=s3.train_disc_backbone,
        )  # fmt: skip


def discriminator_condition(cfg: ExperimentConfig, backbone, condition: dict) -> dict | None:
    """What of a clip's conditioning D's ``backbone`` takes. Wan I2V channels only if it has them (an I2V teacher;
    zeros with ``stage3.disc_condition`` false; the T2V ``disc_pretrained`` backbone takes latents only); the
    first-frame anchor whenever the backbone comes from a first-frame residual teacher (it is how that backbone
    reads a clip, docs/design.md §9)."""
    out = {}
    if backbone.config.in_channels > cfg.model.in_channels:
        out = {
            k: v if cfg.stage3.disc_condition else torch.zeros_like(v) for k, v in condition.items() if k != "anchor"
        }
    if "anchor" in condition and not cfg.stage3.disc_pretrained:
        out["anchor"] = condition["anchor"]
    return out or None


def discriminator_objective(disc, real, fake, sigma, d_noise, text, lam: float, r1_sigma: float, condition=None):
    """Stage III D objective (AAD-1 §"Noised Discriminator Inputs"): real and fake clips ``[B, C, F, H, W]`` noised to
    the SAME level ``sigma [B]`` per pair (``d_noise[0]``, ``d_noise[1]``: D is video-level, one level per clip);
    softplus(−D(real_t)) + softplus(D(fake_t)) + λ·[R1(real_t) + R2(fake_t)], the approximate R1/R2 perturbed along
    ``d_noise[2]``, ``d_noise[3]``. Returns the loss and its logs (d_loss, r1, r2, d_real, d_fake)."""
    t = flow.sigma_to_timestep(sigma)
    real_t, fake_t = flow.add_noise(real, d_noise[0], sigma), flow.add_noise(fake, d_noise[1], sigma)
    logits_real, logits_fake = disc(real_t, t, text, condition), disc(fake_t, t, text, condition)
    loss_d = discriminator_loss(logits_real, logits_fake)
    r1 = r2 = logits_real.new_zeros(())
    if lam > 0:
        r1 = approximate_r1(disc, real_t, logits_real, r1_sigma, t, text, condition, eps=d_noise[2])
        r2 = approximate_r1(disc, fake_t, logits_fake, r1_sigma, t, text, condition, eps=d_noise[3])
    logs = dict(d_loss=loss_d.item(), r1=r1.item(), r2=r2.item(), d_real=logits_real.mean().item(),
                d_fake=logits_fake.mean().item())  # fmt: skip
    return loss_d + lam * (r1 + r2), logs


def generator_objective(disc, fake, sigma, fake_noise, text, condition=None) -> torch.Tensor:
    """Stage III G objective: softplus(−D(fake_t)), the generated clip noised as D sees fakes (``fake_noise`` at
    ``sigma``); gradients reach the generator through the one-step rollout."""
    fake_t = flow.add_noise(fake, fake_noise, sigma)
    return generator_adversarial_loss(disc(fake_t, flow.sigma_to_timestep(sigma), text, condition))


def clip_logits(logits: torch.Tensor) -> torch.Tensor:
    """One logit per clip: the video logit ``[B]``, or the mean of frame logits ``[B, F]``."""
    return logits.mean(dim=-1) if logits.ndim == 2 else logits


def heldout_accuracy(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> dict[str, float]:
    """Held-out D metrics from the logits of N real clips and their N fakes (pair i: same noise level):
    ``d_acc`` = fraction of the 2N clips on the right side of 0 (real > 0, fake < 0), ``d_pair_acc`` = fraction of
    pairs with D(real_i) > D(fake_i) (blind to a shared logit offset: what the warm-up waits for),
    ``d_gap_heldout`` = mean D(real) − mean D(fake)."""
    real, fake = clip_logits(logits_real).float(), clip_logits(logits_fake).float()
    correct = torch.cat([real > 0, fake < 0]).float()
    return dict(d_acc=correct.mean().item(), d_pair_acc=(real > fake).float().mean().item(),
                d_gap_heldout=(real.mean() - fake.mean()).item())  # fmt: skip


def warmup_summary(metrics: list[dict]) -> dict:
    """The D warm-up's end as the run logged it: the step G started (the record carrying ``warmup_reached``; None if
    it never did), whether the warm-up's condition was met (False: the cap started G) and the held-out accuracies of
    the last evaluation at or before that step."""
    end = next((m for m in metrics if "warmup_reached" in m), None)
    if end is None:
        return dict(d_warmup_end_step=None, warmup_reached=False, d_acc_at_warmup_end=None,
                    d_pair_acc_at_warmup_end=None)  # fmt: skip
    evals = [m for m in metrics if "d_acc" in m and m["step"] <= end["step"]]
    last = evals[-1] if evals else {}
    return dict(d_warmup_end_step=end["step"], warmup_reached=bool(end["warmup_reached"]),
                d_acc_at_warmup_end=last.get("d_acc"), d_pair_acc_at_warmup_end=last.get("d_pair_acc"))  # fmt: skip


# ---- one Stage III update's parts, inputs explicit (the trainer, scale/memory_measure.py and the tests call them) ----
@dataclass
class Stage3Step:
    """The one-step rollout, D's objective and G's objective on a batch dict (``real [B, C, F, h, w]``, ``text``,
    ``noise`` of the generated frames, ``sigma [B]`` D's noise level, ``d_noise [4, B, C, F, h, w]`` (real/fake
    noising, R1/R2 directions), optional ``condition`` and ``seed`` of the rollout's re-noising)."""

    generator: torch.nn.Module
    disc: VideoDiscriminator
    layout: ChunkLayout
    context_frames: int
    sigmas: torch.Tensor  # [2]: one step per chunk
    lam: float
    r1_sigma: float
    disc_condition: Callable[[dict], dict | None] | None = None  # what of a clip's condition D reads

    def rollout(self, batch: dict, grad: bool) -> torch.Tensor:
        """The generated clip ``[B, C, F, h, w]``, chunk by chunk with the KV cache (grad: through the step)."""
        seed = batch.get("seed")
        return stream_generate(self.generator, self.layout, batch["text"], batch["noise"], self.sigmas,
                               context=context_of(batch["real"], self.context_frames), grad_step=0 if grad else None,
                               renoise=seeded_renoise(seed) if seed is not None else None,
                               condition=batch.get("condition")).video  # fmt: skip

    def d_inputs(self, batch: dict) -> dict | None:
        condition = batch.get("condition")
        return self.disc_condition(condition) if self.disc_condition and condition else None

    def discriminator_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            fake = self.rollout(batch, grad=False)
        return discriminator_objective(self.disc, batch["real"], fake, batch["sigma"], batch["d_noise"], batch["text"],
                                       self.lam, self.r1_sigma, self.d_inputs(batch))  # fmt: skip

    def generator_loss(self, batch: dict, fake: torch.Tensor | None = None) -> torch.Tensor:
        fake = self.rollout(batch, grad=True) if fake is None else fake
        return generator_objective(self.disc, fake, batch["sigma"], batch["d_noise"][1], batch["text"],
                                   self.d_inputs(batch))  # fmt: skip

    @torch.no_grad()
    def logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """D on the batch's real clips and on the current generator's clips, noised alike (``d_noise[0]``, ``[1]``)."""
        fake = self.rollout(batch, grad=False)
        sigma, t, condition = batch["sigma"], flow.sigma_to_timestep(batch["sigma"]), self.d_inputs(batch)
        real_t = flow.add_noise(batch["real"], batch["d_noise"][0], sigma)
        fake_t = flow.add_noise(fake, batch["d_noise"][1], sigma)
        return self.disc(real_t, t, batch["text"], condition), self.disc(fake_t, t, batch["text"], condition)


@dataclass
class Stage3Data(StageBatches):
    """Training batches for :class:`Stage3Step`: real clips (the dataset, or with ``real_source: teacher`` Stage I's
    ODE endpoints: teacher samples with the same first frames and captions), rollout noise, D's noise levels
    (``t_min``…``t_max``, the sampling shift) and directions; this rank's share of the global batch."""

    stage1_run: RunFolder | None = None  # its ODE pairs are the real clips with real_source: teacher

    def __post_init__(self):
        self.teacher_real = self.cfg.stage3.real_source == "teacher"
        self.pool = (ODEPairsDataset(self.stage1_run.path / "ode_pairs") if self.teacher_real
                     else build_dataset(self.cfg, "train"))  # fmt: skip

    def draw(self, gen: torch.Generator) -> dict:
        cfg, s3, loop, n, shape = self.cfg, self.cfg.stage3, self.loop, self.cfg.train.batch_size, self.latent_shape
        idx = loop.local(torch.randint(len(self.pool), (n,), generator=gen)).tolist()
        noise = loop.local(torch.randn((n, shape[0], cfg.latent_frames - cfg.chunking.context_frames, *shape[2:]),
                                       generator=gen))  # fmt: skip
        sigma = flow.sample_timesteps(n, generator=gen, shift=cfg.sampling.shift, t_min=s3.t_min, t_max=s3.t_max)
        d_noise = torch.randn((4, n, *shape), generator=gen)  # real/fake noising, R1/R2 directions
        seed = int(torch.randint(2**62, (1,), generator=gen))
        with torch.no_grad():
            if self.teacher_real:
                rows = [self.pool[i] for i in idx]
                real = torch.stack([r["x0"] for r in rows]).to(loop.device)
                prompts = [r["prompt"] for r in rows]
                condition = {k: torch.stack([r[k] for r in rows]).to(loop.device) for k in CONDITION_KWARGS
                             if k in rows[0]}  # fmt: skip
            else:
                batch = collate([self.pool[i] for i in idx])
                real, prompts = self.codec.encode(batch["video"].to(loop.device)), batch["prompt"]
                condition = self.conditioner(batch["first_frame"].to(loop.device))
            text = self.text_encoder.encode(prompts)[0]
        return dict(real=real, text=text, noise=noise.to(real), sigma=loop.local(sigma).to(real),
                    d_noise=loop.local(d_noise.transpose(0, 1)).transpose(0, 1).to(real), seed=seed,
                    condition=condition)  # fmt: skip


def heldout_batches(cfg: ExperimentConfig, loop: TrainLoop, codec, text_encoder, conditioner) -> list[dict]:
    """The held-out D evaluation's fixed inputs: the first ``disc_eval_clips`` test clips with rollout noise, D noise
    levels and noising drawn once (as :meth:`Stage3Data.draw` draws them), in batches of at most a training step's
    clips. Every rank holds them all (FSDP2 needs every rank in every forward)."""
    s3, ctx = cfg.stage3, cfg.chunking.context_frames
    test_set = build_dataset(cfg, "test")
    n_eval = min(s3.disc_eval_clips, len(test_set))
    if n_eval < s3.disc_eval_clips and loop.is_main:
        print(f"stage3.disc_eval_clips = {s3.disc_eval_clips}, but the test split holds {len(test_set)} clips: "
              f"D is evaluated on {n_eval}")  # fmt: skip
    size = loop.local_batch_size(cfg.train.batch_size)
    parts = []
    with torch.no_grad():
        for start in range(0, n_eval, size):
            held = collate([test_set[i] for i in range(start, min(start + size, n_eval))])
            parts.append(dict(real=codec.encode(held["video"].to(loop.device)),
                              text=text_encoder.encode(held["prompt"])[0],
                              condition=conditioner(held["first_frame"].to(loop.device))))  # fmt: skip
    real = torch.cat([p["real"] for p in parts])
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    noise = torch.randn(real[:, :, ctx:].shape, generator=gen).to(real)
    sigma = flow.sample_timesteps(n_eval, generator=gen, shift=cfg.sampling.shift, t_min=s3.t_min,
                                  t_max=s3.t_max).to(real)  # fmt: skip
    d_noise = torch.randn((2, *real.shape), generator=gen).to(real)  # real, fake noising
    out, start = [], 0
    for part in parts:
        rows = slice(start, start + len(part["real"]))
        out.append(dict(part, noise=noise[rows], sigma=sigma[rows], d_noise=d_noise[:, rows], seed=cfg.seed + 13))
        start = rows.stop
    return out


def evaluate_discriminator(step: Stage3Step, batches: list[dict], loop: TrainLoop) -> dict[str, float]:
    """Held-out ``d_acc``, ``d_pair_acc``, ``d_gap_heldout`` (:func:`heldout_accuracy`) on ``batches``, every rank
    agreeing exactly (a mean over ranks of values equal up to reduction order)."""
    models = (step.generator, step.disc)
    for model in models:
        model.eval()
    pairs = [step.logits(batch) for batch in batches]
    for model in models:
        model.train()
    metrics = heldout_accuracy(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]))
    if loop.accelerator.num_processes > 1:
        values = torch.tensor(list(metrics.values()), dtype=torch.float64, device=loop.device)
        metrics = dict(zip(metrics, loop.accelerator.reduce(values, "mean").tolist(), strict=True))
    return metrics


class DiscriminatorWarmup:
    """When G starts: after ``d_warmup_steps``; with ``d_warmup_accuracy`` set, at the first held-out evaluation at
    or after that whose ``d_pair_acc`` reaches it, or at ``d_warmup_max_steps`` anyway (a warning). The step G starts
    at logs ``warmup_reached``; a resumed run reads the state back from the metrics logged before its first step."""

    def __init__(self, s3, loop: TrainLoop):
        self.s3, self.loop = s3, loop
        self.g_start: int | None = None
        self.restored = False
        self.forced_start = s3.d_warmup_steps if s3.d_warmup_accuracy is None else s3.d_warmup_max_steps

    @property
    def generator_trains(self) -> bool:
        return self.g_start is not None

    def restore(self, first_step: int) -> None:
        found = [None]
        if self.loop.is_main:
            logged = [m for m in self.loop.run.read_metrics() if m["step"] < first_step]
            found[0] = warmup_summary(logged)["d_warmup_end_step"]
        if self.loop.accelerator.num_processes > 1:
            broadcast_object_list(found)
        self.g_start, self.restored = found[0], True

    def end(self, step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Whether G starts at this step: ``{"warmup_reached": 1.0 | 0.0}`` at the step it does, else {}."""
        s3 = self.s3
        if self.g_start is not None:
            return {}
        if s3.d_warmup_accuracy is None:
            reached = step >= s3.d_warmup_steps
            if not reached:
                return {}
        else:
            reached = step >= s3.d_warmup_steps and metrics.get("d_pair_acc", -1.0) >= s3.d_warmup_accuracy
            if not reached and step < s3.d_warmup_max_steps:
                return {}
            if not reached and self.loop.is_main:
                print(f"WARNING: Stage III D warm-up hit stage3.d_warmup_max_steps = {s3.d_warmup_max_steps} before "
                      f"held-out d_pair_acc reached {s3.d_warmup_accuracy} (last: {metrics.get('d_pair_acc')}); the "
                      f"generator starts anyway at step {step}")  # fmt: skip
        self.g_start = step
        return {"warmup_reached": float(reached)}


def train_stage3(
    cfg: ExperimentConfig,
    init_run: RunFolder,
    run_name: str | None = None,
    runs_root: Path | None = None,
    notebook_params: dict | None = None,
) -> Stage3Run:
    s3 = cfg.stage3
    summary = check_init_run(init_run)  # before any work: a wrong init_from fails here
    stage1_run = RunFolder.open(summary.get("stage1_run", init_run.path))
    teacher_run = RunFolder.open(summary["teacher_run"])
    if init_run.info["stage"] == "stage2":
        sigmas = torch.tensor(summary["sigmas"])[[0, -1]]  # one step per chunk
    else:
        sigmas = torch.tensor([summary["target_sigmas"][0], 0.0])
    loop = TrainLoop.for_stage(STAGE, cfg, run_name, runs_root, notebook_params, init_from=init_run)
    device = loop.device
    text_encoder, codec, conditioner = frozen_encoders(loop, cfg)
    ctx, layout = cfg.chunking.context_frames, cfg.chunk_layout()
    sigmas = sigmas.to(device)

    backbone = load_wan(s3.disc_pretrained) if s3.disc_pretrained else load_run_model(teacher_run)
    disc = build_discriminator(cfg, backbone)
    del backbone
    # D sees the Wan I2V condition only if its backbone has the channels (an I2V teacher; not the T2V backbone)
    betas = (s3.beta1, s3.beta2)
    generator = loop.add_model(
        "generator",
        load_run_model(init_run),
        lambda params: torch.optim.AdamW(params, s3.lr_generator, betas=betas, weight_decay=0.0),
        ema_decay=cfg.train.ema_decay,
    )
    disc = loop.add_model(
        "discriminator",
        disc,
        lambda params: torch.optim.AdamW(
            [p for p in params if p.requires_grad], s3.lr_discriminator, betas=betas, weight_decay=0.0
        ),  # fmt: skip
    )

    data = Stage3Data(cfg, loop, codec, text_encoder, conditioner, stage1_run)
    step = Stage3Step(generator, disc, layout, ctx, sigmas, s3.lam, s3.r1_sigma,
                      lambda condition: discriminator_condition(cfg, disc.backbone, condition))  # fmt: skip
    heldout = heldout_batches(cfg, loop, codec, text_encoder, conditioner)
    warmup = DiscriminatorWarmup(s3, loop)
    loop.state["d_saturated_steps"] = 0  # consecutive steps with D's gap above saturation_gap; survives resume

    def step_fn(step_index: int, gen: torch.Generator) -> dict[str, float]:
        if not warmup.restored:
            warmup.restore(step_index)
        logs: dict[str, float] = {}
        if step_index % s3.disc_eval_every == 0 or (not warmup.generator_trains and step_index == warmup.forced_start):
            logs.update(evaluate_discriminator(step, heldout, loop))  # before this step's updates
        logs.update(warmup.end(step_index, logs))
        for _ in range(s3.d_steps):  # (a) discriminator
            loss_d, d_logs = step.discriminator_loss(data.draw(gen))
            loop.optimizers["discriminator"].zero_grad(set_to_none=True)  # drop grads left by the G update
            loop.optimize("discriminator", loss_d)
            logs.update(d_logs)
        if warmup.generator_trains:  # (b) generator, through the one-step rollout
            loss_g = step.generator_loss(data.draw(gen))
            logs["g_grad_norm"] = loop.optimize("generator", loss_g) or 0.0
            logs["g_loss"] = loss_g.item()
        # divergence guard: a discriminator that wins by a mile for many steps gives the generator nothing
        gap = logs["d_real"] - logs["d_fake"]
        saturated = loop.state["d_saturated_steps"] + 1 if gap > s3.saturation_gap else 0
        loop.state["d_saturated_steps"] = saturated
        if s3.saturation_steps and saturated >= s3.saturation_steps:
            last = loop.run.latest_checkpoint()
            raise DivergenceError(
                f"discriminator saturated: D(real) - D(fake) = {gap:.1f} > {s3.saturation_gap} for "
                f"{s3.saturation_steps} steps (step {step_index}); lower lr_discriminator or raise lam. "
                f"Last good checkpoint: {last}"
            )
        return logs

    fixed = collate([build_dataset(cfg, "test")[i] for i in range(s3.num_samples)])
    fixed_latents = codec.encode(fixed["video"].to(device))
    fixed_text = text_encoder.encode(fixed["prompt"])[0]
    fixed_condition = conditioner(fixed["first_frame"].to(device))
    fixed_noise = torch.randn(fixed_latents[:, :, ctx:].shape, generator=torch.Generator().manual_seed(cfg.seed + 7))

    def sample_fn(done_steps: int) -> None:  # every rank runs the model (FSDP2 needs all), rank 0 writes
        with torch.no_grad():
            video = stream_generate(loop.unwrap("generator"), layout, fixed_text, fixed_noise.to(fixed_latents),
                                    sigmas, context=context_of(fixed_latents, ctx), condition=fixed_condition,
                                    renoise=seeded_renoise(cfg.seed + 1)).video  # fmt: skip
        if loop.is_main:
            named = {f"1-step {i}": v for i, v in enumerate(codec.decode(video).clamp(-1, 1))}
            save_samples(loop.run.samples_dir / f"step-{done_steps:07d}", named, cfg.data.fps, f"step {done_steps}")

    tic = time.time()
    loop.fit(step_fn, s3.steps, sample_fn=sample_fn, desc=f"Stage III ({s3.disc_attention}/{s3.disc_logit} D)")
    train_seconds = time.time() - tic
    final = loop.export_model("generator", loop.run.path / "model")  # gathers FSDP2 shards; EMA weights if any
    if loop.is_main:
        metrics = loop.run.read_metrics()
        warm = warmup_summary(metrics)
        if warm["d_warmup_end_step"] is None:
            print(f"WARNING: the Stage III generator never trained: the D warm-up lasted all {s3.steps} steps")
        loop.run.mark_finished(
            stage=STAGE, init_run=str(init_run.path), init_stage=init_run.info["stage"],
            stage1_run=str(stage1_run.path), teacher_run=str(teacher_run.path), sigmas=sigmas.tolist(), lam=s3.lam,
            disc_attention=s3.disc_attention, disc_logit=s3.disc_logit, train_seconds=train_seconds,
            peak_rss_mb=max((m["peak_rss_mb"] for m in metrics if "peak_rss_mb" in m), default=None),
            world_size=loop.accelerator.num_processes, parallel=cfg.train.parallel,
            d_warmup_accuracy=s3.d_warmup_accuracy, **warm,
        )  # fmt: skip
    loop.end()
    return Stage3Run(loop.run, final.eval(), sigmas.cpu(), train_seconds)
