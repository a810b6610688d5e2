"""The clips of a run: the held-out inputs and noise shared by every run, and a run's generated latents (the
teacher samples the whole clip; a causal student streams it chunk by chunk with its KV cache)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..builders import build_dataset, build_latent_codec, build_text, collate
from ..conditioning import I2VConditioner, build_image_encoder, context_of
from ..config import ExperimentConfig
from ..rollout import seeded_renoise, stream_generate
from ..sampling import sample_i2v
from .passes import PassCounter
from .plan import GenerationPlan


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
