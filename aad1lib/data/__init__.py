"""Data for AAD-1 on CPU: procedural I2V clips with known motion, real clips, and mp4 folders.

A sample is {"video": float32 [3, F, H, W] in [-1, 1], "first_frame": [3, H, W] (== video[:, 0]),
"prompt": str, "motion": dict of ground-truth motion (empty for real clips), "source": str}.
"""

from aad1lib.data.assets import TEST_BACKGROUNDS, TRAIN_BACKGROUNDS, load_background, split_backgrounds
from aad1lib.data.motion import ClipMotion, SpriteMotion, caption, direction_word, motion_dict, sample_motion
from aad1lib.data.real_clips import RealClipsDataset, real_clip_paths
from aad1lib.data.strips import clip_strip, plot_strips
from aad1lib.data.synthetic import SyntheticI2VDataset, render_clip
from aad1lib.data.video_folder import VideoFolderDataset, read_captions
from aad1lib.data.video_io import (
    VideoDecodeError,
    center_crop_resize,
    from_uint8_frames,
    read_clip,
    read_frames,
    read_mp4,
    to_uint8_frames,
    write_mp4,
)

__all__ = [
    "TEST_BACKGROUNDS", "TRAIN_BACKGROUNDS", "ClipMotion", "RealClipsDataset", "SpriteMotion",
    "SyntheticI2VDataset", "VideoDecodeError", "VideoFolderDataset", "caption", "center_crop_resize",
    "clip_strip", "direction_word", "from_uint8_frames", "load_background", "motion_dict", "plot_strips",
    "read_captions", "read_clip", "read_frames", "read_mp4", "real_clip_paths", "render_clip", "sample_motion",
    "split_backgrounds", "to_uint8_frames", "write_mp4",
]  # fmt: skip
