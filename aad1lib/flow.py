"""Flow-matching maths for Wan 2.1 (rectified flow), kept apart from the networks.

Conventions (Wan / diffusers ``FlowMatchEulerDiscreteScheduler``; Lipman et al. 2023, Liu et al. 2023):

- ``sigma`` in [0, 1], 1 = pure noise, 0 = clean data;
- forward process ``x_t = (1 - sigma) * x0 + sigma * noise``;
- velocity target ``v = noise - x0``, hence ``x0 = x_t - sigma * v``;
- the Wan transformer's ``timestep`` input is ``sigma * NUM_TRAIN_TIMESTEPS``.

Videos are ``[B, C, F, H, W]``. Wherever a function takes ``sigma`` it accepts a float, a ``[B]`` tensor
(one level per sample) or a ``[B, F]`` tensor (one level per frame, as in Diffusion Forcing, Chen et al.
2024); :func:`broadcast_sigma` turns any of these into ``[B, 1, F, 1, 1]``.

Every sigma schedule lives here: the teacher's (:func:`sampling_sigmas`), the student's target levels
(:func:`target_sigmas`) and its few-step lists (:func:`student_sigmas`, :func:`few_step_sigmas`,
:func:`causal_sigmas`).

Samplers are stateless functions with callbacks, in the style of k-diffusion's ``sampling.py``.
"""

from collections.abc import Callable, Sequence

import numpy as np
import torch
from einops import rearrange

NUM_TRAIN_TIMESTEPS = 1000

Sigma = float | torch.Tensor
"""A noise level: a float, a ``[B]`` tensor (per sample) or a ``[B, F]`` tensor (per frame)."""


