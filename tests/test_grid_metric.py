"""The grid-artefact score (blockiness at the patch period) separates a patch grid from natural content."""

import numpy as np
import pytest
import torch

from aad1lib.data.assets import load_background
from aad1lib.eval.metrics import MetricSuite, blockiness


def _photo(size=32) -> torch.Tensor:
    """A real photograph, area-downsampled to size×size, [3, H, W] in [0, 1]."""
    image = torch.tensor(np.array(load_background("astronaut")), dtype=torch.float32).permute(2, 0, 1) / 255
    return torch.nn.functional.interpolate(image[None], size=(size, size), mode="area")[0]


def test_natural_image_scores_about_one_and_a_patch_grid_scores_higher():
    photo = _photo()
    frames = photo[None].repeat(3, 1, 1, 1)
    natural = blockiness(frames, period=4)
    assert 0.7 < natural < 1.3
    # per-patch offsets (what a generator with visible 4x4 patches adds)
    offsets = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)).repeat_interleave(4, -1)
    gridded = frames + 0.3 * offsets.repeat_interleave(4, -2)
    assert blockiness(gridded, period=4) > 2.0 * natural


def test_grid_of_another_period_is_not_counted():
    blocks = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    frames = blocks.repeat_interleave(4, -1).repeat_interleave(4, -2)  # pure 4-px blocks
    assert blockiness(frames, period=4) > 10.0
    assert blockiness(frames, period=3) < 2.0


def test_suite_reports_grid_artefacts_only_with_a_period():
    video = torch.rand(3, 5, 32, 32) * 2 - 1
    assert not any("Grid" in name for name in MetricSuite().names())
    scores = MetricSuite(grid_period=4).evaluate(video[None])
    assert scores["Grid Artefacts (blockiness /4px)"] == pytest.approx(blockiness(video.transpose(0, 1), 4))


def test_bad_period_or_shape_is_rejected():
    with pytest.raises(ValueError, match="period >= 2"):
        blockiness(torch.rand(1, 3, 8, 8), period=1)
    with pytest.raises(ValueError, match="no patch boundary"):
        blockiness(torch.rand(1, 3, 4, 4), period=8)
