"""MetricSuite: run the VBench-I2V-style metrics, the motion ratio and Drift with pluggable backbones.

    suite = MetricSuite()                  # offline: HOG, ColorHist, DIS, SharpNoise, ColorContrast
    suite = MetricSuite.published(dino_dir, clip_dir, raft_path, musiq_path, dreamsim_dir,
                                  aesthetic_clip_dir, aesthetic_head_path)  # cluster
    scores = suite.evaluate(videos, images, gt_motion)      # {"Subject Cons. (HOG)": 0.97, ...}
    result = suite.drift(long_videos, num_segments=4)       # DriftResult(drift, curve, ...)

Every display name carries its backbone's name, so an offline proxy never passes for VBench's number.
"""

from __future__ import annotations

import numpy as np
import torch

from . import vbench
from .backbones import FeatureExtractor, FlowEstimator, QualityScorer, video_frames
from .cluster import load_aesthetic, load_clip, load_dino, load_dreamsim, load_musiq, load_raft
from .drift import DriftResult, drift
from .grid import blockiness
from .motion import clip_flows, flow_magnitude, motion_ratio
from .offline import ColorContrastAesthetic, ColorHistFeatures, HOGFeatures, OpenCVFlow, SharpNoiseQuality


class MetricSuite:
    """Backbones per role; the I2V roles default to the subject / background extractors.

    ``fps``: the clips' frame rate for Dynamic Degree's VBench resampling (None = use every frame).
    """

    def __init__(
        self,
        subject: FeatureExtractor | None = None,  # VBench: DINO ViT-B/16
        background: FeatureExtractor | None = None,  # VBench: CLIP ViT-B/32
        flow: FlowEstimator | None = None,  # VBench: RAFT
        quality: QualityScorer | None = None,  # VBench: MUSIQ (SPAQ)
        i2v_subject: FeatureExtractor | None = None,  # VBench-I2V: DINO ViT-B/16
        i2v_background: FeatureExtractor | None = None,  # VBench-I2V: DreamSim
        fps: float | None = None,
        grid_period: int | None = None,  # pixels per generator patch: adds the grid-artefact score (grid.py)
        aesthetic: QualityScorer | None = None,  # VBench: CLIP ViT-L/14 + LAION aesthetic head, / 10
    ):
        self.subject = subject or HOGFeatures()
        self.background = background or ColorHistFeatures()
        self.flow = flow or OpenCVFlow("DIS")
        self.quality = quality or SharpNoiseQuality()
        self.i2v_subject = i2v_subject or self.subject
        self.i2v_background = i2v_background or self.background
        self.fps = fps
        self.grid_period = grid_period
        self.aesthetic = aesthetic or ColorContrastAesthetic()

    @classmethod
    def published(
        cls, dino_dir, clip_dir, raft_path, musiq_path, dreamsim_dir, aesthetic_clip_dir, aesthetic_head_path,
        device="cpu", fps=None, grid_period=None,
    ):  # fmt: skip
        """The published VBench-I2V backbones from local files (see :mod:`.cluster`); Aesthetic Quality reads a
        CLIP ViT-L/14 folder and the LAION head's weights file."""
        return cls(
            subject=load_dino(dino_dir, device=device),
            background=load_clip(clip_dir, device=device),
            flow=load_raft(raft_path, device=device),
            quality=load_musiq(musiq_path, device=device),
            i2v_background=load_dreamsim(dreamsim_dir, device=device),
            fps=fps,
            grid_period=grid_period,
            aesthetic=load_aesthetic(aesthetic_clip_dir, aesthetic_head_path, device=device),
        )

    def names(self, with_images: bool = True, with_gt_motion: bool = True) -> list[str]:
        """Display names of :meth:`evaluate`'s results, in order (for table headers)."""
        names = [
            f"Subject Cons. ({self.subject.name})",
            f"Background Cons. ({self.background.name})",
            f"Dynamic Degree ({self.flow.name})",
            f"Imaging Quality ({self.quality.name})",
            f"Aesthetic Quality ({self.aesthetic.name})",
            f"Motion px/frame ({self.flow.name})",
        ]
        if self.grid_period:
            names.append(f"Grid Artefacts (blockiness /{self.grid_period}px)")
        if with_images:
            names += [f"I2V Subject ({self.i2v_subject.name})", f"I2V Background ({self.i2v_background.name})"]
        if with_gt_motion:
            names.append(f"Motion Ratio ({self.flow.name})")
        return names

    def _features(self, extractor, frames, image, cache):
        """Features of [image?, frames...] once per extractor object, split into (image [D] | None, frames [F, D])."""
        if id(extractor) not in cache:
            stack = frames if image is None else torch.cat([image[None], frames])
            feats = extractor(stack)
            cache[id(extractor)] = (None, feats) if image is None else (feats[0], feats[1:])
        return cache[id(extractor)]

    def evaluate_video(self, video: torch.Tensor, image: torch.Tensor | None = None) -> dict[str, float]:
        """Every per-video score of one clip [3, F, H, W] (input image [3, H, W] optional); no motion ratio."""
        frames = video_frames(video)  # [F, 3, H, W]
        num_frames, _, height, width = frames.shape
        cache: dict = {}
        with_images = image is not None
        names = iter(self.names(with_images=with_images, with_gt_motion=False))
        scores = {}

        # 1. Subject / Background Consistency (VBench)
        scores[next(names)] = vbench.temporal_consistency(self._features(self.subject, frames, image, cache)[1])
        scores[next(names)] = vbench.temporal_consistency(self._features(self.background, frames, image, cache)[1])

        # 2. Dynamic Degree on VBench's ~8 fps resampling; the mean flow magnitude uses every pair
        flows = clip_flows(video, self.flow)  # [F - 1, 2, H, W]
        keep = vbench.dynamic_frame_indices(num_frames, self.fps)
        kept_flows = flows if len(keep) == num_frames else clip_flows(video[:, keep], self.flow)
        threshold, count = vbench.dynamic_params(height, width, len(keep))  # no fps factor (VBench)
        pair_scores = [vbench.top_flow_magnitude(f) for f in kept_flows]
        scores[next(names)] = float(vbench.is_dynamic(pair_scores, threshold, count))

        # 3. Imaging / Aesthetic Quality: per-frame mean (VBench averages frames, then videos)
        scores[next(names)] = float(self.quality(frames).double().mean())
        scores[next(names)] = float(self.aesthetic(frames).double().mean())
        scores[next(names)] = flow_magnitude(flows)
        if self.grid_period:  # the paper's λ = 50 failure mode: edges on the patch grid
            scores[next(names)] = blockiness(frames, self.grid_period)

        # 4. I2V Subject / Background (VBench-I2V)
        if with_images:
            for extractor in (self.i2v_subject, self.i2v_background):
                image_feats, frame_feats = self._features(extractor, frames, image, cache)
                scores[next(names)] = vbench.i2v_consistency(image_feats, frame_feats)
        return scores

    def evaluate(
        self,
        videos: torch.Tensor,
        images: torch.Tensor | None = None,
        gt_motion: list[float] | None = None,
        per_video: bool = False,
    ) -> dict[str, float] | dict[str, list[float]]:
        """Scores of videos [B, 3, F, H, W] given input images [B, 3, H, W] and true motion (px / frame).

        Returns {display name: mean over videos}, or with ``per_video`` {display name: [B scores]}.
        Without ``images`` the I2V metrics are skipped, without ``gt_motion`` the motion ratio.
        """
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise ValueError(f"expected videos [B, 3, F, H, W], got shape {tuple(videos.shape)}")
        if images is not None and images.shape[0] != videos.shape[0]:
            raise ValueError(f"{videos.shape[0]} videos but {images.shape[0]} images")
        rows = [self.evaluate_video(v, None if images is None else images[b]) for b, v in enumerate(videos)]
        table = {name: [row[name] for row in rows] for name in rows[0]}
        summary = {name: float(np.mean(values)) for name, values in table.items()}
        if gt_motion is not None:
            name = f"Motion Ratio ({self.flow.name})"
            summary[name], table[name] = motion_ratio(table[f"Motion px/frame ({self.flow.name})"], list(gt_motion))
        return table if per_video else summary

    def drift(
        self, long_videos: torch.Tensor, num_segments: int | None = None, segment_frames: int | None = None
    ) -> DriftResult:
        """Drift of long rollouts [B, 3, F, H, W] with this suite's quality scorer (see :func:`.drift.drift`)."""
        return drift(long_videos, self.quality, num_segments=num_segments, segment_frames=segment_frames)