def broadcast_sigma(sigma: Sigma, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Broadcast a noise level to a video's shape.

    Args:
        sigma: a float or 0-d tensor, a ``[B]`` tensor or a ``[B, F]`` tensor.
        x: the video ``[B, C, F, H, W]`` the level applies to.
        dtype: dtype of the result; defaults to ``x.dtype`` (float32 if ``x`` is not floating point).

    Returns:
        ``[B, 1, F, 1, 1]`` tensor on ``x.device`` (an expanded view: do not write into it).

    Raises:
        ValueError: naming both shapes when ``x`` is not 5-D or ``sigma`` does not fit it.
    """
    if x.ndim != 5:
        raise ValueError(f"expected a video [B, C, F, H, W], got a tensor of shape {list(x.shape)}")
    batch, _, frames = x.shape[:3]
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.float32
    sigma = torch.as_tensor(sigma, device=x.device, dtype=dtype)
    if sigma.ndim == 0:
        sigma = sigma.expand(batch, frames)
    elif sigma.ndim == 1 and sigma.shape[0] == batch:
        sigma = sigma[:, None].expand(batch, frames)
    elif sigma.ndim != 2 or tuple(sigma.shape) != (batch, frames):
        raise ValueError(
            f"sigma of shape {list(sigma.shape)} does not fit a video of shape {list(x.shape)} "
            f"[B, C, F, H, W]: expected a float, a [B] = [{batch}] tensor (per sample) "
            f"or a [B, F] = [{batch}, {frames}] tensor (per frame)"
        )
    return rearrange(sigma, "b f -> b 1 f 1 1")


# ----------------------------------------------------------------------------------------------------------
# Schedules


def shift_sigma(sigma: Sigma, shift: float) -> Sigma:
    """Resolution time shift of SD3 (Esser et al. 2024, eq. 23) used by Wan: ``shift*s / (1 + (shift-1)*s)``.

    Keeps 0 and 1 fixed and is monotone increasing; ``shift > 1`` moves mass towards high noise.
    Works elementwise on floats and tensors of any shape (same expression order as diffusers, so the
    results are bit-identical to the scheduler's).
    """
    return shift * sigma / (1 + (shift - 1) * sigma)


def sigma_to_timestep(sigma: Sigma) -> Sigma:
    """Wan's ``timestep`` input from a noise level: ``t = sigma * NUM_TRAIN_TIMESTEPS``. Any shape."""
    return sigma * NUM_TRAIN_TIMESTEPS


def timestep_to_sigma(t: Sigma) -> Sigma:
    """Noise level from Wan's ``timestep``: ``sigma = t / NUM_TRAIN_TIMESTEPS``. Any shape."""
    return t / NUM_TRAIN_TIMESTEPS


def per_frame_sigma(sigma: torch.Tensor, num_frames: int, context_frames: int) -> torch.Tensor:
    """``[B]`` -> ``[B, F]`` with the clean context frames at 0."""
    out = sigma[:, None].repeat(1, num_frames)
    out[:, :context_frames] = 0.0
    return out


def sampling_sigmas(num_steps: int, shift: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Descending inference sigmas with a terminal 0, identical to diffusers' Euler flow scheduler.

    Reproduces ``FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(num_steps).sigmas`` bit for bit,
    including its quirk: the linspace runs from ``sigma_max`` to ``sigma_min`` of the *training* grid,
    which the constructor has already shifted (``sigma_min = shift_sigma(1/1000, shift)``), and the shift
    is then applied a second time to the whole list. The first sigma is exactly 1.

    Returns:
        ``[num_steps + 1]`` float32 tensor.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    # Training grid end points as the scheduler's __init__ computes them (float32, already shifted).
    grid_ends = torch.tensor([NUM_TRAIN_TIMESTEPS, 1.0], dtype=torch.float32) / NUM_TRAIN_TIMESTEPS
    sigma_max, sigma_min = (s.item() for s in shift_sigma(grid_ends, shift))
    # set_timesteps: float64 numpy linspace over timesteps, shift again, then float32.
    timesteps = np.linspace(sigma_to_timestep(sigma_max), sigma_to_timestep(sigma_min), num_steps)
    sigmas = shift_sigma(timesteps / NUM_TRAIN_TIMESTEPS, shift)
    sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32, device=device)
    return torch.cat([sigmas, torch.zeros(1, device=sigmas.device)])


def target_sigmas(num_steps: int, shift: float, device: torch.device | str | None = None) -> torch.Tensor:
    """The few noise levels a ``num_steps`` student starts its steps from (Stage I/II target timesteps).

    The non-terminal part of :func:`sampling_sigmas`, e.g. 4 levels for a 4-step student; the teacher's
    ODE trajectory is stored at these levels (docs/design.md §5, "ODE pairs").

    Returns:
        ``[num_steps]`` float32 tensor, descending, first element 1.
    """
    return sampling_sigmas(num_steps, shift, device=device)[:-1]


def student_sigmas(target_sigmas: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` evenly spaced levels of Stage I's target list (always starting from the first), plus 0."""
    picks = [round(i * len(target_sigmas) / steps) for i in range(steps)]
    return torch.cat([target_sigmas[picks], target_sigmas.new_zeros(1)])


def few_step_sigmas(timesteps: Sequence[float], shift: float) -> torch.Tensor:
    """Shifted few-step levels plus the terminal 0, from Wan-scale timesteps (Self-Forcing's
    ``denoising_step_list``, e.g. ``[1000, 750, 500, 250]``)."""
    sigmas = torch.tensor([shift_sigma(t / NUM_TRAIN_TIMESTEPS, shift) for t in timesteps])
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def causal_sigmas(steps_or_sigmas, shift: float) -> torch.Tensor:
    """A few-step schedule with the terminal 0: given as sigmas, or ``k`` steps evenly spaced from t = 1000."""
    if isinstance(steps_or_sigmas, int):
        return few_step_sigmas([1000 * (1 - i / steps_or_sigmas) for i in range(steps_or_sigmas)], shift)
    return torch.as_tensor(steps_or_sigmas, dtype=torch.float32)


def sample_timesteps(
    batch: int,
    generator: torch.Generator | None = None,
    shift: float = 1.0,
    t_min: float = 0.0,
    t_max: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random noise levels for DMD / GAN noising: ``sigma = shift_sigma(U[t_min, t_max], shift)``.

    Follows DMD2 / Self-Forcing (uniform t, then the SD3 shift). ``t_min``/``t_max`` bound the level
    *before* the shift. Uses ``generator``'s device when ``device`` is not given.

    Returns:
        ``[B]`` float32 tensor of sigmas (multiply by 1000 via :func:`sigma_to_timestep` for the model).
    """
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise ValueError(f"need 0 <= t_min <= t_max <= 1, got t_min={t_min}, t_max={t_max}")
    if device is None and generator is not None:
        device = generator.device
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float32)
    return shift_sigma(t_min + (t_max - t_min) * u, shift)


# ----------------------------------------------------------------------------------------------------------
# Parameterisations: x0, noise, velocity


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Rectified-flow forward process ``x_t = (1 - sigma) * x0 + sigma * noise`` (Liu et al. 2023, eq. 1).

    Equals diffusers' ``scheduler.scale_noise(x0, timestep, noise)`` (computed in ``x0.dtype`` like it),
    but also takes per-sample and per-frame sigmas.

    Args:
        x0, noise: ``[B, C, F, H, W]``.
        sigma: float, ``[B]`` or ``[B, F]``.

    Returns:
        ``x_t``: ``[B, C, F, H, W]``.
    """
    s = broadcast_sigma(sigma, x0)
    return s * noise + (1.0 - s) * x0


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Flow-matching regression target ``v = dx_t/dsigma = noise - x0`` (Lipman et al. 2023, eq. 23).

    Shapes: ``[B, C, F, H, W]`` in and out (any matching shapes work).
    """
    return noise - x0


def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Clean-sample estimate from a velocity: ``x0 = x_t - sigma * v``.

    Args:
        x_t, v: ``[B, C, F, H, W]``.
        sigma: float, ``[B]`` or ``[B, F]``.

    Returns:
        ``x0``: ``[B, C, F, H, W]``.
    """
    return x_t - broadcast_sigma(sigma, x_t) * v


def velocity_from_x0(x_t: torch.Tensor, x0: torch.Tensor, sigma: Sigma, min_sigma: float = 1e-6) -> torch.Tensor:
    """Velocity implied by a clean-sample estimate: ``v = (x_t - x0) / sigma``.

    At ``sigma = 0`` the velocity is undetermined (``x_t = x0``); sigma is clamped to ``min_sigma`` so the
    result stays finite (about 0 when ``x_t`` and ``x0`` agree), never NaN/inf.

    Args:
        x_t, x0: ``[B, C, F, H, W]``.
        sigma: float, ``[B]`` or ``[B, F]``.

    Returns:
        ``v``: ``[B, C, F, H, W]``.
    """
    s = broadcast_sigma(sigma, x_t).clamp(min=min_sigma)
    return (x_t - x0) / s


def noise_from_x0(x_t: torch.Tensor, x0: torch.Tensor, sigma: Sigma, min_sigma: float = 1e-6) -> torch.Tensor:
    """Noise implied by a clean-sample estimate: ``noise = (x_t - (1 - sigma) * x0) / sigma``.

    Same clamp of sigma to ``min_sigma`` as :func:`velocity_from_x0` (noise is undetermined at sigma 0).

    Args:
        x_t, x0: ``[B, C, F, H, W]``.
        sigma: float, ``[B]`` or ``[B, F]``.

    Returns:
        ``noise``: ``[B, C, F, H, W]``.
    """
    s = broadcast_sigma(sigma, x_t)
    return (x_t - (1.0 - s) * x0) / s.clamp(min=min_sigma)


def classifier_free_guidance(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6): ``v_uncond + scale * (v_cond - v_uncond)``.

    ``scale = 1`` gives the conditional prediction, ``0`` the unconditional one. Any matching shapes.
    """
    return v_uncond + scale * (v_cond - v_uncond)


# ----------------------------------------------------------------------------------------------------------
# Steps and samplers


def euler_step(x_t: torch.Tensor, v: torch.Tensor, sigma: Sigma, sigma_next: Sigma) -> torch.Tensor:
    """One Euler step of the probability-flow ODE ``dx/dsigma = v``: ``x_t + (sigma_next - sigma) * v``.

    Computed in (at least) float32 and cast back to ``x_t.dtype``, like diffusers' ``step()`` upcasts.
    diffusers' ``FlowMatchEulerDiscreteScheduler.step()`` takes one scalar timestep per call (its
    ``per_token_timesteps`` option always steps to the next level of its own schedule, in token layout), so
    per-sample and per-frame schedules with arbitrary ``sigma_next`` (Diffusion Forcing) use this instead.

    Args:
        x_t, v: ``[B, C, F, H, W]``.
        sigma, sigma_next: float, ``[B]`` or ``[B, F]`` each.

    Returns:
        ``x_{sigma_next}``: ``[B, C, F, H, W]``.
    """
    compute_dtype = torch.promote_types(x_t.dtype, torch.float32)
    dt = broadcast_sigma(sigma_next, x_t, compute_dtype) - broadcast_sigma(sigma, x_t, compute_dtype)
    return (x_t.to(compute_dtype) + dt * v.to(compute_dtype)).to(x_t.dtype)


def x0_prediction_step(
    x_t: torch.Tensor, v: torch.Tensor, sigma: Sigma, sigma_next: Sigma, noise: torch.Tensor
) -> torch.Tensor:
    """Few-step "predict x0, then re-noise" transition of consistency / DMD students (Self-Forcing, Huang
    et al. 2025, Alg. 1): ``x0 = x_t - sigma * v``, then ``add_noise(x0, noise, sigma_next)``.

    With fresh ``noise`` this is the stochastic sampler of consistency models (Song et al. 2023, Alg. 1);
    with ``sigma_next = 0`` it returns the x0 prediction itself.

    Args:
        x_t, v, noise: ``[B, C, F, H, W]``.
        sigma, sigma_next: float, ``[B]`` or ``[B, F]`` each.

    Returns:
        ``x_{sigma_next}``: ``[B, C, F, H, W]``.
    """
    x0 = x0_from_velocity(x_t, v, sigma)
    return add_noise(x0, noise, sigma_next)


def sample_euler(
    denoise_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    sigmas: torch.Tensor,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Euler sampler for the flow ODE (k-diffusion ``sample_euler``; Karras et al. 2022, Alg. 1, no churn).

    Keeps gradients; wrap in ``torch.no_grad()`` for plain inference.

    Args:
        denoise_fn: ``denoise_fn(x_t, sigma) -> v`` with ``x_t`` ``[B, C, F, H, W]``, ``sigma`` a ``[B]``
            tensor (convert with :func:`sigma_to_timestep` for Wan), ``v`` the predicted velocity.
        x: starting state at ``sigmas[0]`` (pure noise when ``sigmas[0] = 1``), ``[B, C, F, H, W]``.
        sigmas: 1-D descending levels ``[S + 1]``, e.g. :func:`sampling_sigmas`; ``S`` model calls are made.
        callback: called after each model call with ``dict(i=step, x=x_t, sigma=[B] level, x0=x0 estimate)``.

    Returns:
        The state at ``sigmas[-1]``, ``[B, C, F, H, W]``.
    """
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas must be 1-D [num_steps + 1], got shape {list(sigmas.shape)}")
    batch = x.shape[0]
    sigmas = sigmas.to(x.device)
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i].expand(batch)
        v = denoise_fn(x, sigma)
        if callback is not None:
            callback(dict(i=i, x=x, sigma=sigma, x0=x0_from_velocity(x, v, sigma)))
        x = euler_step(x, v, sigma, sigmas[i + 1].expand(batch))
    return x
