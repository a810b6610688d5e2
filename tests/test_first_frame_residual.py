"""The first-frame residual parameterisation (model.residual_to_first_frame, docs/design.md §9)."""

import pytest
import torch
from standins import STREAMING_LAYOUTS

from aad1lib.builders import build_dataset, build_latent_codec, build_text, build_wan, collate
from aad1lib.conditioning import I2VConditioner
from aad1lib.config import ConfigError, load_preset
from aad1lib.eval.teacher_fidelity import teacher_fidelity
from aad1lib.models import CausalWanTransformer3DModel
from aad1lib.train.teacher import sample_teacher

ANCHORED_LAYOUTS = {k: v for k, v in STREAMING_LAYOUTS.items() if v.context_frames}


def test_untrained_residual_teacher_samples_copies_of_the_first_frame():
    """Zero-initialised output = r0 predicted 0: 24-step CFG sampling lands exactly on the copy baseline."""
    cfg = load_preset("tiny", {"model.residual_to_first_frame": True})
    model, codec = build_wan(cfg).eval(), build_latent_codec(cfg)
    test = build_dataset(cfg, "test")
    batch = collate([test[i] for i in range(2)])
    samples = sample_teacher(cfg, model, build_text(cfg), codec, batch, conditioner=I2VConditioner(cfg, codec))
    assert (samples - batch["video"][:, :, :1]).abs().max() < 1e-5
    fidelity = teacher_fidelity(batch["video"], samples)
    assert fidelity["psnr_teacher"] == pytest.approx(fidelity["psnr_copy"], abs=1e-3)


def test_residual_velocity_is_the_change_of_variables_to_the_first_frame(tiny_wan_config):
    """v = (r_t - net(r_t)) / σ - a with r_t = x_t - (1 - σ) a on frames after the anchor; the anchor's own frame
    goes through untouched — checked against the same network called without the anchor."""
    model = CausalWanTransformer3DModel(**tiny_wan_config).eval()
    x, text = torch.randn(2, 3, 5, 16, 16), torch.randn(2, 5, tiny_wan_config["text_dim"])
    sigma = torch.rand(2, 5) * 0.9 + 0.05
    anchor = torch.randn(2, 3, 1, 16, 16)
    mask = torch.tensor([0.0, 1, 1, 1, 1])[None, None, :, None, None]
    s = sigma[:, None, :, None, None]
    with torch.no_grad():
        v = model(x, sigma * 1000, text, anchor=anchor).sample
        r_t = x - (1 - s) * anchor * mask
        r0 = model(r_t, sigma * 1000, text).sample
    expected = torch.where(mask.bool(), (r_t - r0) / s - anchor, r0)
    assert (v - expected).abs().max() < 1e-4
    assert not torch.allclose(v[:, :, 1:], r0[:, :, 1:])  # the anchor reached the shifted frames


@pytest.mark.parametrize("layout", ANCHORED_LAYOUTS.values(), ids=ANCHORED_LAYOUTS.keys())
def test_streaming_with_first_frame_anchor_matches_block_causal_forward(tiny_wan_config, layout):
    """Each streamed chunk shifts by the anchor at its absolute frame index: equal to the whole-clip forward."""
    model = CausalWanTransformer3DModel(**tiny_wan_config).eval()
    frames = layout.context_frames + 3 * layout.frames_per_chunk
    x, t = torch.randn(2, 3, frames, 16, 16), torch.rand(2, frames) * 1000
    text, anchor = torch.randn(2, 5, tiny_wan_config["text_dim"]), torch.randn(2, 3, layout.context_frames, 16, 16)
    with torch.no_grad():
        full = model(x, t, text, chunk_layout=layout, anchor=anchor).sample
        cache, outs, offset = model.new_kv_cache(layout), [], 0
        for size in [layout.context_frames] + [layout.frames_per_chunk] * 3:
            sl = slice(offset, offset + size)
            outs.append(model(x[:, :, sl], t[:, sl], text, chunk_layout=layout, kv_cache=cache, frame_offset=offset,
                              update_cache=True, anchor=anchor).sample)  # fmt: skip
            offset += size
    assert (torch.cat(outs, dim=2) - full).abs().max() <= 1e-4


