"""Motion amount: mean optical-flow magnitude and the motion ratio against ground truth (ours, not VBench).

Dynamic Degree only says whether a clip moves more than a threshold; a generator that moves half as
much as the data (or not at all: motion collapse) can still score 1. The motion ratio compares the
AMOUNT: mean flow magnitude of the generated clip / the ground-truth clip's mean motion, both in px per
frame at the clip's resolution. 1.0 = the right amount, 0 = frozen, > 1 = too much.
"""

from __future__ import annotations

import torch

from .backbones import FlowEstimator, video_frames


def clip_flows(video: torch.Tensor, flow: FlowEstimator) -> torch.Tensor:
    """Flow of every consecutive pair of one clip [3, F, H, W] -> [F - 1, 2, H, W] (px, frame i -> i + 1)."""
    frames = video_frames(video)
    if frames.shape[0] < 2:
        raise ValueError("motion needs at least 2 frames")
    return torch.stack([flow(frames[i], frames[i + 1]) for i in range(frames.shape[0] - 1)])


def flow_magnitude(flows: torch.Tensor) -> float:
    """Mean per-pixel flow magnitude of flows [P, 2, H, W], in px per frame."""
    return float(flows.float().norm(dim=1).mean())


def mean_flow_magnitude(video: torch.Tensor, flow: FlowEstimator) -> float:
    """Mean optical-flow magnitude (px / frame) of one clip [3, F, H, W], over all pixels and pairs."""
    return flow_magnitude(clip_flows(video, flow))


def motion_ratio(generated: list[float], gt_motion: list[float], eps: float = 1e-8) -> tuple[float, list[float]]:
    """(ratio of the means over clips, per-clip ratios) of generated / ground-truth motion in px / frame.

    The aggregate is mean(generated) / mean(gt), not a mean of per-clip ratios, so a clip whose true
    motion is near zero cannot dominate it.
    """
    if len(generated) != len(gt_motion):
        raise ValueError(f"{len(generated)} generated clips but {len(gt_motion)} ground-truth motions")
    per_clip = [g / max(t, eps) for g, t in zip(generated, gt_motion, strict=True)]
    total = sum(generated) / max(sum(gt_motion), eps)
    return total, per_clip
