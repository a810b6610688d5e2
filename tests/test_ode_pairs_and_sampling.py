"""Stage I data streams from disk and resumes shard by shard; the teacher samplers keep the given frame."""

import torch

from aad1lib.builders import build_dataset, build_latent_codec, build_text
from aad1lib.config import load_preset
from aad1lib.models import CausalWanTransformer3DModel
from aad1lib.ode_pairs import ODEPairsDataset, generate_ode_pairs
from aad1lib.sampling import sample_i2v


def _generate(cfg, model, out):
    return generate_ode_pairs(out, model, build_dataset(cfg, "train"), build_text(cfg), build_latent_codec(cfg),
                              num_pairs=5, ode_steps=4, target_steps=2, shift=3.0, guidance_scale=2.0,
                              context_frames=1, shard_size=2, batch_size=2, seed=0, progress=False)  # fmt: skip


def test_ode_pair_generation_resumes_missing_shards_with_identical_content(tmp_path):
    cfg = load_preset("tiny")
    model = CausalWanTransformer3DModel(**cfg.wan_kwargs()).eval()
    out = _generate(cfg, model, tmp_path / "pairs")
    first = [ODEPairsDataset(out)[i] for i in range(5)]
    kept = (out / "shard-00000.safetensors").stat().st_mtime_ns
    (out / "shard-00001.safetensors").unlink()  # an interrupted generation
    _generate(cfg, model, tmp_path / "pairs")
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == kept  # finished shards are not redone
    again = ODEPairsDataset(out)
    assert len(again) == 5 and again.target_sigmas.tolist() == [1.0, again.spec["target_sigmas"][1]]
    for a, b in zip(first, (again[i] for i in range(5)), strict=True):
        assert torch.equal(a["states"], b["states"]) and torch.equal(a["x0"], b["x0"]) and a["prompt"] == b["prompt"]
    assert first[0]["states"].shape == (2, 3, cfg.latent_frames, cfg.data.height, cfg.data.width)
    # the first state is the initial noise with the clean context frame, the endpoint keeps it too
    assert torch.equal(first[0]["states"][0, :, 0], first[0]["x0"][:, 0])


def test_both_teacher_samplers_keep_the_given_first_frame_and_fill_the_rest():
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(**load_preset("tiny").wan_kwargs()).eval()
    context, text = torch.randn(2, 3, 1, 16, 16), torch.randn(2, 4, 32)
    noise = torch.randn(2, 3, 4, 16, 16)
    outs = {}
    for sampler in ("euler", "unipc"):
        out = sample_i2v(model, context, text, 5, steps=4, shift=3.0, uncond_text=torch.zeros_like(text),
                         guidance_scale=2.0, sampler=sampler, noise=noise)  # fmt: skip
        assert out.shape == (2, 3, 5, 16, 16) and torch.equal(out[:, :, :1], context)
        assert torch.isfinite(out).all() and not torch.allclose(out[:, :, 1:], noise)
        outs[sampler] = out
    assert not torch.allclose(outs["euler"], outs["unipc"])
