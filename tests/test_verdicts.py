"""The report's verdicts follow from the numbers: the same claim flips when the data flips, and overlapping
intervals, or fewer than three seeds per cell (no interval that counts), never count as a finding."""

import math

import pandas as pd
import pytest

from aad1lib.report import verdicts as V
from aad1lib.study.results import cell_stats, mean_ci

MR, DRIFT, GRID, IQ = (
    "Motion Ratio (DIS)",
    "Drift (SharpNoise)",
    "Grid Artefacts (blockiness /4px)",
    "Imaging Quality (SharpNoise)",
)  # noqa: E501


def rows(labels: dict, **metrics):
    """One finished child per seed: ``metrics`` name -> per-seed values."""
    seeds = len(next(iter(metrics.values())))
    out = []
    for i in range(seeds):
        row = dict(labels, seed=i, child=f"c{len(labels)}-{i}", state="done", diverged=False, error=None, run="r")
        row.update({name: values[i] for name, values in metrics.items()})
        out.append(row)
    return out


def sweep(lam_metrics: dict[float, dict]) -> pd.DataFrame:
    return pd.DataFrame([r for lam, m in lam_metrics.items() for r in rows({"λ": lam, "σ": 0.01}, **m)])


MOVING = dict(**{MR: [0.98, 1.02, 1.0], DRIFT: [0.05, 0.06, 0.055], GRID: [1.02, 1.03, 1.01], IQ: [0.5, 0.51, 0.52]})
STATIC = dict(**{MR: [0.1, 0.12, 0.08], DRIFT: [0.01, 0.01, 0.01], GRID: [1.0, 1.0, 1.0], IQ: [0.6, 0.6, 0.6]})


