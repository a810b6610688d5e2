"""Scoring clips: the metric suite (published backbones where given, else offline stand-ins), the clips'
ground-truth motion, and every metric plus the motion ratio per clip and on average."""

from __future__ import annotations

import numpy as np
import torch

from ..config import ExperimentConfig
from .metrics import MetricSuite, OpenCVFlow
from .metrics.cluster import load_aesthetic, load_clip, load_dino, load_dreamsim, load_musiq, load_raft
from .metrics.motion import mean_flow_magnitude, motion_ratio
from .sample_motion import stated_speed_px


def make_suite(
    flow: str = "DIS",
    dino_dir: str | None = None,
    clip_dir: str | None = None,
    raft_path: str | None = None,
    musiq_path: str | None = None,
    dreamsim_dir: str | None = None,
    fps: float | None = None,
    device: str = "cpu",
    grid_period: int | None = None,
    aesthetic_clip_dir: str | None = None,
    aesthetic_head_path: str | None = None,
) -> MetricSuite:
    """A MetricSuite whose roles use the published backbone where a local path is given, else the offline one.

    ``flow``: "DIS" | "Farneback" (OpenCV) | "RAFT" (needs ``raft_path``). Aesthetic Quality needs both
    ``aesthetic_clip_dir`` (CLIP ViT-L/14) and ``aesthetic_head_path`` (the LAION head), or neither.
    """
    if flow == "RAFT" and raft_path is None:
        raise ValueError("flow='RAFT' needs raft_path (local RAFT weights)")
    if raft_path is not None:
        flow_estimator = load_raft(raft_path, device=device)
    elif flow in ("DIS", "Farneback"):
        flow_estimator = OpenCVFlow(flow)
    else:
        raise ValueError(f"flow must be 'DIS', 'Farneback' or 'RAFT', got {flow!r}")
    if (aesthetic_clip_dir is None) != (aesthetic_head_path is None):
        raise ValueError("Aesthetic Quality needs both aesthetic_clip_dir (CLIP ViT-L/14) and aesthetic_head_path "
                         "(LAION head weights), or neither (offline stand-in)")  # fmt: skip
    aesthetic = load_aesthetic(aesthetic_clip_dir, aesthetic_head_path, device=device) if aesthetic_clip_dir else None
    return MetricSuite(
        subject=load_dino(dino_dir, device=device) if dino_dir else None,
        background=load_clip(clip_dir, device=device) if clip_dir else None,
        flow=flow_estimator,
        quality=load_musiq(musiq_path, device=device) if musiq_path else None,
        i2v_background=load_dreamsim(dreamsim_dir, device=device) if dreamsim_dir else None,
        fps=fps,
        grid_period=grid_period,
        aesthetic=aesthetic,
    )


def patch_grid_pixels(cfg: ExperimentConfig) -> int:
    """Pixels per generator patch along a side (patch size × the codec's spatial factor): the grid that
    λ-too-large artefacts line up with."""
    return int(cfg.model.patch_size[-1]) * cfg.spatial_factor


def suite_backbones(suite: MetricSuite) -> dict[str, str]:
    roles = ("subject", "background", "flow", "quality", "aesthetic", "i2v_subject", "i2v_background")
    return {role: getattr(suite, role).name for role in roles}


def ground_truth_motion(batch: dict, suite: MetricSuite) -> tuple[list[float], str]:
    """Per-clip true motion in px/frame: the synthetic set's stated motion, else the data clip's measured flow."""
    speeds = stated_speed_px(batch["motion"])
    if speeds is not None:
        return speeds, "synthetic ground truth (mean_speed_px)"
    return [mean_flow_magnitude(v, suite.flow) for v in batch["video"]], f"data clip flow ({suite.flow.name})"


def score_clips(suite: MetricSuite, videos: torch.Tensor, images: torch.Tensor, gt_motion: list[float]):
    """(means, per-clip lists) of every suite metric and the motion ratio for pixel clips [B, 3, F, H, W]."""
    per_clip = suite.evaluate(videos, images, per_video=True)
    means = {name: float(np.mean(values)) for name, values in per_clip.items()}
    moved = per_clip[f"Motion px/frame ({suite.flow.name})"]
    ratio_name = f"Motion Ratio ({suite.flow.name})"
    means[ratio_name], per_clip[ratio_name] = motion_ratio(moved, gt_motion)
    return means, per_clip
