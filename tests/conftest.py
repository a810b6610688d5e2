"""Shared tiny configs: every test runs on CPU in seconds, with no download."""

import pytest
import torch

# DESIGN.md §4: a 1.2M-parameter Wan that builds offline; pixel space, 16 tokens per 16×16 frame.
TINY_WAN = dict(
    patch_size=(1, 4, 4),
    num_attention_heads=2,
    attention_head_dim=16,
    in_channels=3,
    out_channels=3,
    text_dim=32,
    freq_dim=32,
    ffn_dim=64,
    num_layers=4,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def tiny_wan_config():
    return dict(TINY_WAN)
