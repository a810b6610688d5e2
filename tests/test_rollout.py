"""Streaming rollout: KV-cache generation equals re-running the full block-causal forward, chunk by chunk."""

import pytest
import torch

from aad1lib import flow
from aad1lib.flow import few_step_sigmas
from aad1lib.models import CausalWanTransformer3DModel, ChunkLayout
from aad1lib.rollout import stream_generate


def _reference_rollout(model, layout, text, noise, sigmas, context, renoise_noises, forced=None):
    """No cache: for each chunk, run the whole clip so far (clean history + current chunk) block-causally."""
    batch = noise.shape[0]
    history = context
    outputs = [context]
    per = layout.frames_per_chunk
    draws = iter(renoise_noises)
    for chunk in range(noise.shape[2] // per):
        x = noise[:, :, chunk * per : (chunk + 1) * per]
        for step in range(len(sigmas) - 1):
            clip = torch.cat([history, x], dim=2)
            t = torch.zeros(batch, clip.shape[2])
            t[:, -per:] = sigmas[step] * 1000
            v = model(clip, t, text, chunk_layout=layout).sample[:, :, -per:]
            x0 = flow.x0_from_velocity(x, v, sigmas[step].expand(batch))
            if step < len(sigmas) - 2:
                x = flow.add_noise(x0, next(draws), sigmas[step + 1].expand(batch))
        written = forced[:, :, chunk * per : (chunk + 1) * per] if forced is not None else x0
        history = torch.cat([history, written], dim=2)
        outputs.append(x0)
    return torch.cat(outputs, dim=2)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("window", [None, 3])
def test_rollout_with_kv_cache_matches_full_block_causal_recompute(tiny_wan_config, steps, window):
    model = CausalWanTransformer3DModel(**tiny_wan_config).eval()
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1, sink_frames=1 if window else 0, window_frames=window)
    context, text = torch.randn(2, 3, 1, 16, 16), torch.randn(2, 5, 32)
    noise = torch.randn(2, 3, 6, 16, 16)
    sigmas = few_step_sigmas([1000, 750, 500][:steps], shift=3.0)
    draws = [torch.randn(2, 3, 2, 16, 16) for _ in range(3 * steps)]
    it = iter(draws)
    with torch.no_grad():
        out = stream_generate(model, layout, text, noise, sigmas, context=context, renoise=lambda x: next(it))
        ref = _reference_rollout(model, layout, text, noise, sigmas, context, draws)
    assert out.video.shape == (2, 3, 7, 16, 16)
    assert (out.video - ref).abs().max() <= 1e-5
    assert out.passes == 1 + 3 * (steps + 1)  # context write + (steps + cache write) per chunk


def test_rollout_gradient_flows_through_exit_step_only(tiny_wan_config):
    model = CausalWanTransformer3DModel(**tiny_wan_config)
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1)
    context, text = torch.randn(1, 3, 1, 16, 16), torch.randn(1, 5, 32)
    out = stream_generate(
        model,
        layout,
        text,
        torch.randn(1, 3, 4, 16, 16),
        few_step_sigmas([1000, 500], 3.0),
        context=context,
        grad_step=0,
    )
    assert out.video.requires_grad
    out.video.square().mean().backward()
    assert model.blocks[0].attn1.to_q.weight.grad.abs().sum() > 0
    assert not any(k.requires_grad for segments in out.kv_cache.keys for k in segments)


def test_rollout_with_cfg_runs_both_branches(tiny_wan_config):
    model = CausalWanTransformer3DModel(**tiny_wan_config).eval()
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1)
    args = (model, layout, torch.randn(1, 5, 32), torch.randn(1, 3, 4, 16, 16), few_step_sigmas([1000], 3.0))
    kw = dict(context=torch.randn(1, 3, 1, 16, 16), renoise=torch.zeros_like)
    with torch.no_grad():
        plain = stream_generate(*args, **kw).video
        guided = stream_generate(*args, uncond_text=torch.zeros(1, 5, 32), guidance_scale=3.0, **kw).video
        same = stream_generate(*args, uncond_text=torch.zeros(1, 5, 32), guidance_scale=1.0, **kw).video
    assert torch.equal(plain, same)
    assert not torch.allclose(plain[:, :, 1:], guided[:, :, 1:])


def test_teacher_forced_rollout_conditions_on_the_given_frames(tiny_wan_config):
    """CausVid-style: the cache holds ground-truth chunks, not the student's own outputs."""
    model = CausalWanTransformer3DModel(**tiny_wan_config).eval()
    layout = ChunkLayout(frames_per_chunk=2, context_frames=1)
    context, text = torch.randn(1, 3, 1, 16, 16), torch.randn(1, 5, 32)
    noise, truth = torch.randn(1, 3, 6, 16, 16), torch.randn(1, 3, 6, 16, 16)
    sigmas = few_step_sigmas([1000], shift=3.0)
    with torch.no_grad():
        forced = stream_generate(model, layout, text, noise, sigmas, context=context, forced_frames=truth).video
        ref = _reference_rollout(model, layout, text, noise, sigmas, context, [], forced=truth)
        free = stream_generate(model, layout, text, noise, sigmas, context=context).video
    assert (forced - ref).abs().max() <= 1e-5
    assert torch.equal(forced[:, :, :3], free[:, :, :3])  # first chunk: same context either way
    assert not torch.allclose(forced[:, :, 3:], free[:, :, 3:])
