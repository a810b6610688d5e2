"""Offline backbones that need no weights: HOG, colour histogram + thumbnail, OpenCV flow, a sharpness/noise IQ,
a colourfulness/contrast aesthetic score.

They are classical stand-ins for DINO / CLIP / RAFT / MUSIQ / LAION-aesthetic so the whole evaluation runs on a CPU with
no download. They rank clips in the same direction as the published networks on the failure modes we
test (static, cut, blur, noise, collapse) but their absolute values are NOT comparable with VBench.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from skimage.feature import hog

from .backbones import to_uint8_images, to_unit_images


class HOGFeatures:
    """Subject-consistency stand-in for DINO: HOG of the grey frame resized to ``size`` x ``size``.

    frames [N, 3, H, W] -> [N, D] with D = 9 orientations x 2x2 cells/block x blocks (1764 at 64 px).
    """

    name = "HOG"

    def __init__(self, size: int = 64, pixels_per_cell: int = 8):
        self.size, self.pixels_per_cell = size, pixels_per_cell

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        feats = []
        for image in to_uint8_images(frames):
            grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            grey = cv2.resize(grey, (self.size, self.size), interpolation=cv2.INTER_AREA)
            cell = (self.pixels_per_cell, self.pixels_per_cell)
            feats.append(hog(grey, orientations=9, pixels_per_cell=cell, cells_per_block=(2, 2), feature_vector=True))
        return torch.from_numpy(np.stack(feats)).float()


class ColorHistFeatures:
    """Background-consistency stand-in for CLIP: colour histogram + coarse layout thumbnail.

    Two L2-normalised halves, so cos(a, b) = ½[Bhattacharyya coefficient of the per-channel colour
    histograms (``bins`` per channel, square-rooted) + Pearson correlation of the ``thumb`` x ``thumb``
    RGB thumbnails]. frames [N, 3, H, W] -> [N, 3 * bins + 3 * thumb²].
    """

    name = "ColorHist"

    def __init__(self, bins: int = 16, thumb: int = 8):
        self.bins, self.thumb = bins, thumb

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        feats = []
        for image in to_uint8_images(frames):
            bin_index = image.reshape(-1, 3).astype(np.int64) * self.bins // 256  # [H*W, 3]
            hist = np.concatenate([np.bincount(bin_index[:, c], minlength=self.bins) for c in range(3)]).astype(float)
            hist = np.sqrt(hist / hist.sum())  # Bhattacharyya: sqrt of probabilities, then a dot product
            small = cv2.resize(image, (self.thumb, self.thumb), interpolation=cv2.INTER_AREA).astype(np.float64)
            small = small.ravel() - small.mean()  # centred: the dot product is a correlation
            halves = [v / max(np.linalg.norm(v), 1e-8) for v in (hist, small)]
            feats.append(np.concatenate(halves) / math.sqrt(2.0))
        return torch.from_numpy(np.stack(feats)).float()


class OpenCVFlow:
    """Dense optical flow from OpenCV (``"DIS"``, medium preset, or ``"Farneback"``) on grey uint8 frames.

    Tiny frames are upscaled (bilinear) so their short side is at least ``min_size`` px before the flow,
    because both methods work on image pyramids and patches that a 32-px frame cannot hold; the flow is
    then area-resized back to [H, W] and divided by the scale, so it is in pixels of the input frame.
    (frame_a [3, H, W], frame_b [3, H, W]) -> flow [2, H, W] (dx, dy) from a to b.
    """

    def __init__(self, method: str = "DIS", min_size: int = 128):
        if method not in ("DIS", "Farneback"):
            raise ValueError(f"method must be 'DIS' or 'Farneback', got {method!r}")
        self.name, self.method, self.min_size = method, method, min_size
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "DIS" else None

    def __call__(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        pair = to_uint8_images(torch.stack([frame_a, frame_b]))
        grey_a, grey_b = (cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in pair)
        h, w = grey_a.shape
        scale = max(1.0, self.min_size / min(h, w))
        size = (round(w * scale), round(h * scale))  # cv2 wants (width, height)
        if scale > 1.0:
            grey_a, grey_b = (cv2.resize(g, size, interpolation=cv2.INTER_LINEAR) for g in (grey_a, grey_b))
        if self._dis is not None:
            flow = self._dis.calc(grey_a, grey_b, None)
        else:
            flow = cv2.calcOpticalFlowFarneback(grey_a, grey_b, None, 0.5, 4, 15, 3, 5, 1.2, 0)
        if scale > 1.0:
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA)
            flow = flow / np.array([size[0] / w, size[1] / h], dtype=np.float32)  # back to input pixels
        return torch.from_numpy(np.ascontiguousarray(flow.transpose(2, 0, 1))).float()


def _immerkaer_sigma(grey: np.ndarray) -> float:
    """Noise std of a grey [H, W] image in [0, 1] (Immerkær 1996, "Fast noise variance estimation")."""
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = cv2.filter2D(grey, cv2.CV_64F, kernel)[1:-1, 1:-1]  # valid region only
    return math.sqrt(math.pi / 2.0) * float(np.abs(response).mean()) / 6.0


class SharpNoiseQuality:
    """Imaging-quality stand-in for MUSIQ that works at 32-64 px: sharpness x (1 - noise), in [0, 1].

    sharpness = 1 - exp(-rms_signal / ``sharp_scale``), with rms_signal the RMS of the 4-neighbour
    Laplacian after removing the part white noise explains (20 sigma², the kernel's squared norm);
    noise term = 1 / (1 + (sigma / ``noise_scale``)²), sigma from Immerkær's estimator. Blur lowers the
    first factor, added noise the second. frames [N, 3, H, W] -> [N].
    """

    name = "SharpNoise"

    def __init__(self, sharp_scale: float = 0.1, noise_scale: float = 0.05):
        self.sharp_scale, self.noise_scale = sharp_scale, noise_scale

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        scores = []
        for image in to_unit_images(frames):
            grey = image @ np.array([0.299, 0.587, 0.114])
            sigma = _immerkaer_sigma(grey)
            laplacian = cv2.Laplacian(grey, cv2.CV_64F, ksize=1)[1:-1, 1:-1]
            rms_signal = math.sqrt(max(float(laplacian.var()) - 20.0 * sigma**2, 0.0))
            sharpness = 1.0 - math.exp(-rms_signal / self.sharp_scale)
            scores.append(sharpness / (1.0 + (sigma / self.noise_scale) ** 2))
        return torch.tensor(scores, dtype=torch.float32)


class ColorContrastAesthetic:
    """Aesthetic-quality stand-in for CLIP ViT-L/14 + the LAION head: colourfulness and contrast, damped by noise.

    score = ½[(1 - exp(-M / ``colour_scale``)) + (1 - exp(-C / ``contrast_scale``))] / (1 + (sigma / ``noise_scale``)²)
    with M the Hasler-Süsstrunk colourfulness (std + 0.3 mean of the rg / yb opponent channels, RGB in [0, 1]),
    C the RMS contrast (std of the grey frame) and sigma Immerkær's noise estimate. A flat or washed-out
    (collapsed) frame scores low, and so does a noisy one. It does not reward sharpness (Imaging Quality's job):
    fine texture partly reads as noise, so a slightly blurred frame can score higher. frames [N, 3, H, W] -> [N].
    """

    name = "ColorContrast"

    def __init__(self, colour_scale: float = 0.15, contrast_scale: float = 0.15, noise_scale: float = 0.05):
        self.colour_scale, self.contrast_scale, self.noise_scale = colour_scale, contrast_scale, noise_scale

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        scores = []
        for image in to_unit_images(frames):
            red, green, blue = image[..., 0], image[..., 1], image[..., 2]
            rg, yb = red - green, 0.5 * (red + green) - blue
            colourfulness = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
            grey = image @ np.array([0.299, 0.587, 0.114])
            colour = 1.0 - math.exp(-colourfulness / self.colour_scale)
            contrast = 1.0 - math.exp(-grey.std() / self.contrast_scale)
            appeal = 0.5 * (colour + contrast)
            scores.append(appeal / (1.0 + (_immerkaer_sigma(grey) / self.noise_scale) ** 2))
        return torch.tensor(scores, dtype=torch.float32)
