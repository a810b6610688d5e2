"""Multi-step I2V sampling with the bidirectional teacher (Stage 0 samples, ODE trajectories, baselines).

The given first frame(s) stay clean: they enter with timestep 0 (as in training) and are never updated,
the generated frames share one noise level per step. Euler is written with our per-frame helpers;
UniPC is diffusers' ``UniPCMultistepScheduler`` in flow-prediction mode (as Wan's pipelines use it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import flow
from .models.causal_wan import CausalWanTransformer3DModel
from .rollout import guided_velocity

SAMPLERS = ("euler", "unipc")


def teacher_velocity_fn(
    model: CausalWanTransformer3DModel,
    context_frames: int,
    text: torch.Tensor,
    uncond_text: torch.Tensor | None,
    guidance_scale: float,
    condition: dict | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(x [B, C, F, H, W], sigma [B]) -> velocity`` with the context frames at timestep 0 and velocity 0.

    ``condition``: Wan I2V inputs (``condition``, ``encoder_hidden_states_image``) given to both CFG branches.
    Without context frames the timestep stays ``[B]``, as diffusers' Wan pipelines pass it.
    """

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        per_frame = sigma
        if context_frames:
            per_frame = sigma[:, None].repeat(1, x.shape[2])  # [B, F]
            per_frame[:, :context_frames] = 0.0
        v = guided_velocity(model, x, per_frame, text, uncond_text, guidance_scale, **(condition or {}))
        v[:, :, :context_frames] = 0.0  # the given frames do not move
        return v

    return velocity


@torch.no_grad()
def sample_i2v(
    model: CausalWanTransformer3DModel,
    context: torch.Tensor | None,
    text: torch.Tensor,
    num_frames: int,
    steps: int,
    shift: float,
    uncond_text: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    sampler: str = "euler",
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    condition: dict | None = None,
) -> torch.Tensor:
    """Sample ``[B, C, num_frames, H, W]`` whose first ``context.shape[2]`` frames are ``context``.

    Args:
        context: ``[B, C, Fc, H, W]`` clean conditioning frames (latents); None with Wan I2V ``condition``
            (every frame is generated, as in ``WanImageToVideoPipeline``; then ``noise`` fixes the shape).
        condition: Wan I2V inputs ``{"condition": ..., "encoder_hidden_states_image": ...}`` (CFG: both branches).
        text / uncond_text: ``[B, L, D]`` prompt and empty-prompt embeddings (CFG when scale != 1).
        steps, shift: sampler steps and the flow time shift (paper reference: Wan 2.1, 50 steps × CFG).
        callback: receives ``dict(i, x, sigma, x0)`` after every step (ODE-trajectory recording, progress).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {SAMPLERS}")
    if context is None and noise is None:
        raise ValueError("sample_i2v without context frames needs the initial noise (it fixes the latent shape)")
    ref = context if context is not None else noise
    batch, channels, _, height, width = ref.shape
    ctx = 0 if context is None else context.shape[2]
    if noise is None:
        noise = torch.randn(batch, channels, num_frames - ctx, height, width, generator=generator,
                            device=ref.device, dtype=ref.dtype)  # fmt: skip
    x = noise if context is None else torch.cat([context, noise], dim=2)
    velocity = teacher_velocity_fn(model, ctx, text, uncond_text, guidance_scale, condition)
    if sampler == "euler":
        return flow.sample_euler(velocity, x, flow.sampling_sigmas(steps, shift, device=x.device), callback=callback)

    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=flow.NUM_TRAIN_TIMESTEPS, prediction_type="flow_prediction", use_flow_sigmas=True,
        flow_shift=shift,
    )  # fmt: skip
    scheduler.set_timesteps(steps, device=x.device)
    for i, t in enumerate(scheduler.timesteps):
        sigma = (t.float() / flow.NUM_TRAIN_TIMESTEPS).expand(batch).to(x)
        v = velocity(x, sigma)
        x = scheduler.step(v, t, x, return_dict=False)[0]
        if ctx:
            x[:, :, :ctx] = context
        if callback is not None:
            callback(dict(i=i, x=x, sigma=sigma, x0=None))
    return x
