"""VBench / VBench-I2V scoring rules (Huang et al. 2024, github.com/Vchitect/VBench), backbone-agnostic.

Each function takes what the backbone produced (features, flows, per-frame scores) for ONE video and
returns that video's score; :mod:`.suite` runs the backbones and averages over videos. Read against
VBench's ``vbench/{subject,background}_consistency.py``, ``vbench/dynamic_degree.py``,
``vbench/core/imaging_quality.py`` and ``vbench2_beta_i2v/i2v_{subject,background}.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# vbench2_beta_i2v/i2v_{subject,background}.py: video = 0.4 max(conformity) + 0.3 mean(consec) + 0.3 min(consec).
# (An early i2v_subject.py used 0.5 / 0.5 / 0.0; the current one and i2v_background use these.)
I2V_WEIGHTS = (0.4, 0.3, 0.3)


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """max(0, cos) of L2-normalised features, as every VBench consistency metric does. [..., D] x [..., D] -> [...]."""
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(-1).clamp_min(0.0)


def temporal_consistency(features: torch.Tensor) -> float:
    """Subject / Background Consistency of one video from per-frame features [F, D].

    mean over i >= 1 of ½[sim(f_{i-1}, f_i) + sim(f_0, f_i)]; a single frame scores 1.0 (VBench's
    ``n_pairs == 0`` case). VBench's dimension score pools frames over all videos (sum / count), which
    equals the mean over videos when all clips have the same length, as ours do.
    """
    if features.shape[0] < 2:
        return 1.0
    to_previous = similarity(features[:-1], features[1:])
    to_first = similarity(features[:1], features[1:])
    return float(((to_previous + to_first) / 2).mean())


def i2v_consistency(image_features: torch.Tensor, features: torch.Tensor, weights=I2V_WEIGHTS) -> float:
    """I2V Subject / I2V Background of one video: input-image features [D], frame features [F, D] (F >= 2).

    VBench-I2V: 0.4 max_i sim(img, f_i) + 0.3 mean_i sim(f_{i-1}, f_i) + 0.3 min_i sim(f_{i-1}, f_i);
    the conformity term runs over ALL frames including f_0, the consecutive terms over i >= 1.
    """
    if features.shape[0] < 2:
        raise ValueError("I2V consistency needs at least 2 frames")
    conformity = similarity(image_features[None], features)
    consecutive = similarity(features[:-1], features[1:])
    w_max, w_mean, w_min = weights
    return float(w_max * conformity.max() + w_mean * consecutive.mean() + w_min * consecutive.min())


def top_flow_magnitude(flow: torch.Tensor, fraction: float = 0.05) -> float:
    """Mean of the largest 5 % flow magnitudes of one pair, flow [2, H, W] in px (VBench ``get_score``).

    VBench takes ``int(H * W * 0.05)`` pixels; we keep at least one so frames under 20 px stay defined.
    """
    magnitude = flow.float().norm(dim=0).flatten()
    k = max(1, int(magnitude.numel() * fraction))
    return float(magnitude.topk(k).values.mean())


def dynamic_frame_indices(num_frames: int, fps: float | None = None) -> list[int]:
    """Frames VBench's Dynamic Degree looks at: every ``round(fps / 8)``-th (it resamples video to ~8 fps).

    ``fps=None`` means the frames are already at VBench's sampling rate: all are used.
    """
    interval = 1 if fps is None else max(1, round(fps / 8))
    return list(range(0, num_frames, interval))


def dynamic_params(height: int, width: int, num_frames: int, fps: float | None = None) -> tuple[float, int]:
    """(threshold px, required count) of VBench ``DynamicDegree.set_params``.

    threshold = max(1, 8 / fps) * 6 * min(H, W) / 256  (6 px at 256 px, scaled with resolution);
    count = round(4 * num_frames / 16) with ``num_frames`` the frames kept after resampling (not pairs)
    and Python's round-half-to-even, exactly as VBench: 9 frames -> 2, 16 -> 4, 33 -> 8, 10 -> 2.
    """
    factor = 1.0 if fps is None else max(1.0, 8.0 / fps)
    return factor * 6.0 * min(height, width) / 256.0, round(4 * (num_frames / 16.0))


def is_dynamic(pair_scores: list[float], threshold: float, count: int) -> bool:
    """VBench ``check_move``: dynamic iff at least ``count`` pairs score strictly above ``threshold``.

    Like VBench's loop, a video with no pairs is static and ``count == 0`` makes any pair dynamic.
    """
    return len(pair_scores) > 0 and sum(score > threshold for score in pair_scores) >= count
