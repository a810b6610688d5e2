"""Do samples move like the data? Mean optical-flow magnitude (OpenCV) of generated vs real clips."""

from __future__ import annotations

import numpy as np
import torch

from .metrics.motion import mean_flow_magnitude
from .metrics.offline import OpenCVFlow


def stated_speed_px(motions: list[dict]) -> list[float] | None:
    """Per-clip stated mean motion (px/frame) from a batch's ``motion`` dicts, or None when the data has
    no motion ground truth (``real_clips``, ``video_folder``: empty dicts) for every clip."""
    speeds = [m.get("mean_speed_px") for m in motions]
    if not speeds or any(s is None for s in speeds):
        return None
    return [float(s) for s in speeds]


def motion_comparison(generated: torch.Tensor, data: torch.Tensor, gt_speed_px: list[float] | None = None) -> dict:
    """``generated`` and ``data``: ``[B, 3, F, H, W]`` in [-1, 1] for the same first frames/prompts.

    Both are measured with the same offline flow estimator, so the ratio is fair at any resolution;
    ``gt_speed_px`` (the synthetic set's stated mean motion, see :func:`stated_speed_px`) is reported
    alongside when given; without it (data with no motion ground truth) the key is absent.
    """
    flow = OpenCVFlow()
    gen = [mean_flow_magnitude(v, flow) for v in generated.float().cpu()]
    ref = [mean_flow_magnitude(v, flow) for v in data.float().cpu()]
    out = {
        "flow_px_generated": float(np.mean(gen)),
        "flow_px_data": float(np.mean(ref)),
        "flow_ratio_generated_to_data": float(np.mean(gen) / max(np.mean(ref), 1e-8)),
        "per_clip_generated": gen,
        "per_clip_data": ref,
    }
    if gt_speed_px is not None:
        out["gt_speed_px"] = float(np.mean(gt_speed_px))
    return out
