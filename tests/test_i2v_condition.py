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
