"""Drift (Rolling Forcing, Liu et al. 2025): how much imaging quality changes over a long rollout.

Drift = |IQ(first segment) - IQ(last segment)| with IQ the mean per-frame quality of a segment; lower
is better. We also return the per-segment IQ curve, which shows WHERE quality goes (a steady decay vs a
late collapse). Rolling Forcing compares the first and last seconds of minute-long videos with MUSIQ;
here the segments are a configurable count or length and the scorer is whatever QualityScorer is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .backbones import QualityScorer, video_frames


@dataclass
class DriftResult:
    name: str  # display name, e.g. "Drift (SharpNoise)"
    drift: float  # mean over videos of |IQ(first segment) - IQ(last segment)|
    curve: list[float]  # IQ per segment, averaged over videos
    bounds: list[tuple[int, int]]  # [start, end) frames of each segment
    per_video: list[float]  # each video's drift


def segment_bounds(num_frames: int, num_segments: int | None = None, segment_frames: int | None = None):
    """[start, end) of each segment: ``num_segments`` near-equal ones, or runs of ``segment_frames``.

    With ``segment_frames`` a remainder shorter than one segment joins the last segment, so the last
    segment always ends at the final frame.
    """
    if (num_segments is None) == (segment_frames is None):
        raise ValueError("give exactly one of num_segments or segment_frames")
    if segment_frames is not None:
        num_segments = max(1, num_frames // segment_frames)
        starts = [i * segment_frames for i in range(num_segments)]
    else:
        if not 1 <= num_segments <= num_frames:
            raise ValueError(f"num_segments must be in [1, {num_frames}], got {num_segments}")
        starts = [int(s) for s in np.linspace(0, num_frames, num_segments + 1)[:-1].round()]
    return list(zip(starts, starts[1:] + [num_frames], strict=True))


def drift(
    long_videos: torch.Tensor,
    quality: QualityScorer,
    num_segments: int | None = None,
    segment_frames: int | None = None,
) -> DriftResult:
    """Drift and the per-segment IQ curve of long rollouts [B, 3, F, H, W] (or one clip [3, F, H, W])."""
    if long_videos.ndim == 4:
        long_videos = long_videos[None]
    bounds = segment_bounds(long_videos.shape[2], num_segments, segment_frames)
    curves = []  # [B, S]
    for video in long_videos:
        scores = quality(video_frames(video)).double()  # [F]
        curves.append([float(scores[start:end].mean()) for start, end in bounds])
    curves = np.asarray(curves)
    per_video = np.abs(curves[:, 0] - curves[:, -1])
    return DriftResult(
        name=f"Drift ({quality.name})",
        drift=float(per_video.mean()),
        curve=curves.mean(0).tolist(),
        bounds=bounds,
        per_video=per_video.tolist(),
    )
