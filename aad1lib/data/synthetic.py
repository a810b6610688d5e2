"""Synthetic I2V clips with known motion: a camera moving over a real photograph plus bouncing digits.

Built offline and deterministically: clip `i` of a dataset depends only on `(seed, split, i)`, so
train/eval data never drift between runs or workers, and every clip carries its ground-truth motion
(see `aad1lib.data.motion`) for flow-based metrics.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from aad1lib.data.assets import digit_sprite, load_background, split_backgrounds
from aad1lib.data.motion import CAMERA_MODES, COLOURS, SPEED_MODES, ClipMotion, caption, motion_dict, sample_motion


def _bounce(position: float, velocity: float, upper: float) -> tuple[float, float]:
    """One step of constant-velocity motion in [0, upper], reflecting off both ends."""
    position += velocity
    if position < 0.0:
        position, velocity = -position, -velocity
    elif position > upper:
        position, velocity = 2.0 * upper - position, -velocity
    return min(max(position, 0.0), upper), velocity


def render_clip(
    motion: ClipMotion, num_frames: int, height: int, width: int, background_blur: float = 0.0
) -> np.ndarray:
    """Render `motion` to float32 frames [F, H, W, 3] in [0, 1]; `background_blur`: Gaussian σ (output px) of
    the photograph (0 = sharp), for a task a small CPU model can learn (docs/design.md §9)."""
    # 1. Photograph crop -> canvas at output scale. INTER_AREA anti-aliases the (often large) downscale
    #    once, so the per-frame bilinear warps below only resample near scale 1.
    y, x, crop_h, crop_w = motion.crop
    canvas_h, canvas_w = motion.canvas
    region = load_background(motion.background)[y : y + crop_h, x : x + crop_w]
    shrink = crop_h > canvas_h or crop_w > canvas_w
    canvas = cv2.resize(region, (canvas_w, canvas_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    canvas = canvas.astype(np.float32) / 255.0
    if background_blur > 0:
        canvas = cv2.GaussianBlur(canvas, (0, 0), sigmaX=background_blur, borderType=cv2.BORDER_REFLECT_101)

    # 2. Camera: output pixel p samples canvas point centre_t + (p - frame_centre) / zoom_t (bilinear).
    frame_centre = np.array([(width - 1) / 2, (height - 1) / 2])
    velocity = np.array([motion.pan_dx, motion.pan_dy])
    start = np.array([(canvas_w - 1) / 2, (canvas_h - 1) / 2]) - velocity * (num_frames - 1) / 2
    frames = np.empty((num_frames, height, width, 3), dtype=np.float32)
    for t in range(num_frames):
        inv_zoom = (1.0 + motion.zoom_rate) ** -t
        centre = start + velocity * t
        offset = centre - frame_centre * inv_zoom
        warp = np.array([[inv_zoom, 0.0, offset[0]], [0.0, inv_zoom, offset[1]]])
        frames[t] = cv2.warpAffine(
            canvas, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )  # fmt: skip

    # 3. Sprites: alpha-composited in screen space at sub-pixel positions, bouncing off the frame border.
    for sprite in motion.sprites:
        alpha = digit_sprite(sprite.index, sprite.size)
        colour = np.array(COLOURS[sprite.colour], dtype=np.float32)
        px, py, vx, vy = sprite.x0, sprite.y0, sprite.vx, sprite.vy
        for t in range(num_frames):
            shift = np.array([[1.0, 0.0, px], [0.0, 1.0, py]])
            a = cv2.warpAffine(alpha, shift, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
            frames[t] = frames[t] * (1.0 - a) + colour * a
            px, vx = _bounce(px, vx, width - sprite.size)
            py, vy = _bounce(py, vy, height - sprite.size)
    return frames


class SyntheticI2VDataset(Dataset):
    """Procedural I2V clips over real photographs, split by photograph (see `assets.TRAIN_BACKGROUNDS`).

    Each sample: {"video": [3, F, H, W] in [-1, 1], "first_frame": [3, H, W], "prompt": str,
    "motion": flat dict (`motion.motion_dict`), "source": background name}.
    """

    def __init__(
        self,
        split: str,
        num_clips: int,
        num_frames: int,
        height: int,
        width: int,
        fps: int = 8,
        seed: int = 0,
        *,
        camera_modes: tuple[str, ...] = CAMERA_MODES,  # drawn uniformly per clip
        num_sprites: tuple[int, int] = (1, 2),  # inclusive range of digits per clip
        background_blur: float = 0.0,  # Gaussian σ (output px) of the photograph; 0 = sharp
        speeds: str = "continuous",  # or "worded": the caption's speed word fixes the speed (motion.SPEED_MODES)
    ):
        if num_frames < 1 or height < 8 or width < 8 or num_clips < 0:
            raise ValueError(f"need num_frames >= 1, height/width >= 8, num_clips >= 0; got "
                             f"{num_clips=}, {num_frames=}, {height=}, {width=}")  # fmt: skip
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        unknown = set(camera_modes) - set(CAMERA_MODES)
        if unknown or not camera_modes:
            raise ValueError(f"camera_modes must be a non-empty subset of {CAMERA_MODES}, got {camera_modes}")
        if not 0 <= num_sprites[0] <= num_sprites[1]:
            raise ValueError(f"num_sprites must be an inclusive range (lo, hi) with 0 <= lo <= hi, got {num_sprites}")
        self.split, self.backgrounds = split, split_backgrounds(split)
        self.num_clips, self.num_frames, self.height, self.width = num_clips, num_frames, height, width
        self.fps, self.seed = fps, seed
        self.camera_modes, self.num_sprites = tuple(camera_modes), tuple(num_sprites)
        if background_blur < 0:
            raise ValueError(f"background_blur must be >= 0, got {background_blur}")
        self.background_blur = background_blur
        if speeds not in SPEED_MODES:
            raise ValueError(f"speeds must be one of {SPEED_MODES}, got {speeds!r}")
        self.speeds = speeds

    def __len__(self) -> int:
        return self.num_clips

    def motion_params(self, index: int) -> ClipMotion:
        """Motion of clip `index`, from its own generator seeded by (seed, split, index)."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        rng = np.random.default_rng([self.seed, zlib.crc32(self.split.encode()), index])
        background = str(rng.choice(list(self.backgrounds)))
        return sample_motion(
            rng,
            background,
            self.num_frames,
            self.height,
            self.width,
            self.camera_modes,
            self.num_sprites,
            self.speeds,
        )

    def __getitem__(self, index: int) -> dict:
        motion = self.motion_params(index)
        frames = render_clip(motion, self.num_frames, self.height, self.width, self.background_blur)
        video = rearrange(torch.from_numpy(frames), "f h w c -> c f h w").mul(2.0).sub(1.0).contiguous()
        return {
            "video": video,  # [3, F, H, W] in [-1, 1]
            "first_frame": video[:, 0].clone(),  # [3, H, W]
            "prompt": caption(motion, self.height, self.width),
            "motion": motion_dict(motion, self.height, self.width, sprite_slots=self.num_sprites[1]),
            "source": motion.background,
        }
