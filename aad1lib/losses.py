"""The losses of the three stages, apart from the networks (each headed by the equation it implements).

Tensors are videos ``[B, C, F, H, W]``; ``frame_mask`` ``[F]`` (bool) selects the frames a loss sees
(I2V: the clean context frames are excluded everywhere).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import flow

VAL_SIGMAS = (0.3, 0.5, 0.7)  # levels of the teacher's denoising loss (Stage II validation, before/after tables)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the selected frames (all frames if ``frame_mask`` is None)."""
    if frame_mask is not None:
        pred, target = pred[:, :, frame_mask], target[:, :, frame_mask]
    return F.mse_loss(pred.float(), target.float())


# ---- Stage 0 / critic: flow matching --------------------------------------------------------------
def flow_matching_loss(v_pred, x0, noise, frame_mask=None, x0_sigma=None) -> torch.Tensor:
    """‖v_θ(x_t, t) − (ε − x0)‖² (rectified flow; Wan). Also the DMD fake-score critic's loss on student samples.

    ``x0_sigma`` (``[B]`` or ``[B, F]``, the noise levels of ``x_t``): the loss in x0 space, ‖σ(v_θ − v)‖² =
    ‖x̂0 − x0‖², for models that predict x0 (the first-frame residual parameterisation, docs/design.md §9), whose
    x0 error the velocity loss would weight by 1/σ²."""
    target = noise - x0
    if x0_sigma is not None:
        scale = x0_sigma.reshape(x0_sigma.shape[0], 1, -1, 1, 1).to(v_pred.dtype)  # [B, 1, 1|F, 1, 1]
        v_pred, target = v_pred * scale, target * scale
    return masked_mse(v_pred, target, frame_mask)


def x0_loss_sigma(sigma: torch.Tensor, condition: dict | None) -> torch.Tensor | None:
    """``sigma`` if the model predicts x0 (a first-frame residual model: ``condition`` has its anchor), so its
    flow-matching loss is taken in x0 space; else None (Wan's velocity loss). Teacher, critic, validation."""
    return sigma if condition and "anchor" in condition else None


# ---- Stage I: ODE regression ----------------------------------------------------------------------
def ode_regression_loss(x0_pred, x0_ode, frame_mask=None) -> torch.Tensor:
    """Stage I: ‖G(z_t, x̃_ctx,t, c) − S^ODE(z_t, x̃_ctx,t, c)‖², the student's x0 from a trajectory state vs
    the teacher ODE's endpoint (CausVid's ODE initialisation)."""
    return masked_mse(x0_pred, x0_ode, frame_mask)


# ---- Stage II: distribution matching distillation -------------------------------------------------
def dmd_gradient(x, x0_real, x0_fake, frame_mask=None, eps: float = 1e-6) -> torch.Tensor:
    """Stage II (DMD / DMD2 / Self-Forcing): ∇ = (x̂_fake − x̂_real) / mean|x − x̂_real| per sample.

    Points from the real score's denoised estimate toward the fake one, so a *descent* step on the
    generator moves samples from the fake (student) distribution toward the real (teacher) one. The
    normaliser is averaged over the selected frames and clamped at ``eps`` (no division by zero when the
    real score reproduces x exactly).
    """
    diff = x - x0_real
    if frame_mask is not None:
        diff = diff[:, :, frame_mask]
    normaliser = diff.abs().float().mean(dim=tuple(range(1, diff.ndim)), keepdim=True).clamp_min(eps)
    grad = (x0_fake - x0_real).float() / normaliser
    if frame_mask is not None:
        grad = grad * frame_mask.view(1, 1, -1, 1, 1).to(grad)
    return torch.nan_to_num(grad)


def dmd_loss(x, x0_real, x0_fake, frame_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """½ mean‖x − sg(x − ∇)‖² (Self-Forcing), whose gradient w.r.t. x is ∇ / numel; returns (loss, ∇)."""
    grad = dmd_gradient(x.detach(), x0_real.detach(), x0_fake.detach(), frame_mask)
    target = (x.detach().float() - grad).detach()
    return 0.5 * masked_mse(x, target, frame_mask), grad


# ---- Stage III: logistic GAN + approximate R1/R2 ---------------------------------------------------
def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Stage III, D: softplus(−D(real)) + softplus(D(fake)) (non-saturating logistic GAN)."""
    return F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()


def generator_adversarial_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Stage III, G: softplus(−D(fake))."""
    return F.softplus(-logits_fake).mean()


def approximate_r1(discriminator, x: torch.Tensor, logits: torch.Tensor, sigma: float, *args, eps=None, generator=None):
    """Approximate R1 (on reals) / R2 (on fakes): mean(((D(x + σε) − D(x)) / σ)²).

    A finite difference along a random direction ε replaces the input-gradient norm of exact R1
    (AAD-1 / APT-style; cheap: one extra D forward, no double backward). As σ → 0 it tends to
    (∇_x D · ε)², whose expectation over ε is ‖∇_x D‖². Convention: the value returned is NOT yet
    multiplied by λ; the trainer adds ``λ · approximate_r1(...)`` with the paper's λ = 20, and divides by σ
    (AAPT instead uses σ = 0.1 without dividing).
    """
    if eps is None:  # the random direction; pass it in to control it (e.g. drawn for a global batch)
        eps = torch.randn(x.shape, generator=generator).to(x) if generator is not None else torch.randn_like(x)
    logits_perturbed = discriminator(x + sigma * eps, *args)
    return ((logits_perturbed - logits) / sigma).float().pow(2).mean()


# ---- Stage II validation and the before/after tables: how the teacher sees a clip ----------------------
@torch.no_grad()
def teacher_denoising_loss(teacher, video, text, context_frames, seed: int = 0, condition: dict | None = None) -> float:
    """Mean flow-matching loss of the teacher on ``video`` at :data:`VAL_SIGMAS` (fixed noise): how well
    the clip sits on the teacher's distribution. Real data and teacher samples score low."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.arange(video.shape[2]) >= context_frames
    losses = []
    for level in VAL_SIGMAS:
        noise = torch.randn(video.shape, generator=gen).to(video)
        sigma = flow.per_frame_sigma(torch.full((video.shape[0],), level), video.shape[2], context_frames).to(video)
        x_t = flow.add_noise(video, noise, sigma)
        v = teacher(x_t, flow.sigma_to_timestep(sigma), text, return_dict=False, **(condition or {}))[0]
        losses.append(flow_matching_loss(v, video, noise, mask, x0_loss_sigma(sigma, condition)).item())
    return sum(losses) / len(losses)
