"""Report pieces that nbval does not check by value: the sample GIF's layout, the study table's cells, and a whole
report rendered from fake run files (the page's order, inlined figures, the status block's sources, figure layout)."""

import base64
import json
import math
import re
from pathlib import Path

import imageio.v3 as iio
import pandas as pd
import pytest
import torch

from aad1lib.report import verdicts as V
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


# ---- a whole report from fake run files: the page's order, its numbers' sources, the figures' layout ------------
METRICS = (
    "I2V Subject (HOG)",
    "I2V Background (ColorHist)",
    "Imaging Quality (SharpNoise)",
    "Grid Artefacts (blockiness /4px)",
    "Motion Ratio (DIS)",
)
DATA_CLIPS = {
    "I2V Subject (HOG)": [0.94, 0.95, 0.96],
    "I2V Background (ColorHist)": [0.98, 0.99, 0.985],
    "Imaging Quality (SharpNoise)": [0.52, 0.53, 0.525],
    "Grid Artefacts (blockiness /4px)": [1.0, 1.02, 1.01],
    "Motion Ratio (DIS)": [1.0, 1.05, 1.02],
}
D_LOSS = [1.37, 1.38, 1.385, 1.39, 1.384, 1.386]  # Stage III's metrics.jsonl: the status reads its last half


def _summary(tmp, stage, method, kind, steps, shift, drift):
    from aad1lib.eval.tables import table_row

    run = tmp / f"{stage}-{method.split()[0].lower()}"
    run.mkdir(parents=True, exist_ok=True)
    per_clip = {k: [v + shift for v in values] for k, values in DATA_CLIPS.items()}
    summary = dict(
        run=run.name,
        run_path=str(run),
        stage=stage,
        method=method,
        kind=kind,
        steps_per_chunk=steps,
        metrics={k: sum(v) / len(v) for k, v in per_clip.items()},
        per_clip=per_clip,
        seed=0,
        nfe=dict(nfe_per_chunk=steps, nfe_per_clip=steps and 4 * steps, passes_per_chunk=steps and steps + 1),
        drift=dict(applicable=kind == "causal", name="Drift (SharpNoise)", value=drift),
        num_clips=3,
        long_video_factor=4,
        backbones={},
    )
    summary["row"] = table_row(summary)
    return summary


def _speed():
    from dataclasses import asdict

    from aad1lib.eval.speed import SpeedRow

    rows = []
    for name, nfe, per_chunk in (("Self-Forcing-style (4-step)", 4, 40.0), ("AAD-1 (Stage III)", 1, 17.0)):
        rows.append(
            asdict(
                SpeedRow(
                    name,
                    "causal",
                    "float32",
                    "native",
                    16,
                    128,
                    64,
                    nfe,
                    nfe + 1,
                    64 * (nfe + 1),
                    20.0,
                    per_chunk,
                    50.0,
                    per_chunk / 17.0,
                    (nfe + 1) / 2,
                    1.0,
                    8.0,
                    1.25,
                )
            )
        )
    return dict(
        device_name="CPU (2 cores)",
        torch="2.x",
        batch=1,
        repeats=2,
        training_chunks=4,
        frames_per_chunk=2,
        tokens_per_frame=64,
        teacher_steps=24,
        guidance_scale=3.0,
        memory_method="RSS",
        rows=rows,
        reference="AAD-1 (Stage III)",
    )


def _study(labels: list[dict], seeds: int = 2) -> pd.DataFrame:
    rows = []
    for i, label in enumerate(labels):
        for seed in range(seeds):
            rows.append(
                dict(
                    label,
                    seed=seed,
                    child=f"c{i}-{seed}",
                    state="done",
                    diverged=False,
                    error=None,
                    run="r",
                    **{
                        "Motion Ratio (DIS)": 1.0 + 0.05 * seed,
                        "Drift (SharpNoise)": 0.08 + 0.01 * i,
                        "Grid Artefacts (blockiness /4px)": 1.8,
                        "Imaging Quality (SharpNoise)": 0.52,
                        "D gap (last half)": 0.001 * (i - seed),
                        "G grad-norm std": 0.1,
                    },
                )
            )
    return pd.DataFrame(rows)


