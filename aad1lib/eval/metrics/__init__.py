"""VBench-I2V-style metrics, Drift and the motion ratio, with pluggable (offline or published) backbones.

Offline defaults (no download): HOG (subject), ColorHist (background), OpenCV DIS flow, SharpNoise IQ,
ColorContrast (aesthetic). Published backbones from local files: DINO / CLIP (transformers), RAFT, MUSIQ, DreamSim,
CLIP ViT-L/14 + the LAION aesthetic head (:mod:`.cluster`).
"""

from .backbones import FeatureExtractor, FlowEstimator, QualityScorer, to_uint8_images, video_frames
from .cluster import (
    DreamSimFeatures,
    LAIONAesthetic,
    MUSIQQuality,
    RAFTFlow,
    TransformersFeatures,
    load_aesthetic,
    load_clip,
    load_dino,
    load_dreamsim,
    load_musiq,
    load_raft,
)
from .drift import DriftResult, drift, segment_bounds
from .grid import blockiness, video_blockiness
from .motion import clip_flows, mean_flow_magnitude, motion_ratio
from .offline import ColorContrastAesthetic, ColorHistFeatures, HOGFeatures, OpenCVFlow, SharpNoiseQuality
from .suite import MetricSuite
from .vbench import (
    aesthetic_quality,
    aesthetic_scores,
    dynamic_params,
    i2v_consistency,
    is_dynamic,
    similarity,
    temporal_consistency,
    top_flow_magnitude,
)

__all__ = [
    "ColorContrastAesthetic", "ColorHistFeatures", "DreamSimFeatures", "DriftResult", "FeatureExtractor",
    "FlowEstimator", "HOGFeatures", "LAIONAesthetic", "MUSIQQuality", "MetricSuite", "OpenCVFlow", "QualityScorer",
    "RAFTFlow", "SharpNoiseQuality", "TransformersFeatures", "aesthetic_quality", "aesthetic_scores", "blockiness",
    "clip_flows", "drift", "dynamic_params", "i2v_consistency", "is_dynamic", "load_aesthetic", "load_clip",
    "load_dino", "load_dreamsim", "load_musiq", "load_raft", "mean_flow_magnitude", "motion_ratio",
    "segment_bounds", "similarity", "temporal_consistency", "to_uint8_images", "top_flow_magnitude",
    "video_blockiness", "video_frames",
]  # fmt: skip
