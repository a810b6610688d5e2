"""Motion parameters of a synthetic clip: sampling, the plain-words caption, and the ground-truth dict.

All velocities are in pixels per frame at the output resolution, with x to the right and y down
(image coordinates). `pan_dx, pan_dy` is the velocity of the camera window over the photograph, so
the photographed content moves across the frame by `(-pan_dx, -pan_dy)` per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aad1lib.data.assets import DESCRIPTIONS, digit_sprite, load_background, load_digit_sprites

CAMERA_MODES = ("static", "pan", "zoom")
# unit vectors of the 8 compass directions a pan or a sprite may take (exact, so captions are exact)
_DIAG = 1.0 / math.sqrt(2.0)
DIRECTIONS: dict[str, tuple[float, float]] = {
    "right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0),
    "down-right": (_DIAG, _DIAG), "down-left": (-_DIAG, _DIAG),
    "up-right": (_DIAG, -_DIAG), "up-left": (-_DIAG, -_DIAG),
}  # fmt: skip
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.15, 0.1), "green": (0.15, 0.85, 0.2), "blue": (0.15, 0.35, 1.0),
    "yellow": (1.0, 0.9, 0.1), "cyan": (0.1, 0.9, 0.95), "magenta": (0.95, 0.2, 0.9),
    "white": (1.0, 1.0, 1.0), "orange": (1.0, 0.55, 0.05),
}  # fmt: skip
PAN_SPEED = (0.25, 2.0)  # px/frame at 32 px; scaled with the frame size
SPRITE_SPEED = (0.5, 2.0)  # px/frame at 32 px
ZOOM_RATE = (0.015, 0.05)  # relative scale change per frame
# (slow, fast) thresholds for the caption's speed word, splitting each sampling range roughly in thirds
PAN_WORDS, SPRITE_WORDS, ZOOM_WORDS = (0.75, 1.5), (1.0, 1.5), (0.025, 0.04)
# speeds="worded": one exact value per caption word (slowly, steadily, quickly), inside each word's range, so the
# first frame and the caption determine the clip (a task a small teacher can learn, docs/design.md §12)
PAN_LEVELS, SPRITE_LEVELS, ZOOM_LEVELS = (0.5, 1.1, 1.75), (0.75, 1.25, 1.75), (0.02, 0.0325, 0.045)
SPEED_MODES = ("continuous", "worded")
CANVAS_MARGIN = 2  # px kept around the camera path so bilinear taps never read outside the canvas


@dataclass(frozen=True)
class SpriteMotion:
    """One bouncing digit: top-left start `(x0, y0)` and velocity `(vx, vy)` in px/frame."""

    digit: int  # label 0-9, for the caption
    index: int  # index into sklearn's load_digits images
    colour: str
    size: int  # side of the square sprite, px
    x0: float
    y0: float
    vx: float
    vy: float


@dataclass(frozen=True)
class ClipMotion:
    """Everything needed to render one clip (besides its frame count and size)."""

    background: str
    camera: str  # "static" | "pan" | "zoom"
    pan_dx: float  # camera-window velocity, px/frame (content moves by -pan_dx)
    pan_dy: float
    zoom_rate: float  # scale grows by (1 + zoom_rate) per frame; > 0 zooms in, < 0 zooms out
    crop: tuple[int, int, int, int]  # (y, x, h, w) of the photograph region used, source px
    canvas: tuple[int, int]  # (h, w) that region is resampled to: 1 canvas px = 1 output px at zoom 1
    sprites: tuple[SpriteMotion, ...]


def direction_word(dx: float, dy: float) -> str:
    """Compass word for a velocity, e.g. (-1, 1) -> "down-left"."""
    vertical = "down" if dy > 1e-6 else "up" if dy < -1e-6 else ""
    horizontal = "right" if dx > 1e-6 else "left" if dx < -1e-6 else ""
    return "-".join(w for w in (vertical, horizontal) if w) or "nowhere"


def speed_word(speed: float, slow: float, fast: float) -> str:
    """Speed word: "slowly" below `slow`, "quickly" from `fast` on, "steadily" in between."""
    return "slowly" if speed < slow else "quickly" if speed >= fast else "steadily"


def sample_motion(
    rng: np.random.Generator,
    background: str,
    num_frames: int,
    height: int,
    width: int,
    camera_modes: tuple[str, ...] = CAMERA_MODES,
    num_sprites: tuple[int, int] = (1, 2),
    speeds: str = "continuous",
) -> ClipMotion:
    """Draw camera motion, photograph crop and sprites for one clip from `rng` (its only randomness); `speeds`:
    "continuous" (uniform in each range) or "worded" (the caption word's exact value, see SPEED_MODES)."""
    if speeds not in SPEED_MODES:
        raise ValueError(f"speeds must be one of {SPEED_MODES}, got {speeds!r}")

    def draw(span: tuple[float, float], levels: tuple[float, ...]) -> float:
        return float(rng.uniform(*span)) if speeds == "continuous" else float(rng.choice(levels))

    scale = min(height, width) / 32.0  # speeds are specified at 32 px and scale with the frame
    steps = num_frames - 1
    camera = str(rng.choice(list(camera_modes)))
    pan_dx = pan_dy = zoom_rate = 0.0
    extent_h, extent_w = float(height), float(width)  # canvas area the camera path covers, output px
    if camera == "pan":
        ux, uy = DIRECTIONS[str(rng.choice(list(DIRECTIONS)))]
        speed = draw(PAN_SPEED, PAN_LEVELS) * scale
        pan_dx, pan_dy = ux * speed, uy * speed
        extent_h, extent_w = height + abs(pan_dy) * steps, width + abs(pan_dx) * steps
    elif camera == "zoom":
        zoom_rate = float(rng.choice([-1.0, 1.0]) * draw(ZOOM_RATE, ZOOM_LEVELS))
        widest = max(1.0, (1.0 + zoom_rate) ** -steps)  # zooming out ends on the widest view
        extent_h, extent_w = height * widest, width * widest
    elif camera != "static":
        raise ValueError(f"unknown camera mode {camera!r}; expected one of {CAMERA_MODES}")
    canvas = (math.ceil(extent_h) + 2 * CANVAS_MARGIN, math.ceil(extent_w) + 2 * CANVAS_MARGIN)

    # A random view scale (source px per output px) and position give a random crop of the photo.
    photo_h, photo_w = load_background(background).shape[:2]
    max_scale = min(photo_h / canvas[0], photo_w / canvas[1])
    view_scale = max_scale * rng.uniform(0.35, 1.0)
    crop_h = min(photo_h, max(1, round(canvas[0] * view_scale)))
    crop_w = min(photo_w, max(1, round(canvas[1] * view_scale)))
    crop = (int(rng.integers(0, photo_h - crop_h + 1)), int(rng.integers(0, photo_w - crop_w + 1)), crop_h, crop_w)

    sprites = []
    digit_images, digit_labels = load_digit_sprites()
    for _ in range(int(rng.integers(num_sprites[0], num_sprites[1] + 1))):
        index = int(rng.integers(len(digit_images)))
        size = max(4, round(min(height, width) * rng.uniform(0.3, 0.45)))
        colour = str(rng.choice(list(COLOURS)))
        x0, y0 = rng.uniform(0, width - size), rng.uniform(0, height - size)
        ux, uy = DIRECTIONS[str(rng.choice(list(DIRECTIONS)))]
        speed = draw(SPRITE_SPEED, SPRITE_LEVELS) * scale
        sprites.append(SpriteMotion(int(digit_labels[index]), index, colour, size, x0, y0, ux * speed, uy * speed))
    return ClipMotion(background, camera, pan_dx, pan_dy, zoom_rate, crop, canvas, tuple(sprites))


def caption(motion: ClipMotion, height: int, width: int) -> str:
    """Plain-words caption derived only from the motion parameters.

    e.g. "the camera pans left slowly over a cup of coffee; a red digit 3 moves down-right quickly".
    """
    scale = min(height, width) / 32.0
    scene = DESCRIPTIONS[motion.background]
    if motion.camera == "pan":
        speed = speed_word(math.hypot(motion.pan_dx, motion.pan_dy) / scale, *PAN_WORDS)
        parts = [f"the camera pans {direction_word(motion.pan_dx, motion.pan_dy)} {speed} over {scene}"]
    elif motion.camera == "zoom":
        speed = speed_word(abs(motion.zoom_rate), *ZOOM_WORDS)
        parts = [f"the camera zooms {'in' if motion.zoom_rate > 0 else 'out'} {speed} on {scene}"]
    else:
        parts = [f"a static camera looks at {scene}"]
    for s in motion.sprites:
        speed = speed_word(math.hypot(s.vx, s.vy) / scale, *SPRITE_WORDS)
        article = "an" if s.colour[0] in "aeiou" else "a"
        parts.append(f"{article} {s.colour} digit {s.digit} moves {direction_word(s.vx, s.vy)} {speed}")
    return "; ".join(parts)


def _mean_radius(height: int, width: int) -> float:
    """Mean distance of the pixel centres from the frame centre; zoom flow is rate * radius."""
    ys, xs = np.mgrid[0:height, 0:width]
    return float(np.hypot(ys - (height - 1) / 2, xs - (width - 1) / 2).mean())


def motion_dict(motion: ClipMotion, height: int, width: int, sprite_slots: int) -> dict:
    """Ground-truth motion as a flat dict with the same keys for every clip of a dataset (collatable).

    `mean_speed_px` is the expected mean optical-flow magnitude over the frame, px/frame: camera flow
    on the uncovered background plus each sprite's speed weighted by the area its alpha covers.
    """
    if motion.camera == "pan":
        camera_speed = math.hypot(motion.pan_dx, motion.pan_dy)
    elif motion.camera == "zoom":
        camera_speed = abs(motion.zoom_rate) * _mean_radius(height, width)
    else:
        camera_speed = 0.0
    covers = [float(digit_sprite(s.index, s.size).sum()) / (height * width) for s in motion.sprites]
    background_share = max(0.0, 1.0 - sum(covers))
    mean_speed = background_share * camera_speed + sum(
        c * math.hypot(s.vx, s.vy) for c, s in zip(covers, motion.sprites, strict=True)
    )
    out = {
        "camera": motion.camera,
        "pan_dx": float(motion.pan_dx),
        "pan_dy": float(motion.pan_dy),
        "zoom_rate": float(motion.zoom_rate),
        "camera_speed_px": float(camera_speed),
        "mean_speed_px": float(mean_speed),
        "num_sprites": float(len(motion.sprites)),
    }
    for j in range(sprite_slots):  # absent sprites are zero-velocity with digit -1
        s = motion.sprites[j] if j < len(motion.sprites) else None
        out[f"sprite{j}_vx"] = float(s.vx) if s else 0.0
        out[f"sprite{j}_vy"] = float(s.vy) if s else 0.0
        out[f"sprite{j}_digit"] = float(s.digit) if s else -1.0
    return out
