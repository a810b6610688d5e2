"""Losses of Stages I-III on tensors whose answer is known."""

import torch

from aad1lib import flow
from aad1lib.losses import (
    approximate_r1,
    discriminator_loss,
    dmd_gradient,
    dmd_loss,
    flow_matching_loss,
    generator_adversarial_loss,
    ode_regression_loss,
)
from aad1lib.models import ChunkLayout
from aad1lib.train.stage1 import diffusion_forcing_inputs, draw_chunk_levels


def test_ode_regression_is_zero_on_the_trajectory():
    """Straight-line (rectified-flow) trajectories of a point mass: an oracle that predicts the exact velocity
    maps every per-chunk Diffusion-Forcing state to the endpoint, so the Stage I loss is zero."""
    x0, noise = torch.randn(2, 3, 7, 4, 4), torch.randn(2, 3, 7, 4, 4)
    targets = torch.tensor([1.0, 0.8, 0.5, 0.2])
    states = torch.stack([flow.add_noise(x0, noise, s) for s in targets], dim=1)  # [B, S, C, F, H, W]
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1)
    chunk = layout.chunk_of(torch.arange(7))
    x, sigma = diffusion_forcing_inputs(
        states,
        x0,
        targets,
        chunk,
        1,
        draw_chunk_levels(len(states), len(targets), chunk, torch.Generator().manual_seed(0)),
    )
    assert len(set(sigma[:, 1:].flatten().tolist())) > 1  # chunks really sit at different levels
    assert torch.equal(x[:, :, 0], x0[:, :, 0]) and torch.all(sigma[:, 0] == 0)
    oracle_v = noise - x0
    x0_pred = flow.x0_from_velocity(x, oracle_v, sigma)
    assert ode_regression_loss(x0_pred, x0, chunk >= 0) < 1e-10
    assert ode_regression_loss(x0_pred + 0.1, x0, chunk >= 0) > 1e-3


def test_dmd_gradient_is_zero_when_real_and_fake_scores_agree():
    x, x0 = torch.randn(2, 3, 5, 4, 4), torch.randn(2, 3, 5, 4, 4)
    assert torch.count_nonzero(dmd_gradient(x, x0, x0.clone())) == 0
    loss, _ = dmd_loss(x.requires_grad_(), x0, x0.clone())
    loss.backward()
    assert torch.count_nonzero(x.grad) == 0


def test_dmd_step_moves_samples_from_fake_toward_real_score():
    x_real_mode = torch.zeros(2, 3, 5, 4, 4)
    x = torch.randn(2, 3, 5, 4, 4, requires_grad=True)
    # the fake score denoises to the student's own sample, the real score to the teacher's mode
    loss, grad = dmd_loss(x, x_real_mode, x.detach().clone())
    loss.backward()
    # descent direction = -(x0_fake - x0_real): from fake toward real
    assert torch.allclose(x.grad / x.grad.norm(), grad / grad.norm(), atol=1e-6)
    with torch.no_grad():
        stepped = x - 100.0 * x.grad
    assert (stepped - x_real_mode).norm() < (x - x_real_mode).norm()


def test_dmd_normaliser_guards_against_division_by_zero():
    x = torch.randn(1, 3, 3, 2, 2)
    grad = dmd_gradient(x, x.clone(), x + 1.0)  # real score reproduces x exactly: |x - x0_real| = 0
    assert torch.isfinite(grad).all()


def test_dmd_ignores_context_frames():
    x, real, fake = torch.randn(3, 1, 2, 3, 4, 4).unbind(0)
    mask = torch.tensor([False, True, True])
    grad = dmd_gradient(x, real, fake, mask)
    assert torch.count_nonzero(grad[:, :, 0]) == 0 and torch.count_nonzero(grad[:, :, 1:]) > 0


def test_critic_loss_is_the_flow_matching_loss():
    x0, noise, v = torch.randn(3, 2, 3, 5, 4, 4).unbind(0)
    assert flow_matching_loss(noise - x0, x0, noise) == 0
    assert torch.isclose(flow_matching_loss(v, x0, noise), ((v - (noise - x0)) ** 2).mean())


def test_logistic_gan_losses_on_known_logits():
    big = torch.tensor([30.0])
    assert discriminator_loss(big, -big) < 1e-10  # confident and right
    assert torch.isclose(discriminator_loss(torch.zeros(4), torch.zeros(4)), torch.tensor(2 * 0.6931472))
    assert torch.isclose(generator_adversarial_loss(torch.zeros(3)), torch.tensor(0.6931472))
    assert generator_adversarial_loss(big) < generator_adversarial_loss(-big)


def test_approximate_r1_tends_to_squared_directional_gradient():
    torch.manual_seed(0)
    disc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def d(v):
        return disc(v).squeeze(-1)

    x = torch.randn(4, 3, 4, 2, 2, requires_grad=True)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    exact = (grad * eps).flatten(1).sum(1).pow(2).mean()  # (∇D · ε)²
    errors = []
    for sigma in (1e-1, 1e-2, 1e-3):
        approx = approximate_r1(d, x.detach(), d(x.detach()), sigma, generator=torch.Generator().manual_seed(1))
        errors.append(abs(approx.item() - exact.item()) / exact.item())
    assert errors[-1] < 1e-2 and errors[-1] < errors[0]


def test_approximate_r1_is_zero_for_a_discriminator_that_ignores_its_input():
    bias = torch.nn.Parameter(torch.tensor(0.7))

    def d(v):
        return bias.expand(v.shape[0])

    x = torch.randn(2, 3, 4, 2, 2)
    assert approximate_r1(d, x, d(x), 0.01) == 0
