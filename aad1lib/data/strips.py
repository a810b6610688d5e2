"""Film-strip views of clips for notebooks and reports."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from aad1lib.data.video_io import to_uint8_frames


def clip_strip(video: torch.Tensor, max_frames: int = 8, separator: int = 1) -> np.ndarray:
    """Evenly spaced frames of [3, F, H, W] in [-1, 1] side by side, split by white lines.

    Returns uint8 [H, k*W + (k-1)*separator, 3] with k = min(F, max_frames); first and last frame included.
    """
    frames = to_uint8_frames(video)  # [F, H, W, 3]
    num, height, width, _ = frames.shape
    k = max(1, min(num, max_frames))
    picks = np.linspace(0, num - 1, k).round().astype(int)
    strip = np.full((height, k * width + (k - 1) * separator, 3), 255, dtype=np.uint8)
    for slot, index in enumerate(picks):
        x = slot * (width + separator)
        strip[:, x : x + width] = frames[index]
    return strip


def plot_strips(
    videos: dict[str, torch.Tensor], title: str | None = None, max_frames: int = 8, row_height: float = 1.2
) -> Figure:
    """One labelled row per named clip ([3, F, H, W] in [-1, 1]).

    Builds a bare `Figure` (no pyplot), so it works under Agg, never pops up a window or accumulates in
    pyplot's registry, and still renders inline when returned in a notebook cell.
    """
    if not videos:
        raise ValueError("plot_strips needs at least one video")
    strips = {name: clip_strip(v, max_frames) for name, v in videos.items()}
    widest = max(s.shape[1] / s.shape[0] for s in strips.values())
    label = 0.3 + 0.075 * max(len(name) for name in strips)  # inches for the row labels (9 pt, left of the rows)
    # constrained layout keeps the labels and the title clear of the rows (tight_layout put the title over them)
    fig = Figure(figsize=(min(16.0 + label, label + row_height * widest), row_height * len(strips) + (0.5 if title
                 else 0.1)), layout="constrained")  # fmt: skip
    axes = fig.subplots(len(strips), 1, squeeze=False)[:, 0]
    for ax, (name, strip) in zip(axes, strips.items(), strict=True):
        ax.imshow(strip, interpolation="nearest")
        ax.set_anchor("W")  # an equal-aspect image shrinks inside its slot: keep it next to its label
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig
