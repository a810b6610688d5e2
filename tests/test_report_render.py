"""Report pieces that nbval does not check by value: the sample GIF's layout and the study table's cells."""

import imageio.v3 as iio
import pandas as pd
import torch

from aad1lib.report.render import study_table, write_gif


def test_gif_has_one_row_per_method_and_one_column_per_clip(tmp_path):
    clips = {"Data": torch.rand(2, 3, 5, 8, 8) * 2 - 1, "AAD-1": torch.zeros(2, 3, 5, 8, 8)}
    frames = iio.imread(write_gif(tmp_path / "s.gif", clips, fps=8, scale=2), index=None)
    assert frames.shape[:3] == (5, 2 * 8 * 2, 2 * 8 * 2)  # frames, rows × H × scale, clips × W × scale
    assert abs(int(frames[0, 20, 20, 0]) - 128) <= 2  # the second row is the all-zero (mid-grey) method


def test_study_table_shows_interval_seed_count_and_runs():
    frame = pd.DataFrame([
        dict(λ=lam, seed=s, child=f"c{lam}-{s}", state="done", diverged=False, **{"Drift (SharpNoise)": d})
        for lam, values in {0.0: [0.1, 0.3], 20.0: [0.2, 0.2]}.items() for s, d in enumerate(values)
    ])  # fmt: skip
    table = study_table(frame, ["λ"])
    assert "| 0.0 | 0.200 ± 1.271 | 2 | `c0.0-0`<br>`c0.0-1` |" in table  # t(0.975, 1) = 12.706
    assert "| 20.0 | 0.200 ± 0.000 | 2 |" in table
