"""Flow-matching maths (aad1lib.flow) against diffusers' FlowMatchEulerDiscreteScheduler and closed forms."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from aad1lib import flow

B, C, F, H, W = 2, 3, 4, 5, 6


def _video(seed: int, shape: tuple[int, ...] = (B, C, F, H, W)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _scheduler(num_steps: int, shift: float) -> FlowMatchEulerDiscreteScheduler:
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(num_steps)
    return scheduler


@pytest.mark.parametrize("num_steps, shift", [(1, 1.0), (4, 1.0), (4, 5.0), (8, 3.0), (48, 8.0), (50, 5.0)])
def test_sampling_sigmas_match_diffusers_scheduler(num_steps, shift):
    expected = _scheduler(num_steps, shift).sigmas
    sigmas = flow.sampling_sigmas(num_steps, shift)
    assert sigmas.shape == (num_steps + 1,) and sigmas.dtype == torch.float32
    assert torch.equal(sigmas, expected)
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert torch.all(sigmas[1:] < sigmas[:-1])


def test_target_sigmas_are_the_non_terminal_sampling_sigmas():
    targets = flow.target_sigmas(4, shift=5.0)
    assert targets.shape == (4,)
    assert torch.equal(targets, _scheduler(4, 5.0).sigmas[:-1])
    assert torch.all(targets > 0)


def test_timesteps_are_sigmas_times_1000_like_the_scheduler():
    scheduler = _scheduler(8, 3.0)
    assert torch.equal(flow.sigma_to_timestep(scheduler.sigmas[:-1]), scheduler.timesteps)
    assert torch.allclose(flow.timestep_to_sigma(scheduler.timesteps), scheduler.sigmas[:-1])
    assert flow.sigma_to_timestep(0.25) == 250.0 and flow.timestep_to_sigma(250.0) == 0.25


def test_add_noise_matches_scheduler_scale_noise():
    torch.manual_seed(0)
    scheduler = _scheduler(6, 5.0)
    x0, noise = _video(1), _video(2)
    for i in range(len(scheduler.timesteps)):
        timestep = scheduler.timesteps[i].expand(B)
        expected = scheduler.scale_noise(x0, timestep, noise)
        assert torch.equal(flow.add_noise(x0, noise, scheduler.sigmas[i]), expected)
        assert torch.equal(flow.add_noise(x0, noise, scheduler.sigmas[i].item()), expected)
    # one level per sample: scale_noise looks each sample's timestep up separately
    idx = torch.tensor([0, 3])
    expected = scheduler.scale_noise(x0, scheduler.timesteps[idx], noise)
    assert torch.equal(flow.add_noise(x0, noise, scheduler.sigmas[idx]), expected)


def test_euler_step_matches_scheduler_step_for_scalar_sigma():
    torch.manual_seed(0)
    scheduler = _scheduler(5, 3.0)
    x_ref = x = _video(1)
    for i, t in enumerate(scheduler.timesteps):
        v = _video(10 + i)
        (x_ref,) = scheduler.step(v, t, x_ref, return_dict=False)
        x = flow.euler_step(x, v, scheduler.sigmas[i], scheduler.sigmas[i + 1])
        assert torch.equal(x, x_ref)


def test_per_frame_euler_step_equals_per_sample_step_when_frames_share_sigma():
    torch.manual_seed(0)
    x, v = _video(1), _video(2)
    sigma, sigma_next = torch.tensor([0.9, 0.6]), torch.tensor([0.7, 0.2])
    per_sample = flow.euler_step(x, v, sigma, sigma_next)
    per_frame = flow.euler_step(x, v, sigma[:, None].expand(B, F), sigma_next[:, None].expand(B, F))
    assert torch.equal(per_frame, per_sample)
    assert torch.equal(flow.euler_step(x, v, 0.9, 0.7)[0], per_sample[0])


def test_per_frame_euler_step_matches_frame_by_frame_loop():
    torch.manual_seed(0)
    x, v = _video(1), _video(2)
    sigma = torch.rand(B, F) * 0.5 + 0.5  # distinct level per frame (Diffusion Forcing)
    sigma_next = sigma * torch.rand(B, F)
    out = flow.euler_step(x, v, sigma, sigma_next)
    for b in range(B):
        for f in range(F):
            expected = x[b, :, f] + (sigma_next[b, f] - sigma[b, f]) * v[b, :, f]
            assert torch.allclose(out[b, :, f], expected, atol=1e-6)
    # frames with different levels really get different updates
    shared = flow.euler_step(x, v, sigma[:, 0], sigma_next[:, 0])
    assert torch.equal(out[:, :, 0], shared[:, :, 0])
    assert not torch.allclose(out[:, :, 1:], shared[:, :, 1:])


def test_per_frame_add_noise_matches_frame_by_frame_loop():
    torch.manual_seed(0)
    x0, noise = _video(1), _video(2)
    sigma = torch.rand(B, F)
    out = flow.add_noise(x0, noise, sigma)
    for b in range(B):
        for f in range(F):
            expected = (1 - sigma[b, f]) * x0[b, :, f] + sigma[b, f] * noise[b, :, f]
            assert torch.allclose(out[b, :, f], expected, atol=1e-6)


def test_x0_velocity_roundtrip():
    torch.manual_seed(0)
    x0, noise = _video(1), _video(2)
    sigma = torch.rand(B, F) * 0.9 + 0.05
    x_t = flow.add_noise(x0, noise, sigma)
    v = flow.velocity_target(x0, noise)
    assert torch.allclose(flow.x0_from_velocity(x_t, v, sigma), x0, atol=1e-5)
    assert torch.allclose(flow.velocity_from_x0(x_t, x0, sigma), v, atol=1e-4)
    assert torch.allclose(flow.noise_from_x0(x_t, x0, sigma), noise, atol=1e-4)


def test_velocity_and_noise_from_x0_stay_finite_at_sigma_zero():
    x0 = _video(1)
    assert torch.equal(flow.velocity_from_x0(x0, x0, 0.0), torch.zeros_like(x0))
    assert torch.isfinite(flow.noise_from_x0(x0, x0, 0.0)).all()
    assert torch.isfinite(flow.velocity_from_x0(x0 + 1e-3, x0, torch.zeros(B, F))).all()


def test_shift_sigma_fixes_endpoints_and_is_monotone():
    s = torch.linspace(0, 1, 101)
    for shift in (0.5, 1.0, 3.0, 8.0):
        shifted = flow.shift_sigma(s, shift)
        assert shifted[0] == 0.0 and shifted[-1] == 1.0
        assert torch.all(shifted[1:] > shifted[:-1])
        assert flow.shift_sigma(0.0, shift) == 0.0 and flow.shift_sigma(1.0, shift) == 1.0
    assert torch.equal(flow.shift_sigma(s, 1.0), s)
    assert torch.all(flow.shift_sigma(s[1:-1], 5.0) > s[1:-1])  # shift > 1 moves towards noise
    assert flow.shift_sigma(0.5, 3.0) == pytest.approx(0.75)


def test_classifier_free_guidance_interpolates_and_extrapolates():
    v_cond, v_uncond = _video(1), _video(2)
    assert torch.allclose(flow.classifier_free_guidance(v_cond, v_uncond, 1.0), v_cond, atol=1e-6)
    assert torch.equal(flow.classifier_free_guidance(v_cond, v_uncond, 0.0), v_uncond)
    assert torch.allclose(flow.classifier_free_guidance(v_cond, v_uncond, 3.0), 3 * v_cond - 2 * v_uncond, atol=1e-5)


def test_sample_timesteps_are_seeded_and_in_shifted_range():
    a = flow.sample_timesteps(256, torch.Generator().manual_seed(0), shift=3.0, t_min=0.02, t_max=0.98)
    b = flow.sample_timesteps(256, torch.Generator().manual_seed(0), shift=3.0, t_min=0.02, t_max=0.98)
    assert a.shape == (256,) and torch.equal(a, b)
    assert a.min() >= flow.shift_sigma(0.02, 3.0) - 1e-6 and a.max() <= flow.shift_sigma(0.98, 3.0) + 1e-6
    unshifted = flow.sample_timesteps(256, torch.Generator().manual_seed(0))
    assert torch.allclose(flow.shift_sigma(unshifted * 0.96 + 0.02, 3.0), a, atol=1e-6)
    with pytest.raises(ValueError, match="t_min"):
        flow.sample_timesteps(2, t_min=0.5, t_max=0.1)


@pytest.mark.parametrize("num_steps, shift", [(1, 1.0), (4, 5.0), (12, 3.0)])
def test_sample_euler_recovers_x0_for_exact_velocity(num_steps, shift):
    torch.manual_seed(0)
    x0, noise = _video(1), _video(2)
    sigmas = flow.sampling_sigmas(num_steps, shift)
    seen = []

    def denoise_fn(x_t, sigma):
        assert sigma.shape == (B,)
        return flow.velocity_target(x0, noise)

    def callback(info):
        seen.append(info["i"])
        assert torch.allclose(info["x0"], x0, atol=1e-5)

    out = flow.sample_euler(denoise_fn, noise.clone(), sigmas, callback=callback)
    assert torch.allclose(out, x0, atol=1e-5)
    assert seen == list(range(num_steps))


def test_x0_prediction_step_renoises_the_x0_estimate():
    torch.manual_seed(0)
    x0, noise, fresh = _video(1), _video(2), _video(3)
    sigma, sigma_next = torch.tensor([0.9, 0.7]), torch.rand(B, F) * 0.5
    x_t = flow.add_noise(x0, noise, sigma)
    v = flow.velocity_target(x0, noise)
    out = flow.x0_prediction_step(x_t, v, sigma, sigma_next, fresh)
    assert torch.allclose(out, flow.add_noise(x0, fresh, sigma_next), atol=1e-5)
    # with the same noise and the exact velocity the straight path makes it an Euler step
    same = flow.x0_prediction_step(x_t, v, sigma, sigma_next, noise)
    assert torch.allclose(same, flow.euler_step(x_t, v, sigma, sigma_next), atol=1e-5)
    assert torch.allclose(flow.x0_prediction_step(x_t, v, sigma, 0.0, fresh), x0, atol=1e-5)


@pytest.mark.parametrize("sigma_shape", [(B + 1,), (B, F + 1), (F,), (B, F, 1), (1, B, F)], ids=str)
def test_bad_sigma_shape_raises_clear_error(sigma_shape):
    x = _video(1)
    with pytest.raises(ValueError, match=r"sigma of shape .* does not fit a video of shape \[2, 3, 4, 5, 6\]"):
        flow.add_noise(x, x, torch.rand(sigma_shape))
    with pytest.raises(ValueError, match="does not fit"):
        flow.euler_step(x, x, 0.5, torch.rand(sigma_shape))


def test_non_video_input_raises_clear_error():
    with pytest.raises(ValueError, match=r"expected a video \[B, C, F, H, W\], got a tensor of shape \[2, 3, 5\]"):
        flow.broadcast_sigma(0.5, torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="1-D"):
        flow.sample_euler(lambda x, s: x, _video(1), torch.rand(3, 2))


def test_broadcast_sigma_shapes():
    x = _video(1)
    for sigma in (0.3, torch.tensor(0.3), torch.full((B,), 0.3), torch.full((B, F), 0.3)):
        out = flow.broadcast_sigma(sigma, x)
        assert out.shape == (B, 1, F, 1, 1) and out.dtype == x.dtype
        assert torch.allclose(out, torch.tensor(0.3))
