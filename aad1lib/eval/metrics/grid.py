"""Grid artefacts: how much a clip's edges line up with the generator's patch grid (the paper's λ = 50 failure).

Blockiness in the spirit of the JPEG blocking measures (Wang, Bovik & Evans 2000): the mean absolute difference
between neighbouring pixels ACROSS patch boundaries divided by the mean difference WITHIN patches. Natural
content does not care where the patches are, so the ratio is ≈ 1; a visible patch grid pushes it above 1.
Written by hand: no library we use measures blocking at an arbitrary period.
"""

from __future__ import annotations

import torch

from .backbones import video_frames


def blockiness(frames: torch.Tensor, period: int, eps: float = 1e-6) -> float:
    """Boundary / interior mean |neighbour difference| of frames [F, 3, H, W] (values in any fixed range)
    for a patch grid of ``period`` pixels, averaged over the horizontal and vertical directions."""
    if period < 2:
        raise ValueError(f"a patch grid needs period >= 2 pixels, got {period}")
    if frames.ndim != 4:
        raise ValueError(f"expected frames [F, C, H, W], got shape {tuple(frames.shape)}")
    gray = frames.double().mean(1)  # [F, H, W]
    ratios = []
    for dim in (2, 1):  # across columns, across rows
        size = gray.shape[dim]
        if size <= period:
            continue
        diff = gray.diff(dim=dim).abs()  # position j compares pixels j and j + 1
        on_boundary = (torch.arange(size - 1) + 1) % period == 0  # j + 1 starts a new patch
        view = [1, 1, 1]
        view[dim] = size - 1
        on_boundary = on_boundary.view(view).expand_as(diff)
        ratios.append((diff[on_boundary].mean() + eps) / (diff[~on_boundary].mean() + eps))
    if not ratios:
        raise ValueError(f"frames of {tuple(gray.shape[1:])} px hold no patch boundary of period {period}")
    return float(torch.stack(ratios).mean())


def video_blockiness(video: torch.Tensor, period: int) -> float:
    """:func:`blockiness` of one clip [3, F, H, W] in [-1, 1]."""
    return blockiness(video_frames(video), period)