def fake_inputs(tmp):
    from aad1lib.report.render import ReportInputs

    summaries = [
        _summary(tmp, "teacher", "Teacher (24 steps × CFG)", "teacher", None, -0.25, None),
        _summary(tmp, "stage2", "CausVid-style (4-step)", "causal", 4, -0.1, 0.17),
        _summary(tmp, "stage2", "Self-Forcing-style (4-step)", "causal", 4, -0.1, 0.16),
        _summary(tmp, "stage2", "AAD-1 Stage II (DMD, 1-step)", "causal", 1, -0.15, 0.1),
        _summary(tmp, "stage3", "AAD-1 (Stage III)", "causal", 1, -0.2, 0.06),
    ]
    summaries[0]["per_clip"]["Grid Artefacts (blockiness /4px)"] = [2.1, 2.2, 2.3]  # far from the data's range
    summaries[0]["metrics"]["Grid Artefacts (blockiness /4px)"] = 2.2
    summaries[-1]["per_clip"]["Motion Ratio (DIS)"] = [1.01, 1.02, 1.03]  # within it
    summaries[-1]["metrics"]["Motion Ratio (DIS)"] = 1.02
    (Path(summaries[-1]["run_path"]) / "metrics.jsonl").write_text(
        "".join(
            json.dumps(dict(step=i, d_loss=d, d_real=0.01, d_fake=0.008, g_loss=0.69, g_grad_norm=0.02)) + "\n"
            for i, d in enumerate(D_LOSS)
        )
    )
    meta = dict(init_from=str(tmp / "stage2-demo"), steps=40, seeds=[0, 1])
    ablation = _study(
        [{"D attention": a, "D logit": lg} for a in ("bidirectional", "causal") for lg in ("video", "frame")]
    )
    sweep = _study([{"λ": lam, "σ": 0.01} for lam in (0.0, 5.0, 20.0, 50.0)])
    warmup = _study([{"init": "Stage II (DMD warm-up)"}, {"init": "Stage I (no warm-up)"}])
    return ReportInputs(
        "tiny",
        summaries,
        ["latest:stage2?rollout=self (no run)"],
        _speed(),
        "stage3-aad-1",
        studies=dict(discriminator_ablation=ablation, lambda_sweep=sweep, warmup_ablation=warmup),
        study_meta=dict(discriminator_ablation=meta, lambda_sweep=meta, warmup_ablation=meta),
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from aad1lib.report.render import compose_report

    tmp = tmp_path_factory.mktemp("report")
    inputs = fake_inputs(tmp / "runs")
    from aad1lib.eval.tables import table_row

    reference = dict(
        method="Data (held-out clips)",
        metrics={k: sum(v) / len(v) for k, v in DATA_CLIPS.items()},
        per_clip=DATA_CLIPS,
        drift=dict(applicable=False, name="Drift (SharpNoise)", value=None),
    )
    reference["row"] = table_row(reference)
    gen = torch.Generator().manual_seed(0)
    clips = {"Data": torch.rand(2, 3, 9, 16, 16, generator=gen) * 2 - 1}
    clips.update({s["method"]: torch.rand(2, 3, 9, 16, 16, generator=gen) * 2 - 1 for s in inputs.summaries})
    report = compose_report(inputs, reference, clips)
    report.write(tmp / "out")
    return report, tmp / "out"


def test_page_opens_with_the_title_then_status_then_verdict_table(written):
    report, out = written
    page = (out / "index.html").read_text()
    body = page[page.index("<body>") + len("<body>") :].lstrip()
    assert body.startswith("<h1>AAD-1 at the <code>tiny</code> preset")  # nothing of a notebook before the title
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[:3] == ["Status: what this run can and cannot show", "Verdicts", "Provenance"]
    for residue in ("TqdmWarning", "{'preset'", "written:", "papermill notebooks/07", "stderr"):
        assert residue not in page.split("<h2>Provenance")[0]
    verdict_rows = page.split("<h2>Verdicts</h2>")[1].split("</table>")[0].count("<tr>") - 1  # minus the header
    assert verdict_rows == len(report.verdicts)
    assert "|1 − motion ratio|" in page  # an escaped pipe stays inside its cell


def test_page_inlines_every_figure_and_the_gif(written):
    _, out = written
    page = (out / "index.html").read_text()
    assert 'src="figures/' not in page
    assert page.count("data:image/png;base64,") == 3 and page.count("data:image/gif;base64,") == 1
    gif = page.split("data:image/gif;base64,")[1].split('"')[0]
    assert base64.b64decode(gif) == (out / "figures" / "samples.gif").read_bytes()


def test_status_numbers_come_from_the_run_files(written):
    report, _ = written
    status = report.sections["status"]
    half = D_LOSS[len(D_LOSS) // 2 :]
    assert f"d_loss {sum(half) / len(half):.3f} vs {2 * math.log(2):.3f}" in status  # Stage III's metrics.jsonl
    assert f"last {len(half)} of {len(D_LOSS)} discriminator updates" in status
    assert "discriminator ablation: 2 finished seeds in each of 4 cells" in status
    assert "0 of 10 verdicts can be decided" in status  # 2 seeds per cell, one seed per main run
    assert "5 of 6 main-table runs evaluated" in status
    assert "| 2.200 (3/3) |" in status  # the teacher's blockiness: every clip outside the data's range
    assert "do not resemble the data" in status
    assert "range on 5 of 5 metrics for Teacher (24 steps × CFG), 4 of 5 metrics for AAD-1" in status
    assert "2.35× at 16× the training length, 94 % of the 2.50×" in status  # speed.json: 40 / 17 vs 5 / 2


def test_main_table_comparisons_say_one_seed(written):
    report, _ = written
    outcomes = {v.claim.split()[0]: v.outcome for v in report.verdicts[:3]}
    assert list(outcomes.values()) == ["one seed", "one seed", "one measurement"]
    assert not {v.outcome for v in report.verdicts} & {"reproduced", "not reproduced"}  # 2 seeds per study cell


def _drawn(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_ablation_legend_lies_outside_every_axes(written):
    report, _ = written
    fig = report.figures["discriminator_ablation.png"]
    renderer = _drawn(fig)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert not any(_overlap(box, ax.get_window_extent(renderer)) for ax in fig.axes)
    assert not any(ax.get_legend() for ax in fig.axes)


def test_sample_strips_title_clears_the_rows_and_labels_fit(written):
    report, _ = written
    fig = report.figures["samples.png"]
    renderer = _drawn(fig)
    title = fig._suptitle.get_window_extent(renderer)
    assert title.y0 >= fig.axes[0].get_window_extent(renderer).y1  # above the first row, not over it
    for ax in fig.axes:
        label = ax.yaxis.label.get_window_extent(renderer)
        assert label.x0 >= 0, ax.yaxis.label.get_text()  # the whole row label is inside the figure


def test_status_says_whether_the_teacher_beats_copying_the_first_frame(tmp_path):
    """The status block reads the fidelity.json next to a pretrained teacher's checkpoint (what the teacher run
    loaded) and says, with its numbers, that the teacher stays below the copy baseline at 2 of 3 frames."""
    from aad1lib.report.render import ReportInputs, teacher_status

    checkpoint, run = tmp_path / "checkpoint", tmp_path / "teacher-demo"
    checkpoint.mkdir(), run.mkdir()
    (run / "finished.json").write_text(json.dumps({"teacher": str(checkpoint)}))
    result = dict(psnr_teacher=[25.0, 21.5, 20.0], psnr_copy=[27.0, 21.0, 20.5], psnr_teacher_mean=22.17,
                  psnr_copy_mean=22.83, frame_change_ratio=0.95, beats_copy_every_frame=False)  # fmt: skip
    (checkpoint / "fidelity.json").write_text(json.dumps({"clips": 16, "cfg1": dict(result, guidance_scale=1.0),
                                                          "cfg3": dict(result, guidance_scale=3.0)}))  # fmt: skip
    inputs = ReportInputs("demo", [{"kind": "teacher", "run_path": str(run)}], [], None)
    text = teacher_status(inputs)  # no config.yaml in the run: the largest CFG scale measured
    assert "CFG 3" in text and "22.17 dB vs 22.83 dB" in text and "at or below it at 2 of 3" in text
    assert "does not beat copying" in text and "0.95 ×" in text
    # with the run's config, the result of its own sampler (CFG 1, 8 steps), not another step count or scale
    better = dict(result, psnr_teacher=[27.5, 22.0, 21.0], psnr_teacher_mean=23.5, beats_copy_every_frame=True)
    (checkpoint / "fidelity.json").write_text(json.dumps({
        "clips": 16, "cfg1": dict(result, guidance_scale=1.0, steps=24, sampler="euler"),
        "cfg1-8steps": dict(better, guidance_scale=1.0, steps=8, sampler="euler"),
        "cfg3": dict(result, guidance_scale=3.0, steps=8, sampler="euler")}))  # fmt: skip
    (run / "config.yaml").write_text("sampling: {guidance_scale: 1.0, teacher_steps: 8}\n")
    text = teacher_status(inputs)
    assert (
        "CFG 1, 8 euler steps" in text
        and "23.50 dB vs 22.83 dB" in text
        and "above it at all 3 generated frames" in text
    )
    assert "Not measured" in teacher_status(ReportInputs("demo", [], [], None))


def test_status_says_when_stage2_kept_its_first_step_and_the_warm_up_ablation_compares_equal_weights(tmp_path):
    """Early stopping that keeps Stage II's step 0 makes the warm start the Stage I model: the status block must
    say so (the warm-up ablation then has no Stage-I cell to train; a 4-step baseline at step 0 is
    Stage I sampled with 4 steps); a later best step must not."""
    from aad1lib.report.render import ReportInputs, warm_start_status

    summaries, info = [], dict(best_step=0, best_val=0.0036, initial_val=0.0036)
    for name, steps in (("stage2-demo-sf4", 4), ("stage2-demo", 1)):
        run = tmp_path / name
        run.mkdir()
        (run / "finished.json").write_text(json.dumps(info))
        summaries.append({"stage": "stage2", "steps_per_chunk": steps, "run": name, "run_path": str(run)})
    inputs = ReportInputs("demo", summaries, [], None)
    text = warm_start_status(inputs)
    assert "`stage2-demo` kept step 0" in text and "no run without the warm-up" in text
    assert "sampled with 4 steps" in text
    (tmp_path / "stage2-demo" / "finished.json").write_text(json.dumps(dict(info, best_step=15, best_val=0.003)))
    text = warm_start_status(inputs)
    assert "`stage2-demo` kept step 15" in text and "same weights" not in text and "1 of 2 runs" in text
    last = dict(info, keep="last", kept_step=30, final_val=0.012)  # fixed length: best_step 0 is not what it hands on
    (tmp_path / "stage2-demo" / "finished.json").write_text(json.dumps(last))
    text = warm_start_status(inputs)
    assert "`stage2-demo` kept its last step 30" in text and "0.01200 there" in text and "1 of 2 runs" in text
    assert "No finished Stage II" in warm_start_status(ReportInputs("demo", [], [], None))


def test_status_paths_are_relative_to_the_repository_and_a_speedup_above_the_pass_limit_is_flagged(tmp_path):
    """A committed report names files inside the repository relative to its root, not this machine's paths; a
    measured 1-NFE speed-up beyond what the pass counts allow is called timing noise, not a result."""
    from aad1lib.paths import ROOT
    from aad1lib.report.render import ReportInputs, _shown_path, speed_status

    assert str(_shown_path(ROOT / "experiments" / "checkpoints" / "x.json")) == "experiments/checkpoints/x.json"
    assert _shown_path(tmp_path / "x.json") == tmp_path / "x.json"
    rows = [dict(kind="causal", skipped=None, length=16, nfe_per_chunk=n, per_chunk_ms=ms, pass_ratio_to_student=r)
            for n, ms, r in ((1, 10.0, 1.0), (4, 30.0, 2.5))]  # fmt: skip
    fast = speed_status(ReportInputs("demo", [], [], {"rows": rows, "repeats": 2}))
    assert "3.00×" in fast and "Above what the pass count allows" in fast
    rows[1]["per_chunk_ms"] = 24.0
    assert "Above" not in speed_status(ReportInputs("demo", [], [], {"rows": rows, "repeats": 2}))


def test_report_plots_the_main_stage3_runs_heldout_discriminator_accuracy(tmp_path):
    """The held-out D evaluations of the main Stage III run (metrics.jsonl) become a figure and a section: the
    plotted pair accuracies are the logged ones, and the step G started at is marked."""
    from aad1lib.report.render import compose_report

    inputs = fake_inputs(tmp_path)
    run = Path(inputs.summaries[-1]["run_path"])
    evals = [dict(step=s, d_acc=0.5 + s / 100, d_pair_acc=a, d_gap_heldout=a - 0.5) for s, a in ((0, 0.6), (10, 0.95))]
    with (run / "metrics.jsonl").open("a") as f:
        f.writelines(json.dumps(e) + "\n" for e in evals)
    (run / "finished.json").write_text(json.dumps({"d_warmup_end_step": 10}))
    report = compose_report(inputs)
    figure = report.figures["stage3_discriminator.png"]
    pair = figure.axes[0].lines[0]
    assert list(pair.get_xdata()) == [0, 10] and list(pair.get_ydata()) == [0.6, 0.95]
    assert any(list(line.get_xdata()) == [10, 10] for line in figure.axes[0].lines)  # G starts
    assert "figures/stage3_discriminator.png" in report.markdown and "every 10 steps" in report.markdown


def test_adversarial_status_judges_the_discriminator_by_its_heldout_pair_accuracy(tmp_path):
    """A d_loss within 5 % of 2 ln 2 reads as chance only when no held-out evaluation says otherwise: with pair
    accuracy >= 0.9 at most evaluations after the first the status says D separates real from generated clips; with
    pair accuracy at chance it keeps the warning; in between (mean >= 0.7) it says D separates part of the time."""
    from aad1lib.report.render import adversarial_status

    inputs = fake_inputs(tmp_path)
    run = Path(inputs.summaries[-1]["run_path"])
    base = (run / "metrics.jsonl").read_text()
    train = [dict(step=s, d_loss=1.37, d_real=0.05, d_fake=0.0) for s in range(20)]  # near 2 ln 2 = 1.386

    def status(pair_accuracies):
        evals = [dict(step=10 * i, d_acc=0.6, d_pair_acc=a) for i, a in enumerate(pair_accuracies)]
        (run / "metrics.jsonl").write_text(base + "".join(json.dumps(r) + "\n" for r in train + evals))
        return adversarial_status(inputs)

    learned = status([0.69, 1.0, 1.0, 0.81, 0.94])
    assert "≥ 0.9 at 3 of the 4 after step 0" in learned and "separates held-out real clips" in learned
    assert "barely separates" not in learned
    chance = status([0.5, 0.56, 0.5, 0.62, 0.44])
    assert "≥ 0.9 at 0 of the 4" in chance and "barely separates" in chance and "separates held-out" not in chance
    partial = status([0.62, 1.0, 0.75, 0.56, 0.81])  # mean 0.78 after step 0, >= 0.9 at 1 of 4
    assert "≥ 0.9 at 1 of the 4" in partial and "Mean 0.78 after step 0" in partial and "part of the time" in partial
    assert "barely separates" not in partial


def test_studies_from_an_earlier_run_of_the_main_stage2_folder_are_flagged(tmp_path):
    """`make reproduce` rerun without `make study` reuses the Stage II folder's name: the studies' manifest records
    the finish time of the run they started from, and the report tells the two runs apart by it."""
    from aad1lib.report.render import coverage_status, started_from, warm_start_seeds

    inputs = fake_inputs(tmp_path)
    stage2 = next(s for s in inputs.summaries if s["stage"] == "stage2" and s["steps_per_chunk"] == 1)
    finished = Path(stage2["run_path"]) / "finished.json"
    finished.write_text(json.dumps(dict(stage="stage2", finished=100.0)))
    meta = dict(init_from=stage2["run_path"], init_finished=100.0, steps=40, seeds=[0, 1])
    inputs.study_meta = {name: meta for name in inputs.study_meta}
    assert started_from(meta, stage2) and warm_start_seeds(inputs) is not None
    assert "started from another Stage II run" not in coverage_status(inputs)

    finished.write_text(json.dumps(dict(stage="stage2", finished=200.0)))  # Stage II retrained under the same name
    assert not started_from(meta, stage2) and warm_start_seeds(inputs) is None
    assert "The studies discriminator_ablation, lambda_sweep, warmup_ablation started from another" in (
        coverage_status(inputs)
    )


def test_main_table_rows_over_seeds_pool_the_main_runs_with_the_seeds_study(tmp_path):
    """09's children + the main runs (their own training seed) = the trained rows over seeds: a table under the
    main one, and the baseline drift verdict from their intervals; not when 09 started from another Stage II run."""
    from aad1lib.report.render import compose_report, main_seed_rows, seed_status

    inputs = fake_inputs(tmp_path)
    stage2 = next(s for s in inputs.summaries if s["stage"] == "stage2" and s["steps_per_chunk"] == 1)
    (Path(stage2["run_path"]) / "finished.json").write_text(json.dumps(dict(stage="stage2", finished=100.0)))
    for summary in inputs.summaries:
        (Path(summary["run_path"]) / "config.yaml").write_text("seed: 0\n")
    trained = [s["method"] for s in inputs.summaries if s["stage"] != "teacher"]
    children = _study([{"method": m} for m in trained], seeds=2).assign(seed=lambda f: f["seed"] + 1)
    children["run"] = [str(tmp_path / f"child-{i}") for i in range(len(children))]
    for run in children["run"]:  # every Stage II seed kept its step 0 (the Stage I model)
        Path(run).mkdir()
        (Path(run) / "finished.json").write_text(json.dumps(dict(best_step=0)))
    inputs.studies["main_table_seeds"] = children
    inputs.study_meta["main_table_seeds"] = dict(init_from=stage2["run_path"], init_finished=100.0, seeds=[1, 2])

    pooled = main_seed_rows(inputs)
    assert pooled.groupby("method")["seed"].apply(sorted).to_dict() == {m: [0, 1, 2] for m in trained}
    report = compose_report(inputs)
    assert "### The trained rows over seeds" in report.markdown
    drift = next(v for v in report.verdicts if v.claim.startswith("One-step AAD-1 drifts less"))
    assert drift.outcome in V.DECIDED and "over seeds" in drift.evidence
    assert "main table: one training seed per run" not in seed_status(inputs, report.verdicts)
    assert "main table seeds: 3 finished seeds in each of 4 cells" in seed_status(inputs, report.verdicts)
    assert "Stage II runs: 6 of 6 kept step 0 — every seed of those rows is the Stage I model" in report.markdown

    (Path(stage2["run_path"]) / "finished.json").write_text(json.dumps(dict(stage="stage2", finished=200.0)))
    assert main_seed_rows(inputs) is None  # Stage II retrained since: the seeds belong to another run
    assert "### The trained rows over seeds" not in compose_report(inputs).markdown
