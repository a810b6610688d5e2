"""Shared tiny configs: every test runs on CPU in seconds, with no download."""

import pytest
import torch

# docs/design.md §4: a 1.2M-parameter Wan that builds offline; pixel space, 16 tokens per 16×16 frame.
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


# ---- stand-ins of the Wan presets' inputs (tests/standins.py): built once per session ------------------------
@pytest.fixture(scope="session")
def wan_standin(tmp_path_factory):
    """A tiny random ``Wan2.1-T2V-1.3B-Diffusers`` folder written by diffusers' WanPipeline.save_pretrained."""
    from standins import write_wan_t2v_standin

    return write_wan_t2v_standin(tmp_path_factory.mktemp("wan2.1-t2v-standin"))


@pytest.fixture(scope="session")
def wan_video_folder(tmp_path_factory):
    """(folder, captions_csv): 8 panning mp4 clips of 9 frames at 32×32, 16 fps, and their file,caption CSV."""
    from standins import write_video_folder

    return write_video_folder(tmp_path_factory.mktemp("videos"), num_files=8, frames=9, height=32, width=32, fps=16)


@pytest.fixture(scope="session")
def wan_preset(tmp_path_factory, wan_standin, wan_video_folder):
    """Path of a wan2.1-1.3b-shaped preset (fsdp2, bf16, gradient checkpointing) on the two stand-ins."""
    from standins import write_wan_preset

    return write_wan_preset(tmp_path_factory.mktemp("presets") / "wan-standin.yaml", wan_standin, *wan_video_folder)
