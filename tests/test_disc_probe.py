"""The discriminator probe (aad1lib.study.disc_probe): its fakes have the flaws they claim, and a probe run on tiny
returns the table the notebook and the benchmark print."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from aad1lib.builders import build_dataset, build_wan, collate
from aad1lib.config import load_preset
from aad1lib.eval.metrics.grid import video_blockiness
from aad1lib.eval.scoring import patch_grid_pixels
from aad1lib.study import disc_probe as P
from aad1lib.train.stage3 import build_discriminator


@pytest.fixture(scope="module")
def clips():
    """Two tiny real clips ``[2, 3, 9, 16, 16]``, scaled into [-0.5, 0.5] so no fake below reaches the clamp."""
    cfg = load_preset("tiny")
    test = build_dataset(cfg, "test")
    return 0.5 * collate([test[0], test[1]])["video"]


def test_static_fake_has_zero_frame_to_frame_difference(clips):
    fake = P.static_fake(clips)
    assert fake.shape == clips.shape
    assert torch.count_nonzero(fake.diff(dim=2)) == 0  # perfect motion collapse
    assert torch.equal(fake[:, :, 0], clips[:, :, 0])  # ... of the clip's own first frame
    assert clips.diff(dim=2).abs().mean() > 0.01  # (the real clips do move)


def test_drift_deviation_from_the_real_clip_grows_linearly_with_frame_index(clips):
    rate, direction = 0.05, P.drift_direction(2, 3, torch.Generator().manual_seed(0))
    assert torch.allclose(direction.norm(dim=1), torch.ones(2))  # unit colour direction per clip
    deviation = P.drift_fake(clips, rate, direction) - clips  # [B, C, F, H, W]
    k = torch.arange(clips.shape[2], dtype=clips.dtype)
    # every pixel of frame k moves by exactly k·rate·direction: a uniform colour shift, linear in k
    expected = rate * direction[:, :, None, None, None] * k[None, None, :, None, None]
    torch.testing.assert_close(deviation, expected.expand_as(deviation), atol=1e-6, rtol=0)
    per_frame = deviation.abs().mean(dim=(0, 1, 3, 4)).numpy()
    slope, intercept = np.polyfit(k.numpy(), per_frame, 1)
    assert per_frame[0] == 0 and slope > 0 and abs(intercept) < 1e-6
    np.testing.assert_allclose(per_frame, slope * k.numpy(), atol=1e-6)
    strong = P.drift_fake(2 * clips, 1.0, direction)  # a drift far past the range is clamped to it
    assert strong.min() >= -1 and strong.max() <= 1


def test_grid_artefacts_have_the_patch_period(clips):
    cfg = load_preset("tiny")
    period = patch_grid_pixels(cfg)
    assert period == 4  # tiny: patch 4 in pixel space (codec factor 1)
    vae = dataclasses.replace(cfg, codec=dataclasses.replace(cfg.codec, kind="wan_vae"))
    assert patch_grid_pixels(vae) == 32  # the patch × the VAE's 8× spatial factor, in pixels

    rate = 0.05
    artefact = P.grid_fake(clips, period, rate) - clips  # [B, C, F, H, W]
    on_grid = (torch.arange(16)[:, None] % 4 == 0) | (torch.arange(16)[None, :] % 4 == 0)
    assert torch.count_nonzero(artefact[..., ~on_grid]) == 0  # energy only on rows/cols ≡ 0 mod the period
    k = torch.arange(clips.shape[2], dtype=clips.dtype)
    lines = artefact[..., on_grid]  # [B, C, F, lines]: the same k·rate on every grid pixel of frame k
    torch.testing.assert_close(lines, (rate * k)[None, None, :, None].expand_as(lines))

    # the spectrum of a frame's artefact: nonzero only at multiples of the grid frequency 16 / 4 = 4
    power = torch.fft.fft2(artefact[0, 0, -1]).abs()
    freqs = torch.arange(16)
    off_harmonic = (freqs[:, None] % 4 != 0) | (freqs[None, :] % 4 != 0)
    assert power[off_harmonic].max() < 1e-5 and power[4, 0] > 1 and power[0, 4] > 1
    shifted = P.grid_fake(clips, 5, rate) - clips  # another period puts energy off those harmonics
    assert torch.fft.fft2(shifted[0, 0, -1]).abs()[off_harmonic].max() > 0.1

    # the evaluation's grid-artefact score (blockiness at the patch grid, ≈ 1 for natural content) sees it
    fake = P.grid_fake(clips, period, rate)
    assert video_blockiness(fake[0], period) > 1.2 * video_blockiness(clips[0], period)


def test_designs_build_the_stage3_discriminator_they_name():
    cfg = load_preset("tiny")
    backbone = build_wan(cfg)
    for design in P.DESIGNS:
        disc = build_discriminator(P.design_config(cfg, design, seed=1), backbone)
        assert f"{disc.attention}/{disc.logit}" == design
    assert P.design_config(cfg, "causal/frame", seed=5).seed == 5 and cfg.stage3.disc_attention == "bidirectional"
    with pytest.raises(ValueError, match="unknown discriminator design 'causal/clip'"):
        P.design_config(cfg, "causal/clip", 0)


def test_probe_on_tiny_returns_finite_accuracies_the_table_and_a_ci_for_two_seeds():
    torch.set_num_threads(1)
    cfg = load_preset("tiny")
    designs = ("bidirectional/video", "causal/frame")
    with pytest.warns(UserWarning, match="'samples' skipped"):
        result = P.run_probe(cfg, designs=designs, failures=("static", "samples"), seeds=(0, 1), updates=2,
                             eval_every=1, progress=False)  # fmt: skip
    curves = result.curves
    assert set(curves["failure"]) == {"static"} and set(curves["design"]) == set(designs)
    assert sorted(curves["update"].unique()) == [0, 1, 2]  # before training, then every eval_every
    assert len(curves) == 2 * 2 * 3
    for metric in ("accuracy", "pair_accuracy"):
        assert curves[metric].between(0, 1).all()
    assert np.isfinite(curves[["accuracy", "pair_accuracy", "gap", "d_real", "d_fake"]].to_numpy()).all()
    assert result.settings["grid_period"] == patch_grid_pixels(cfg)
    n = result.settings["eval_clips"]
    assert n == min(cfg.stage3.disc_eval_clips, cfg.data.test_clips)
    assert np.allclose(curves["accuracy"] * 2 * n, np.round(curves["accuracy"] * 2 * n))  # a fraction of 2N clips
    assert "fresh build_wan" in result.backbone and result.seconds_per_update > 0

    table = result.table()
    assert list(table.columns) == ["design", "failure", "update", "accuracy", "accuracy ±", "pair_accuracy",
                                   "pair_accuracy ±", "gap", "gap ±", "seeds"]  # fmt: skip
    assert len(table) == 2 and (table["update"] == 2).all() and (table["seeds"] == 2).all()
    for metric in P.METRICS:
        assert np.isfinite(table[f"{metric} ±"]).all()  # the t-interval exists with 2 seeds
        at_end = curves[curves["update"] == 2].groupby("design", sort=False)[metric].mean()
        np.testing.assert_allclose(table[metric], at_end.loc[list(table["design"])])
    markdown = P.markdown_table(table)
    assert "| bidirectional/video | static |" in markdown and " ± " in markdown
    assert P.plot_probe(curves).axes  # a figure with panels


def test_probe_table_ci_is_the_student_t_interval_over_seeds():
    import pandas as pd

    curves = pd.DataFrame([dict(design="d", failure="static", seed=s, update=10, accuracy=a, pair_accuracy=a, gap=g)
                           for s, (a, g) in enumerate([(0.5, 1.0), (0.75, 2.0), (1.0, 3.0)])])  # fmt: skip
    row = P.probe_table(curves).iloc[0]
    assert row["accuracy"] == pytest.approx(0.75) and row["gap"] == pytest.approx(2.0) and row["seeds"] == 3
    assert row["gap ±"] == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)  # t_{0.975, 2} · s / √n


def test_samples_are_the_stage2_runs_rollouts_and_d_starts_from_its_teacher(tmp_path, monkeypatch):
    from aad1lib.train.stage1 import train_stage1
    from aad1lib.train.stage2 import train_stage2
    from aad1lib.train.teacher import train_teacher

    torch.set_num_threads(1)
    fast = {"train.tracker": "none", "train.sample_every": 1000, "teacher.steps": 2, "stage1.steps": 2,
            "stage1.ode_pairs": 4, "stage1.ode_steps": 4, "stage1.shard_size": 4, "stage2.steps": 1,
            "stage2.critic_steps": 1, "stage2.eval_every": 1}  # fmt: skip
    cfg = load_preset("tiny", fast)
    teacher = train_teacher(cfg, run_name="t", runs_root=tmp_path)
    stage2 = train_stage2(cfg, train_stage1(cfg, teacher.run, run_name="t", runs_root=tmp_path).run, run_name="t",
                          runs_root=tmp_path)  # fmt: skip
    rollouts, stream_generate = [], P.stream_generate

    def recording(model, layout, text, noise, sigmas, **kwargs):
        rollouts.append(sigmas)
        return stream_generate(model, layout, text, noise, sigmas, **kwargs)

    monkeypatch.setattr(P, "stream_generate", recording)
    result = P.run_probe(cfg, designs=("bidirectional/video",), failures=("samples",), updates=1, eval_every=1,
                         init_run=stage2.run, progress=False)  # fmt: skip
    assert str(teacher.run.path) in result.backbone  # D's backbone: the Stage II run's teacher, as in Stage III
    assert len(rollouts) == 2  # the held-out fakes once, then one batch of fakes per update
    assert all(len(s) == 2 and float(s[-1]) == 0 for s in rollouts)  # one step per chunk
    assert set(result.curves["failure"]) == {"samples"} and np.isfinite(result.curves["gap"]).all()


def test_probe_figure_legend_fits_inside_the_figure_for_one_or_three_failure_modes():
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for failures in (["samples"], ["static", "drift", "grid"]):
        rows = [dict(design=d, failure=f, seed=s, update=u, accuracy=0.5 + 0.1 * s, gap=0.1 * u)
                for d in P.DESIGNS for f in failures for s in range(3) for u in (0, 15, 30)]  # fmt: skip
        curves = pd.DataFrame(rows)
        fig = P.plot_probe(curves)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        (legend,) = fig.legends
        box, page = legend.get_window_extent(canvas.get_renderer()), fig.bbox
        assert page.x0 <= box.x0 and box.x1 <= page.x1, (failures, box, page)  # no design name cut off
