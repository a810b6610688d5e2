"""Backbone roles for the metrics: one small protocol per role, each carrying a ``name`` for table headers.

Frames everywhere are float ``[N, 3, H, W]`` in [-1, 1] (RGB), the library's video convention. The
offline defaults live in :mod:`.offline`, the published networks (DINO, CLIP, RAFT, MUSIQ, DreamSim)
in :mod:`.cluster`. A metric's display name always includes the backbone's ``name``, so a proxy is
never mistaken for the published number.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from einops import rearrange

from ...data.video_io import to_uint8_frames


@runtime_checkable
class FeatureExtractor(Protocol):
    """frames [N, 3, H, W] in [-1, 1] -> features [N, D] (the metrics L2-normalise them)."""

    name: str

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FlowEstimator(Protocol):
    """(frame_a, frame_b), each [3, H, W] in [-1, 1] -> flow [2, H, W] in pixels (dx, dy), a -> b."""

    name: str

    def __call__(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class QualityScorer(Protocol):
    """frames [N, 3, H, W] in [-1, 1] -> per-frame quality [N] in [0, 1] (higher is better)."""

    name: str

    def __call__(self, frames: torch.Tensor) -> torch.Tensor: ...


def to_uint8_images(frames: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3] (values outside [-1, 1] clipped)."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames [N, 3, H, W], got shape {tuple(frames.shape)}")
    return to_uint8_frames(rearrange(frames, "n c h w -> c n h w"))


def to_unit_images(frames: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> float64 [N, H, W, 3] in [0, 1] (no quantisation, for quality proxies)."""
    images = frames.detach().double().cpu().clamp(-1.0, 1.0).add(1.0).mul(0.5)
    return np.ascontiguousarray(rearrange(images, "n c h w -> n h w c").numpy())


def video_frames(video: torch.Tensor) -> torch.Tensor:
    """One clip [3, F, H, W] -> its frames [F, 3, H, W]."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video [3, F, H, W], got shape {tuple(video.shape)}")
    return rearrange(video, "c f h w -> f c h w")
