"""VBench / VBench-I2V scoring rules (Huang et al. 2024, github.com/Vchitect/VBench), backbone-agnostic.

Each function takes what the backbone produced (features, flows, per-frame scores) for ONE video and
returns that video's score; :mod:`.suite` runs the backbones and averages over videos. Read against
VBench (github.com/Vchitect/VBench at 45e79ec, ``vbench==0.1.5``): ``vbench/{subject,background}_consistency.py``,
``vbench/dynamic_degree.py``, ``vbench/imaging_quality.py``, ``vbench/aesthetic_quality.py`` and
``vbench2_beta_i2v/i2v_{subject,background}.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# vbench2_beta_i2v/i2v_{subject,background}.py: video = 0.4 max(conformity) + 0.3 mean(consec) + 0.3 min(consec).
# (Both files used 0.5 / 0.5 / 0.0 in the first VBench-I2V beta, 409bd3e; 0.4 / 0.3 / 0.3 since e7f070a, 2024-07.)
I2V_WEIGHTS = (0.4, 0.3, 0.3)


def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """max(0, cos) of L2-normalised features, as every VBench consistency metric does. [..., D] x [..., D] -> [...]."""
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(-1).clamp_min(0.0)


def temporal_consistency(features: torch.Tensor) -> float:
    """Subject / Background Consistency of one video from per-frame features [F, D].

    mean over i >= 1 of ½[sim(f_{i-1}, f_i) + sim(f_0, f_i)]. A single frame scores 1.0 (nothing changed;
    VBench divides by ``len(frames) - 1`` and fails there). VBench's dimension score pools frames over all
    videos (sum / count), which equals the mean over videos when all clips have the same length, as ours do.
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
    """Frames VBench's Dynamic Degree looks at: every ``max(1, round(fps / 8))``-th, i.e. ~8 fps
    (``DynamicDegree.get_frames``; its ``max(1, ...)`` guard for fps < 4, lost in fc4620b, is back since f9d345a).

    ``fps=None`` means the frames are already at VBench's sampling rate: all are used.
    """
    interval = 1 if fps is None else max(1, round(fps / 8))
    return list(range(0, num_frames, interval))


def dynamic_params(height: int, width: int, num_frames: int) -> tuple[float, int]:
    """(threshold px, required count) of VBench ``DynamicDegree.set_params`` (``vbench/dynamic_degree.py``).

    threshold = 6 * min(H, W) / 256 (6 px at 256 px, scaled with resolution), whatever the frame rate: the
    ``max(1, 8 / fps)`` factor VBench added in 11abda9 (2024-07-03) was removed again in fc4620b (2024-07-13).
    count = round(4 * num_frames / 16) with ``num_frames`` the frames kept after resampling (not pairs)
    and Python's round-half-to-even, exactly as VBench: 9 frames -> 2, 16 -> 4, 33 -> 8, 10 -> 2.
    """
    return 6.0 * min(height, width) / 256.0, round(4 * (num_frames / 16.0))


def is_dynamic(pair_scores: list[float], threshold: float, count: int) -> bool:
    """VBench ``check_move``: dynamic iff at least ``count`` pairs score strictly above ``threshold``.

    Like VBench's loop, a video with no pairs is static and ``count == 0`` makes any pair dynamic.
    """
    return len(pair_scores) > 0 and sum(score > threshold for score in pair_scores) >= count


def aesthetic_scores(image_embeds: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Per-frame Aesthetic Quality (VBench ``laion_aesthetic``): the LAION aesthetic predictor, a linear layer
    (768 -> 1 for CLIP ViT-L/14) on the L2-normalised CLIP image embeddings, divided by 10.

    image_embeds [F, D] (``clip.encode_image`` / ``image_embeds``), weight [1, D], bias [1] -> [F].
    """
    feats = F.normalize(image_embeds.float(), dim=-1, p=2)
    return F.linear(feats, weight.float(), bias.float()).squeeze(-1) / 10.0


def aesthetic_quality(image_embeds: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    """Aesthetic Quality of one video: the mean of :func:`aesthetic_scores` over its frames (VBench's
    dimension score is then the mean over videos)."""
    return float(aesthetic_scores(image_embeds, weight, bias).double().mean())
