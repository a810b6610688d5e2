"""Write sample clips of a run: one mp4 per clip plus one strip image per sampling point."""

from __future__ import annotations

from pathlib import Path

import torch

from ..data import plot_strips, write_mp4


def save_samples(folder: Path, videos: dict[str, torch.Tensor], fps: int, title: str | None = None) -> Path:
    """``videos``: name -> ``[3, F, H, W]`` in [-1, 1]. Writes ``<name>.mp4`` files and ``strips.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, video in videos.items():
        write_mp4(folder / f"{name}.mp4", video.detach().float().cpu().clamp(-1, 1), fps=fps)
    fig = plot_strips({k: v.detach().float().cpu().clamp(-1, 1) for k, v in videos.items()}, title=title)
    fig.savefig(folder / "strips.png", dpi=120)
    return folder
