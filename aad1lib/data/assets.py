"""Offline assets for synthetic clips: real photographs (scikit-image, scikit-learn) and digit sprites.

The train/test split is by image: a test clip never shows a photograph seen in training, so test
metrics measure generalisation to new first frames (the I2V condition), not memorisation.
"""

from __future__ import annotations

from functools import cache, lru_cache

import cv2
import numpy as np

# name -> plain-words description used in captions
DESCRIPTIONS: dict[str, str] = {
    "astronaut": "an astronaut portrait",
    "coffee": "a cup of coffee",
    "rocket": "a rocket on its launch pad",
    "hubble_deep_field": "deep-space galaxies",
    "immunohistochemistry": "stained tissue under a microscope",
    "retina": "a retina scan",
    "camera": "a cameraman in black and white",
    "brick": "a brick wall",
    "grass": "a patch of grass",
    "moon": "the lunar surface",
    "china": "a temple in China",
    "chelsea": "a tabby cat",
    "motorcycle_left": "a parked motorcycle",
    "flower": "a flower",
    "coins": "a row of old coins",
    "gravel": "a gravel path",
    "clock": "a wall clock",
}

# 11 train / 6 test; both splits mix colour and grey photographs
TRAIN_BACKGROUNDS: tuple[str, ...] = (
    "astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "china",
    "camera", "brick", "grass", "moon", "gravel",
)  # fmt: skip
TEST_BACKGROUNDS: tuple[str, ...] = ("chelsea", "motorcycle_left", "flower", "retina", "coins", "clock")
SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN_BACKGROUNDS, "test": TEST_BACKGROUNDS}


def split_backgrounds(split: str) -> tuple[str, ...]:
    """Background names of a split ("train" or "test")."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLITS)}")
    return SPLITS[split]


@cache
def load_background(name: str) -> np.ndarray:
    """Photograph `name` as a read-only uint8 array [H, W, 3] (grey images repeated to RGB).

    Cached once per process: decoding the bundled PNG/JPEG files costs far more than rendering a clip.
    """
    if name not in DESCRIPTIONS:
        raise ValueError(f"unknown background {name!r}; expected one of {sorted(DESCRIPTIONS)}")
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    else:
        import skimage.data

        image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3])
    image.setflags(write=False)
    return image


@lru_cache(maxsize=1)
def load_digit_sprites() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1797 handwritten digits: (images float32 [N, 8, 8] in [0, 1], labels int [N])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    return images, digits.target.copy()


@lru_cache(maxsize=256)
def digit_sprite(index: int, size: int) -> np.ndarray:
    """Alpha mask float32 [size, size] in [0, 1] of digit `index`, upscaled bilinearly.

    A 1-px empty border is added first so the upscaled sprite fades out at its edges.
    """
    images, _ = load_digit_sprites()
    padded = np.pad(images[index], 1)
    alpha = np.clip(cv2.resize(padded, (size, size), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    alpha.setflags(write=False)
    return alpha