def test_mean_ci_is_student_t():
    mean, half, n = mean_ci([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_ci([2.0])[1]) and mean_ci([])[2] == 0


def test_lambda_zero_verdict_changes_with_the_data():
    collapsed = sweep({0.0: STATIC, 20.0: MOVING})
    assert V.lambda_zero_collapses(collapsed).outcome == "reproduced"
    stable = sweep({0.0: MOVING, 20.0: MOVING})
    assert V.lambda_zero_collapses(stable).outcome == "not reproduced"
    diverged = sweep({0.0: MOVING, 20.0: MOVING})
    diverged.loc[diverged["λ"] == 0.0, ["state", "diverged"]] = ["failed", True]
    assert V.lambda_zero_collapses(diverged).outcome == "reproduced"
    assert V.lambda_zero_collapses(None).outcome == "not run"


def test_grid_artefact_verdict_needs_separated_intervals():
    gridded = dict(MOVING, **{GRID: [1.5, 1.6, 1.55]})
    assert V.lambda_large_grid_artefacts(sweep({20.0: MOVING, 50.0: gridded})).outcome == "reproduced"
    assert V.lambda_large_grid_artefacts(sweep({20.0: gridded, 50.0: MOVING})).outcome == "not reproduced"
    noisy = dict(MOVING, **{GRID: [1.0, 1.1, 1.05]})
    assert V.lambda_large_grid_artefacts(sweep({20.0: MOVING, 50.0: noisy})).outcome == "inconclusive"


def test_lambda_twenty_best_by_rank_and_separation():
    worse = dict(**{MR: [0.7, 0.72, 0.71], DRIFT: [0.2, 0.21, 0.22], GRID: [1.3, 1.31, 1.29], IQ: [0.4, 0.41, 0.4]})
    best = V.lambda_twenty_best(sweep({0.0: STATIC, 5.0: worse, 20.0: MOVING, 50.0: worse}))
    assert best.outcome == "reproduced", best.evidence
    assert V.lambda_twenty_best(sweep({5.0: MOVING, 20.0: worse})).outcome == "not reproduced"
    assert V.lambda_twenty_best(sweep({5.0: MOVING, 20.0: MOVING})).outcome == "inconclusive"


def ablation(cells: dict[tuple[str, str], dict]) -> pd.DataFrame:
    return pd.DataFrame([r for (a, lg), m in cells.items() for r in rows({"D attention": a, "D logit": lg}, **m)])


def test_causal_frame_collapse_verdict_changes_with_the_data():
    others = {("bidirectional", "video"): MOVING, ("bidirectional", "frame"): MOVING, ("causal", "video"): MOVING}
    assert V.causal_frame_collapses(ablation({**others, ("causal", "frame"): STATIC})).outcome == "reproduced"
    assert V.causal_frame_collapses(ablation({**others, ("causal", "frame"): MOVING})).outcome == "not reproduced"
    first_seed = {k: {n: v[:1] for n, v in m.items()} for k, m in {**others, ("causal", "frame"): MOVING}.items()}
    one_seed = V.causal_frame_collapses(ablation(first_seed))
    assert one_seed.outcome == "one seed"  # a single seed shows motion, but no interval: no verdict
    assert "point against the claim" in one_seed.evidence
    borderline = dict(MOVING, **{MR: [0.2, 0.9, 0.5]})  # the interval straddles the threshold
    assert V.causal_frame_collapses(ablation({**others, ("causal", "frame"): borderline})).outcome == "inconclusive"


def test_least_drift_verdict():
    drifty = dict(MOVING, **{DRIFT: [0.3, 0.31, 0.32]})
    cells = {("bidirectional", "frame"): drifty, ("causal", "video"): drifty, ("causal", "frame"): drifty}
    assert V.bidirectional_video_drifts_least(ablation({("bidirectional", "video"): MOVING, **cells})).outcome == (
        "reproduced"
    )
    assert V.bidirectional_video_drifts_least(ablation({("bidirectional", "video"): drifty, **{
        k: MOVING for k in cells}})).outcome == "not reproduced"  # fmt: skip
    same = {k: MOVING for k in cells}
    assert V.bidirectional_video_drifts_least(ablation({("bidirectional", "video"): MOVING, **same})).outcome == (
        "inconclusive"
    )


def warmup(cold: dict, warm: dict = MOVING) -> pd.DataFrame:
    return pd.DataFrame(rows({"init": V.COLD}, **cold) + rows({"init": V.WARM}, **warm))


def test_warmup_verdicts_change_with_the_data():
    degraded = dict(MOVING, **{DRIFT: [0.3, 0.32, 0.31], "G grad-norm std": [2.0, 2.2, 2.1]})
    steady = dict(MOVING, **{"G grad-norm std": [0.1, 0.11, 0.12]})
    assert V.warmup_quality(warmup(degraded, steady)).outcome == "reproduced"
    assert V.warmup_stability(warmup(degraded, steady)).outcome == "reproduced"
    assert V.warmup_quality(warmup(steady, degraded)).outcome == "not reproduced"
    assert V.warmup_stability(warmup(steady, degraded)).outcome == "not reproduced"
    assert V.warmup_quality(warmup(steady, steady)).outcome == "inconclusive"


def test_warmup_verdicts_say_why_when_stage2_kept_its_stage1_weights():
    """Only the warm cell (designs.warmup_ablation skips the cold one when Stage II kept step 0): inconclusive,
    with that reason; no cell at all: not run."""
    warm_only = warmup(MOVING)[lambda f: f["init"] == V.WARM]
    for verdict in (V.warmup_quality(warm_only), V.warmup_stability(warm_only)):
        assert verdict.outcome == "inconclusive" and "kept its Stage I weights" in verdict.evidence
    assert V.warmup_quality(warmup(MOVING)[lambda f: f["init"] == V.COLD]).outcome == "not run"
    assert V.warmup_stability(None).outcome == "not run"


def _summary(stage, steps, method, drift, ratio):
    return dict(stage=stage, steps_per_chunk=steps, method=method, drift=dict(applicable=True, value=drift),
                metrics={"Motion Ratio (DIS)": ratio})  # fmt: skip


def _speed(t1, t4, short=(10.0, 15.0)):
    """Steady state at 4× the training length; the 1× rows (overhead-dominated) must not decide."""
    rows = []
    for length, (one, four) in ((1, short), (4, (t1, t4))):
        row = dict(kind="causal", skipped=None, length=length)
        rows += [dict(row, nfe_per_chunk=1, per_chunk_ms=one), dict(row, nfe_per_chunk=4, per_chunk_ms=four)]
    return {"rows": rows}


def test_main_table_verdicts_say_one_seed_and_lean_with_the_summaries():
    """One training run per main-table row and one speed benchmark: never "reproduced" (the old rule called the
    drift and speed comparisons reproduced from one seed), but the evidence leans with the numbers."""
    base = [_summary("stage2", 4, "SF", 0.10, 0.8), _summary("stage2", 1, "II", 0.06, 0.9)]
    good = V.main_table_verdicts([*base, _summary("stage3", 1, "III", 0.05, 0.97)], _speed(10.0, 25.0))
    assert [v.outcome for v in good] == ["one seed", "one seed", "one measurement"]
    assert all("point the claim's way" in v.evidence for v in good[:2]) and "2.50× at 4×" in good[2].evidence
    assert " within 15 %" in good[2].evidence
    bad = V.main_table_verdicts([*base, _summary("stage3", 1, "III", 0.2, 0.5)], _speed(10.0, 12.0))
    assert [v.outcome for v in bad] == ["one seed", "one seed", "one measurement"]
    assert all("point against the claim" in v.evidence for v in bad[:2]) and "not within 15 %" in bad[2].evidence


def test_baseline_drift_verdict_is_decided_from_the_main_table_rows_over_seeds():
    """With >= 3 seeds per trained row, "AAD-1 drifts less than the 4-step baselines" is judged on the intervals
    and flips with them; two seeds never decide."""
    summaries = [_summary("stage2", 4, "SF", 0.10, 0.8), _summary("stage2", 4, "CV", 0.11, 0.8),
                 _summary("stage3", 1, "III", 0.05, 0.97)]  # fmt: skip

    def seeds(ours: list[float]) -> pd.DataFrame:
        return pd.DataFrame(rows({"method": "SF"}, **{DRIFT: [0.10, 0.11, 0.105]})
                            + rows({"method": "CV"}, **{DRIFT: [0.11, 0.12, 0.115]})
                            + rows({"method": "III"}, **{DRIFT: ours}))  # fmt: skip

    less = V.main_table_verdicts(summaries, None, None, seeds([0.05, 0.06, 0.055]))[0]
    assert less.outcome == "reproduced" and "Drift ↓ over seeds: III 0.055 ± " in less.evidence
    assert V.main_table_verdicts(summaries, None, None, seeds([0.2, 0.21, 0.205]))[0].outcome == "not reproduced"
    assert V.main_table_verdicts(summaries, None, None, seeds([0.05, 0.2, 0.1]))[0].outcome == "inconclusive"
    two = V.main_table_verdicts(summaries, None, None, first(seeds([0.05, 0.06, 0.055]), 2))[0]
    assert two.outcome == "2 seeds: inconclusive" and "point the claim's way" in two.evidence


def test_stage3_vs_warm_start_is_decided_from_the_warm_up_study_seeds():
    """Stage II is one given run; with >= 3 Stage III seeds from it the claim is judged on their intervals (and
    flips with them), with fewer it falls back to the main run: one seed."""
    stage2, stage3 = _summary("stage2", 1, "II", 0.10, 0.5), _summary("stage3", 1, "III", 0.05, 0.9)
    better = pd.DataFrame(rows({"init": V.WARM}, **{MR: [0.9, 0.95, 0.92], DRIFT: [0.05, 0.06, 0.055]}))
    worse = pd.DataFrame(rows({"init": V.WARM}, **{MR: [0.3, 0.35, 0.32], DRIFT: [0.2, 0.21, 0.19]}))
    mixed = pd.DataFrame(rows({"init": V.WARM}, **{MR: [0.9, 0.95, 0.92], DRIFT: [0.05, 0.3, 0.1]}))
    assert V.stage3_improves_on_warm_start(stage2, stage3, better).outcome == "reproduced"
    assert V.stage3_improves_on_warm_start(stage2, stage3, worse).outcome == "not reproduced"
    assert V.stage3_improves_on_warm_start(stage2, stage3, mixed).outcome == "inconclusive"
    assert V.stage3_improves_on_warm_start(stage2, stage3, better.iloc[:2]).outcome == "one seed"
    assert "over 3 seeds" in V.stage3_improves_on_warm_start(stage2, stage3, better).evidence


def first(frame: pd.DataFrame, seeds: int) -> pd.DataFrame:
    return frame[frame["seed"] < seeds]


def test_two_seeds_never_decide_even_with_disjoint_intervals():
    """Two seeds give a (wide) t interval; the old rule decided from it, the new one needs three."""
    gridded = dict(MOVING, **{GRID: [1.5, 1.51, 1.55]})
    two = first(sweep({20.0: MOVING, 50.0: gridded}), 2)
    assert V.compare(mean_ci([1.5, 1.51]), mean_ci([1.02, 1.03]), lower_is_better=True) == "unknown"
    grid = V.lambda_large_grid_artefacts(two)
    assert grid.outcome == "2 seeds: inconclusive" and "point the claim's way" in grid.evidence
    assert V.lambda_large_grid_artefacts(sweep({20.0: MOVING, 50.0: gridded})).outcome == "reproduced"  # 3 seeds
    assert V.lambda_zero_collapses(first(sweep({0.0: STATIC, 20.0: MOVING}), 2)).outcome == "2 seeds: inconclusive"
    others = {("bidirectional", "video"): MOVING, ("bidirectional", "frame"): MOVING, ("causal", "video"): MOVING}
    collapse = first(ablation({**others, ("causal", "frame"): STATIC}), 2)
    assert V.causal_frame_collapses(collapse).outcome == "2 seeds: inconclusive"
    drifty = dict(MOVING, **{DRIFT: [0.3, 0.31, 0.32]})
    least = first(ablation({("bidirectional", "video"): MOVING, **{k: drifty for k in list(others)[1:]},
                            ("causal", "frame"): drifty}), 2)  # fmt: skip
    assert V.bidirectional_video_drifts_least(least).outcome == "2 seeds: inconclusive"
    degraded = dict(MOVING, **{DRIFT: [0.3, 0.32, 0.31], "G grad-norm std": [2.0, 2.2, 2.1]})
    steady = dict(MOVING, **{"G grad-norm std": [0.1, 0.11, 0.12]})
    assert V.warmup_quality(first(warmup(degraded, steady), 2)).outcome == "2 seeds: inconclusive"
    assert V.warmup_stability(first(warmup(degraded, steady), 2)).outcome == "2 seeds: inconclusive"
    worse = dict(**{MR: [0.7, 0.72, 0.71], DRIFT: [0.2, 0.21, 0.22], GRID: [1.3, 1.31, 1.29], IQ: [0.4, 0.41, 0.4]})
    best = first(sweep({0.0: STATIC, 5.0: worse, 20.0: MOVING, 50.0: worse}), 2)
    assert V.lambda_twenty_best(best).outcome == "2 seeds: inconclusive"


def test_decide_needs_min_seeds():
    assert V.MIN_SEEDS == 3
    assert V.decide(True, False, seeds=1) == "one seed"
    assert V.decide(False, True, seeds=2) == "2 seeds: inconclusive"
    assert V.decide(True, False, seeds=3) == "reproduced" and V.decide(False, True, seeds=3) == "not reproduced"


def test_verdict_row_is_one_table_line_with_escaped_pipes():
    row = V.Verdict("λ = 20 is best.", "one seed", "Mean rank over |1 − motion ratio|\nand more.").row()
    assert row == "| λ = 20 is best. | **one seed** | Mean rank over \\|1 − motion ratio\\| and more. |"


def test_cell_stats_counts_failures_and_keeps_run_names():
    frame = sweep({0.0: MOVING})
    frame.loc[0, "state"] = "failed"
    stats = cell_stats(frame, ["λ"], [MR])
    assert stats.loc[0, "n"] == 2 and stats.loc[0, "failed"] == 1 and len(stats.loc[0, "runs"]) == 3
    assert stats.loc[0, MR] == pytest.approx(1.01)