def test_residual_parameterisation_needs_a_clean_context_frame():
    with pytest.raises(ConfigError, match="residual_to_first_frame"):
        load_preset("tiny", {"model.residual_to_first_frame": True, "chunking.context_frames": 0})


def test_residual_teacher_loss_is_the_x0_error_of_the_generated_frames(tiny_wan_config):
    """With an anchor the teacher's flow-matching loss is ‖x̂0 − x0‖² (x̂0 = x_t − σv) over the generated frames,
    not the velocity loss that weights it by 1/σ²; without one it stays Wan's velocity loss."""
    from aad1lib import flow
    from aad1lib.train.teacher import teacher_loss

    model = CausalWanTransformer3DModel(**tiny_wan_config).eval()
    latents, noise = torch.randn(2, 3, 5, 16, 16), torch.randn(2, 3, 5, 16, 16)
    text, sigma = torch.randn(2, 5, tiny_wan_config["text_dim"]), torch.tensor([0.05, 0.7])
    condition = {"anchor": latents[:, :, :1]}
    with torch.no_grad():
        loss = teacher_loss(model, latents, text, sigma, noise, 1, condition)
        velocity_loss = teacher_loss(model, latents, text, sigma, noise, 1)
        per_frame = sigma[:, None].repeat(1, 5)
        per_frame[:, 0] = 0
        x_t = flow.add_noise(latents, noise, per_frame)
        v = model(x_t, per_frame * 1000, text, **condition).sample
        x0_hat = x_t - per_frame[:, None, :, None, None] * v
    assert loss.item() == pytest.approx((x0_hat - latents)[:, :, 1:].square().mean().item(), rel=1e-4)
    v_plain = model(x_t, per_frame * 1000, text).sample
    assert velocity_loss.item() == pytest.approx(
        (v_plain - (noise - latents))[:, :, 1:].square().mean().item(), rel=1e-4
    )


def test_discriminator_reads_clips_with_the_anchor_of_its_residual_backbone():
    """A D whose backbone is the residual teacher gets the anchor (how that backbone reads a clip); a D from a
    Wan T2V checkpoint (stage3.disc_pretrained) gets nothing; Wan I2V channels only for a backbone with them."""
    from types import SimpleNamespace

    from aad1lib.train.stage3 import discriminator_condition

    cfg = load_preset("tiny", {"model.residual_to_first_frame": True})
    backbone = SimpleNamespace(config=SimpleNamespace(in_channels=cfg.model.in_channels))
    anchor = torch.randn(2, 3, 1, 8, 8)
    assert discriminator_condition(cfg, backbone, {"anchor": anchor})["anchor"] is anchor
    cfg.stage3.disc_pretrained = "/wan/t2v"
    assert discriminator_condition(cfg, backbone, {"anchor": anchor}) is None
    plain = load_preset("tiny")
    assert discriminator_condition(plain, backbone, {}) is None


def test_one_pass_estimate_of_an_oracle_is_exact_and_of_an_identity_model_degrades_with_sigma():
    """``one_pass_psnr`` noises the generated frames only and reads x0 = x_t − σ v: a model returning the true
    velocity scores ~100 dB at every σ, one returning v = 0 (x0 = x_t) loses PSNR as σ grows."""
    from aad1lib.eval.teacher_fidelity import one_pass_psnr
    from aad1lib.models.codec import IdentityCodec

    real = torch.rand(2, 3, 5, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(3))  # one_pass_psnr's noise (seed 3)

    def oracle(x_t, timestep, text, return_dict=False):
        assert (timestep[:, 0] == 0).all() and (timestep[:, 1:] > 0).all()  # context frame clean
        return (noise - real,)

    sigmas = [0.9, 0.5, 0.1]
    exact = one_pass_psnr(oracle, IdentityCodec(), real, None, {}, sigmas, context_frames=1, seed=3)
    assert all(p > 90.0 for values in exact.values() for p in values) and len(exact[0.5]) == 4
    still = one_pass_psnr(lambda x, t, c, return_dict=False: (torch.zeros_like(x),), IdentityCodec(), real, None, {},
                          sigmas, context_frames=1, seed=3)  # fmt: skip
    means = [sum(still[s]) / 4 for s in sigmas]
    assert means[0] < means[1] < means[2]
