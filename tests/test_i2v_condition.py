"""Wan 2.1 I2V conditioning: the first-frame mask and the condition's layout (peer equality: test_wan_i2v.py)."""

import pytest
import torch

from aad1lib.config import ConfigError, load_preset
from aad1lib.models.codec import IdentityCodec
from aad1lib.models.i2v import first_frame_mask, wan_i2v_condition


def test_first_frame_mask_marks_exactly_the_first_latent_frame():
    # Wan VAE: 9 pixel frames -> 3 latent frames of 4 pixel frames each (the first stands for one, repeated)
    mask = first_frame_mask(num_pixel_frames=9, temporal_factor=4, height=2, width=3)
    assert mask.shape == (1, 4, 3, 2, 3)
    assert mask[:, :, 0].eq(1).all() and mask[:, :, 1:].eq(0).all()
    assert first_frame_mask(5, 1, 2, 2)[0, 0, :, 0, 0].tolist() == [1, 0, 0, 0, 0]  # pixel space


def test_condition_is_mask_then_the_first_frame_followed_by_black():
    first = torch.rand(2, 3, 8, 8) * 2 - 1
    cond = wan_i2v_condition(IdentityCodec(), first, num_pixel_frames=5)
    assert cond.shape == (2, 1 + 3, 5, 8, 8)
    assert cond[:, 0, 0].eq(1).all() and cond[:, 0, 1:].eq(0).all()
    assert torch.equal(cond[:, 1:, 0], first) and cond[:, 1:, 1:].eq(0).all()


def test_wan_i2v_preset_widens_the_model_input_and_has_no_context_frames():
    cfg = load_preset("tiny", {"model.i2v": "wan_i2v", "chunking.context_frames": 0, "data.num_frames": 8})
    kwargs = cfg.wan_kwargs()
    assert (kwargs["in_channels"], kwargs["out_channels"]) == (3 + 1 + 3, 3)
    with pytest.raises(ConfigError, match="context_frames must be 0"):
        load_preset("tiny", {"model.i2v": "wan_i2v"})  # tiny keeps a context frame


def test_tiny_wan_i2v_trains_every_stage_and_evaluates(tmp_path):
    # the path the notebooks call (00 -> 03, then 06) with Wan I2V conditioning on the tiny preset: every model
    # call gets the clip's condition (teacher, ODE pairs, block-causal student, rollouts, critic, D, evaluation)
    import math

    from aad1lib.eval.evaluate import evaluate_runs
    from aad1lib.ode_pairs import ODEPairsDataset
    from aad1lib.train.stage1 import train_stage1
    from aad1lib.train.stage2 import train_stage2
    from aad1lib.train.stage3 import train_stage3
    from aad1lib.train.teacher import train_teacher

    fast = {"train.tracker": "none", "train.sample_every": 2, "teacher.steps": 2, "stage1.steps": 2,
            "stage1.ode_pairs": 4, "stage1.ode_steps": 4, "stage1.shard_size": 4, "stage2.steps": 2,
            "stage2.critic_steps": 1, "stage2.eval_every": 1, "stage3.steps": 2, "train.checkpoint_every": 2,
            "model.i2v": "wan_i2v", "chunking.context_frames": 0, "data.num_frames": 8}  # fmt: skip
    cfg = load_preset("tiny", fast)
    teacher = train_teacher(cfg, run_name="i2v", runs_root=tmp_path)
    s1 = train_stage1(cfg, teacher.run, run_name="i2v", runs_root=tmp_path)
    pair = ODEPairsDataset(s1.run.path / "ode_pairs")[0]
    assert pair["condition"].shape == (4, 8, 16, 16)  # stored with the trajectory: the student regresses under it
    s2 = train_stage2(cfg, s1.run, run_name="i2v", runs_root=tmp_path)
    s3 = train_stage3(cfg, s2.run, run_name="i2v", runs_root=tmp_path)
    for result in (teacher, s1, s2, s3):
        assert result.model.config.in_channels == 7 and result.model.config.out_channels == 3
        assert all(math.isfinite(v) for m in result.run.read_metrics() for v in m.values())
    results = evaluate_runs(cfg, [str(r.run.path) for r in (teacher, s1, s2, s3)], num_clips=2, long_video_factor=2,
                            runs_root=tmp_path)  # fmt: skip
    assert all(math.isfinite(v) for summary in results.values() for v in summary["metrics"].values())
