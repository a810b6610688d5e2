"""mp4 reading/writing (imageio-ffmpeg's bundled ffmpeg, so it works offline) and frame conversions."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import torch
from einops import rearrange


class VideoDecodeError(ValueError):
    """A video file is corrupt, unreadable or too short; the message names the file and the reason."""


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[3, F, H, W] float in [-1, 1] -> uint8 [F, H, W, 3] (values outside [-1, 1] are clipped)."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video [3, F, H, W], got shape {tuple(video.shape)}")
    frames = video.detach().float().cpu().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    return np.ascontiguousarray(rearrange(frames, "c f h w -> f h w c").numpy())


def from_uint8_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 [F, H, W, 3] -> float32 [3, F, H, W] in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1.0)
    return rearrange(video, "f h w c -> c f h w").contiguous()


def center_crop_resize(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop [h, w, 3] centrally to the aspect of height:width, then resize to [height, width, 3]."""
    h, w = frame.shape[:2]
    if h * width > w * height:  # too tall: crop rows
        crop_h, crop_w = max(1, round(w * height / width)), w
    else:
        crop_h, crop_w = h, max(1, round(h * width / height))
    y, x = (h - crop_h) // 2, (w - crop_w) // 2
    frame = frame[y : y + crop_h, x : x + crop_w]
    if (crop_h, crop_w) == (height, width):
        return np.ascontiguousarray(frame)
    # INTER_AREA anti-aliases large downscales (real clips are up to 1280x720); bilinear otherwise
    shrink = crop_h > height or crop_w > width
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _ffmpeg_reason(err: Exception) -> str:
    """The informative part of an imageio-ffmpeg error: its headline plus ffmpeg's last stderr line."""
    text = str(err)
    headline, _, stderr = text.partition("=== stderr ===")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = headline.strip() + (f": {lines[-1]}" if lines else "")
    return reason[:300] or type(err).__name__


def read_frames(
    path: str | Path,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    fps: float | None = None,
) -> np.ndarray:
    """Decode uint8 frames [F, H, W, 3] from a video file; :func:`read_clip` without the source frame rate."""
    return read_clip(path, num_frames, height, width, fps)[0]


def read_clip(
    path: str | Path,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    fps: float | None = None,
) -> tuple[np.ndarray, float | None]:
    """(uint8 frames [F, H, W, 3], the file's frame rate from its metadata or None) of a video file.

    Stops after `num_frames` (raising `VideoDecodeError` if the file has fewer); with `height` and
    `width`, each frame is centre-cropped to that aspect and resized as it is decoded. With `fps`, the
    frames are resampled by timestamp: output frame i is the source frame shown at time i / fps
    (source index floor(i * source_fps / fps)), so a 32 fps file read at 16 fps yields every second
    frame, and a file slower than `fps` repeats frames.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: file does not exist")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    frames: list[np.ndarray] = []
    decoded = 0  # source frames decoded
    source_fps = None
    reader = None
    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = reader.__next__()
        w, h = meta["size"]
        source_fps = float(meta["fps"]) if meta.get("fps") else None
        if fps is not None and source_fps is None:
            raise VideoDecodeError(f"{path}: no frame rate in its metadata, cannot resample it to {fps:g} fps")
        step = 1.0 if fps is None else source_fps / fps  # source frames per output frame
        for raw in reader:
            decoded += 1
            frame = None
            # every output frame whose timestamp falls on this source frame (none, one, or repeats)
            while math.floor(len(frames) * step + 1e-6) == decoded - 1:
                if frame is None:
                    frame = np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3)
                    frame = center_crop_resize(frame, height, width) if height and width else frame.copy()
                frames.append(frame)
                if num_frames is not None and len(frames) == num_frames:
                    break
            if num_frames is not None and len(frames) == num_frames:
                break
    except VideoDecodeError:
        raise
    except (OSError, RuntimeError, ValueError, StopIteration, KeyError) as err:
        raise VideoDecodeError(f"{path}: cannot decode video ({_ffmpeg_reason(err)})") from err
    finally:
        if reader is not None:
            reader.close()  # stops the ffmpeg subprocess when we break early
    if not frames:
        raise VideoDecodeError(f"{path}: no frames could be decoded")
    if num_frames is not None and len(frames) < num_frames:
        if fps is None:
            raise VideoDecodeError(f"{path}: too short, has {len(frames)} frames but {num_frames} are needed")
        raise VideoDecodeError(
            f"{path}: too short, has {len(frames)} frames at {fps:g} fps ({decoded} at the file's {source_fps:g} fps) "
            f"but {num_frames} are needed"
        )
    return np.stack(frames), source_fps


def read_mp4(path: str | Path) -> torch.Tensor:
    """All frames of a video file as float32 [3, F, H, W] in [-1, 1]."""
    return from_uint8_frames(read_frames(path))


def write_mp4(path: str | Path, video: torch.Tensor, fps: float = 8, quality: float = 9) -> Path:
    """Write [3, F, H, W] in [-1, 1] as H.264 mp4 at the exact size (no padding).

    quality 9 of 10 is x264 CRF 5: near-lossless but still playable everywhere (10 = CRF 0 selects a
    lossless profile browsers refuse). yuv420p halves the chroma resolution and needs even sizes, so
    odd sizes fall back to yuv444p.
    """
    frames = to_uint8_frames(video)
    _, height, width, _ = frames.shape
    pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=fps, codec="libx264", quality=quality, pix_fmt_out=pix_fmt,
        macro_block_size=1, ffmpeg_log_level="error",
    )  # fmt: skip
    writer.send(None)  # the generator must be primed before frames are sent
    try:
        for frame in frames:
            writer.send(frame)
    finally:
        writer.close()
    return path
