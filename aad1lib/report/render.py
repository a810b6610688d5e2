"""Collect the runs' summary.json files and the studies' children into ``reports/``: index.md (readable on a
code host), index.html (the same markdown rendered, figures and GIF inlined: one self-contained page), figures/
(λ plot, ablation plot, sample strips, GIFs). The page opens with a status block (what the run can and cannot
show, computed from the run files) and the verdict table; every table cell names the run it came from; the
verdicts come from :mod:`.verdicts`.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..builders import build_latent_codec, load_run_model
from ..config import load_preset
from ..data import plot_strips
from ..eval.evaluate import evaluate_data
from ..eval.generate import eval_inputs, generate_latents
from ..eval.metrics import MetricSuite
from ..eval.plan import generation_plan
from ..eval.scoring import patch_grid_pixels
from ..eval.speed import format_speed_table
from ..eval.tables import format_main_table
from ..notebook import sample_rows
from ..paths import ROOT
from ..run_folder import RunFolder, git_commit
from ..runs import resolve_spec, run_summary
from ..study import designs
from ..study.children import STUDIES_ROOT, read_manifest
from ..study.results import (
    DRIFT,
    GRID,
    MOTION_RATIO,
    QUALITY,
    cell_stats,
    collect,
    column,
    markdown_cells,
    summary_metrics,
)
from . import verdicts as V

REPORTS_ROOT = ROOT / "experiments" / "reports"  # 07_report's default output (git-ignored; reports/ is committed)
STUDY_NAMES = ("discriminator_ablation", "warmup_ablation", "lambda_sweep", "main_table_seeds")
STUDY_METRICS = (MOTION_RATIO, DRIFT, GRID, QUALITY, "D gap", "G grad-norm std")
STUDY_CELLS = {"discriminator_ablation": ["D attention", "D logit"], "warmup_ablation": ["init"],
               "lambda_sweep": ["λ", "σ"], "main_table_seeds": ["method"]}  # fmt: skip
MAIN_SEED_METRICS = (DRIFT, MOTION_RATIO, GRID, "I2V Subject", QUALITY)  # the main table's rows over seeds
# the samples against the held-out clips: first-frame fidelity (VBench-I2V), image quality, blockiness, motion
FIDELITY = ("I2V Subject", "I2V Background", QUALITY, GRID, MOTION_RATIO)
CHANCE_TOLERANCE = 0.05  # a discriminator loss within 5 % of 2 ln 2 (D(real) = D(fake)) counts as chance level
LEARNED_PAIR_ACCURACY = 0.9  # held-out pair accuracy at which D counts as separating real from generated (#13)
PARTIAL_PAIR_ACCURACY = 0.7  # mean held-out pair accuracy above which D separates part of the time (chance: 0.5)


@dataclass
class ReportInputs:
    preset: str
    summaries: list[dict]  # the main table's runs, in order
    missing_runs: list[str]
    speed: dict | None
    speed_run: str | None = None  # the run folder whose speed.json it is
    studies: dict[str, pd.DataFrame] = field(default_factory=dict)  # study -> one row per child
    study_meta: dict[str, dict] = field(default_factory=dict)


# the main table's rows when no run folders are given: teacher, CausVid-style, Self-Forcing-style, AAD-1 II, III
DEFAULT_MAIN_RUNS = [
    "latest:teacher", "latest:stage2?rollout=teacher_forced", "latest:stage2?student_steps=4&rollout=self",
    "latest:stage2?student_steps=1", "latest:stage3",
]  # fmt: skip


def load_inputs(preset: str, main_runs: list[str], studies_root: Path | None = None) -> ReportInputs:
    """The main runs' summary.json (run folders or ``latest:`` specs; one that resolves to no evaluated run is
    listed as missing), the last causal run's speed.json, and every study manifest of ``preset``."""
    summaries, missing = [], []
    for spec in main_runs:
        try:
            path = resolve_spec(spec, preset).path / "summary.json"
        except (FileNotFoundError, ValueError) as error:
            missing.append(f"{spec} ({error})")
            continue
        if path.exists():
            summaries.append(json.loads(path.read_text()))
        else:
            missing.append(f"{spec} (not evaluated: run 06_evaluate on it)")
    speed, speed_run = None, None
    for summary in reversed(summaries):
        path = Path(summary["run_path"]) / "speed.json"
        if summary["kind"] == "causal" and path.exists():
            speed, speed_run = json.loads(path.read_text()), summary["run"]
            break
    inputs = ReportInputs(preset, summaries, missing, speed, speed_run)
    root = Path(studies_root or STUDIES_ROOT)
    for name in STUDY_NAMES:
        manifest = root / f"{name}-{preset}.json"
        if manifest.exists():
            meta, children = read_manifest(manifest)
            inputs.studies[name], inputs.study_meta[name] = collect(children), meta
    return inputs


def all_verdicts(inputs: ReportInputs) -> list[V.Verdict]:
    ablation, sweep = inputs.studies.get("discriminator_ablation"), inputs.studies.get("lambda_sweep")
    warmup = inputs.studies.get("warmup_ablation")
    seeds = main_seed_rows(inputs)
    stage3_seeds = warm_start_seeds(inputs)  # Stage III seeds from the main Stage II run: the preset's steps first
    if seeds is not None and (seeds["method"] == designs.MAIN_STAGE3_ROW).sum() >= V.MIN_SEEDS:
        stage3_seeds = seeds[seeds["method"] == designs.MAIN_STAGE3_ROW]
    return [
        *V.main_table_verdicts(inputs.summaries, inputs.speed, stage3_seeds, seeds),
        V.causal_frame_collapses(ablation),
        V.bidirectional_video_drifts_least(ablation),
        V.lambda_zero_collapses(sweep),
        V.lambda_large_grid_artefacts(sweep),
        V.lambda_twenty_best(sweep),
        V.warmup_quality(warmup),
        V.warmup_stability(warmup),
    ]


def warm_start_seeds(inputs: ReportInputs) -> pd.DataFrame | None:
    """The warm-up study's Stage III seeds from the main table's Stage II run (None if it started elsewhere)."""
    warmup, stage2 = inputs.studies.get("warmup_ablation"), _main_stage2(inputs)
    if warmup is None or warmup.empty or stage2 is None:
        return None
    if not started_from(inputs.study_meta.get("warmup_ablation", {}), stage2):
        return None
    return warmup[warmup["init"] == V.WARM]


def main_seed_rows(inputs: ReportInputs) -> pd.DataFrame | None:
    """The main table's trained rows over seeds: its runs (their training seed) and the main-table-seeds study's
    children, one row each (columns as a study's); None unless that study started from the main Stage II run."""
    frame, stage2 = inputs.studies.get("main_table_seeds"), _main_stage2(inputs)
    if frame is None or frame.empty or stage2 is None:
        return None
    if not started_from(inputs.study_meta.get("main_table_seeds", {}), stage2):
        return None
    main = [dict(method=s["method"], seed=_training_seed(Path(s["run_path"])), child=s["run"], state="done",
                 diverged=False, run=s["run_path"], **summary_metrics(s))
            for s in inputs.summaries if s["method"] in set(frame["method"])]  # fmt: skip
    return pd.concat([pd.DataFrame(main), frame], ignore_index=True)


def _training_seed(run: Path) -> int | None:
    config = run / "config.yaml"
    return RunFolder(run).config.get("seed") if config.exists() else None


def started_from(meta: dict, summary: dict) -> bool:
    """Whether a study (its manifest ``meta``) started from the run of ``summary``: the same folder and, where the
    manifest records it, the same finish time (a rerun of ``make reproduce`` reuses the folder's name)."""
    if not meta.get("init_from") or Path(meta["init_from"]).resolve() != Path(summary["run_path"]).resolve():
        return False
    recorded = meta.get("init_finished")
    return recorded is None or recorded == run_summary(RunFolder(Path(summary["run_path"]))).get("finished")


def _main_stage2(inputs: ReportInputs) -> dict | None:
    return next((s for s in inputs.summaries if s["stage"] == "stage2" and s.get("steps_per_chunk") == 1), None)


# ---- tables ------------------------------------------------------------------------------------------------
def main_table(inputs: ReportInputs, reference: dict | None = None) -> str:
    rows = []
    for summary in inputs.summaries:
        row = dict(summary["row"])
        row["run"] = f"`{summary['run']}`"
        rows.append(dict(summary, row=row))
    if reference is not None:
        reference = dict(reference, row=dict(reference["row"], run="held-out clips"))
    return format_main_table(rows, reference)


def study_table(frame: pd.DataFrame, by: list[str], prefixes: tuple[str, ...] = STUDY_METRICS) -> str:
    metrics = [m for m in (_column(frame, p) for p in prefixes) if m]
    return markdown_cells(cell_stats(frame, by, metrics), by, metrics)


def _column(frame: pd.DataFrame, prefix: str) -> str | None:
    try:
        return column(frame, prefix)
    except KeyError:
        return None


# ---- figures -----------------------------------------------------------------------------------------------
def plot_cells(frame: pd.DataFrame, x: str, title: str, numeric_x: bool = False, hue: str | None = None):
    """Each study metric (mean ± 95 % interval over seeds) against ``x``; one panel per metric."""
    from matplotlib.figure import Figure

    metrics = [m for m in (_column(frame, p) for p in (MOTION_RATIO, DRIFT, GRID, QUALITY)) if m]
    fig = Figure(figsize=(3.2 * len(metrics), 3.4), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    groups = [(None, frame)] if hue is None else list(frame.groupby(hue, sort=False))
    for ax, metric in zip(axes, metrics, strict=True):
        for label, group in groups:
            stats = cell_stats(group, [x], [metric])
            xs = stats[x].astype(float) if numeric_x else np.arange(len(stats))
            ax.errorbar(xs, stats[metric], yerr=stats[f"{metric} ±"].fillna(0), marker="o", capsize=4,
                        label=None if label is None else f"{hue} = {label}")  # fmt: skip
            if not numeric_x:  # "bidirectional + video" -> two lines, so neighbouring labels do not overlap
                ax.set_xticks(xs, [str(v).replace(" + ", "\n+ ") for v in stats[x]], fontsize=7)
        if metric.startswith(MOTION_RATIO):
            ax.axhline(1.0, color="grey", lw=0.8, ls=":", label="true motion (ratio 1)")
            ax.axhline(V.COLLAPSE_RATIO, color="red", lw=0.8, ls="--", label="collapse threshold")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    handles = {}  # one legend for the figure, below the axes: it never covers data
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=len(handles), fontsize=7,
                   frameon=False)  # fmt: skip
    fig.suptitle(title, fontsize=10)
    return fig


def stage3_metrics(inputs: ReportInputs) -> tuple[dict | None, list[dict]]:
    """The main Stage III run's summary and its metrics.jsonl records in step order ([] without the file)."""
    ours = next((s for s in inputs.summaries if s.get("stage") == "stage3"), None)
    path = Path(ours["run_path"]) / "metrics.jsonl" if ours else None
    if path is None or not path.exists():
        return ours, []
    return ours, [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def heldout_discriminator_rows(inputs: ReportInputs) -> list[dict]:
    """The main Stage III run's held-out D evaluations (records with ``d_pair_acc``), in step order."""
    return [r for r in stage3_metrics(inputs)[1] if "d_pair_acc" in r]


def plot_heldout_discriminator(rows: list[dict], g_start: int | None = None):
    """Held-out pair / sign accuracy and D(real) − D(fake) of the main Stage III run against its steps."""
    from matplotlib.figure import Figure

    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(8.0, 3.0), layout="constrained")
    acc, gap = fig.subplots(1, 2)
    acc.plot(steps, [r["d_pair_acc"] for r in rows], marker="o", label="pair accuracy: D(real_i) > D(fake_i)")
    acc.plot(steps, [r["d_acc"] for r in rows], marker="s", label="sign accuracy")
    acc.axhline(0.5, color="grey", lw=0.8, ls=":", label="chance")
    acc.set_ylim(0.0, 1.05)
    gap.plot(steps, [r["d_gap_heldout"] for r in rows], marker="o", color="C2")
    gap.axhline(0.0, color="grey", lw=0.8, ls=":")
    for ax, name in ((acc, "held-out accuracy"), (gap, "held-out D(real) − D(fake)")):
        if g_start is not None:
            ax.axvline(g_start, color="red", lw=0.8, ls="--", label="G starts" if ax is acc else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("Stage III step")
        ax.grid(alpha=0.3)
    fig.legend(*acc.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    return fig


@torch.no_grad()
def side_by_side(preset: str, summaries: list[dict], num_clips: int = 3) -> dict[str, torch.Tensor]:
    """Every main run's clips for the same held-out first frames and noise (as in the evaluation):
    ``{"Data": [B, 3, F, H, W], method: [B, 3, F, H, W]}`` in [-1, 1]."""
    cfg = load_preset(preset)
    seed = summaries[0]["seed"] if summaries else cfg.seed
    inputs = eval_inputs(cfg, min(num_clips, cfg.data.test_clips), 0, seed)
    codec = build_latent_codec(cfg)
    clips = {"Data": inputs.batch["video"]}
    for summary in summaries:
        run = RunFolder.open(summary["run_path"])
        latents, _ = generate_latents(cfg, load_run_model(run).eval(), generation_plan(cfg, run), inputs, False)
        clips[summary["method"]] = codec.decode(latents).clamp(-1, 1).float()
    return clips


def write_gif(path: Path, clips: dict[str, torch.Tensor], fps: int, scale: int = 4) -> Path:
    """One animated GIF: rows = methods, columns = clips, upscaled ``scale``× (nearest) so 32 px stays visible."""
    import imageio.v3 as iio

    rows = []
    for video in clips.values():  # [B, 3, F, H, W] -> [F, H, B*W, 3]
        frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        rows.append(torch.cat(list(frames.permute(0, 2, 3, 4, 1)), dim=2))
    num_frames = min(r.shape[0] for r in rows)
    grid = torch.cat([r[:num_frames] for r in rows], dim=1)  # [F, rows*H, B*W, 3]
    grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, grid.numpy(), duration=1000 / fps, loop=0)
    return path


# ---- the document ------------------------------------------------------------------------------------------
def title(inputs: ReportInputs) -> str:
    return f"# AAD-1 at the `{inputs.preset}` preset: what reproduced and what did not"


def header(inputs: ReportInputs) -> str:
    seeds = sorted({s for meta in inputs.study_meta.values() for s in meta.get("seeds", [])})
    machine = (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
               + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))  # fmt: skip
    main_seeds = sorted({s.get("seed") for s in inputs.summaries})
    return "\n".join([
        "## Provenance",
        "",
        "| | |",
        "|---|---|",
        f"| preset | `{inputs.preset}` |",
        f"| evaluation noise seed (main table) | {', '.join(map(str, main_seeds)) or '–'} |",
        f"| study seeds | {', '.join(map(str, seeds)) or 'no study run yet'} |",
        f"| machine | {machine} |",
        f"| rendered | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} |",
        f"| commit | `{git_commit()}` |",
        f"| made by | `make reproduce && make study` (demo) or `papermill notebooks/07_report.ipynb out.ipynb "
        f"--cwd notebooks -p preset {inputs.preset}` |",
        "",
        "Every number below was computed from the runs named next to it (`experiments/runs/<run>/summary.json`, "
        "made by the executed notebooks in each run folder); the verdicts are computed from those numbers "
        "(`aad1lib/report/verdicts.py`), not written by hand.",
    ])  # fmt: skip


def verdict_section(verdicts: list[V.Verdict]) -> str:
    """The tally and one table row per claim: claim | verdict | evidence."""
    counts = pd.Series([v.outcome for v in verdicts]).value_counts()
    tally = "Outcomes: " + ", ".join(f"{outcome} ({n})" for outcome, n in counts.items())
    return "\n".join([
        "## Verdicts", "",
        f"{tally}. `reproduced` / `not reproduced` only from disjoint (or not) 95 % intervals over ≥ {V.MIN_SEEDS} "
        "seeds per compared cell; with fewer seeds the verdict says so and the evidence says which way the numbers "
        "lean.", "",
        "| claim | verdict | evidence |", "|---|---|---|", *[v.row() for v in verdicts],
    ])  # fmt: skip


# ---- the status block: what this run can and cannot show, from the run files ------------------------------------
def status_section(inputs: ReportInputs, verdicts: list[V.Verdict], reference: dict | None) -> str:
    """Coverage, seeds, the samples against the held-out clips, the adversarial signal and the speed measurement:
    every number from the summaries, speed.json, the Stage III run's metrics.jsonl and the studies' children."""
    lines = ["## Status: what this run can and cannot show", ""]
    lines += [f"- **Coverage.** {coverage_status(inputs)}", f"- **Seeds.** {seed_status(inputs, verdicts)}"]
    lines.append(f"- **Teacher vs copying the first frame.** {teacher_status(inputs)}")
    samples, table = data_status(inputs, reference)
    lines += [
        f"- **Samples vs data.** {samples}",
        f"- **Stage II warm start.** {warm_start_status(inputs)}",
        f"- **Adversarial signal.** {adversarial_status(inputs)}",
    ]
    if inputs.speed:
        lines.append(f"- **Speed.** {speed_status(inputs)}")
    if table:
        lines += ["", table]
    return "\n".join(lines)


def coverage_status(inputs: ReportInputs) -> str:
    text = (f"{len(inputs.summaries)} of {len(inputs.summaries) + len(inputs.missing_runs)} main-table runs "
            "evaluated")  # fmt: skip
    children = [f for f in inputs.studies.values() if not f.empty]
    if children:
        frame = pd.concat(children, ignore_index=True)
        done, failed = int((frame["state"] == "done").sum()), int((frame["state"] == "failed").sum())
        text += (f"; {len(inputs.studies)} studies, {done} of {len(frame)} study runs finished ({failed} failed, "
                 f"{int(frame['diverged'].sum())} diverged)")  # fmt: skip
    else:
        text += "; no study run"
    text += ". The pipeline runs end to end on this preset; whether it reproduces the paper is below."
    stage2 = _main_stage2(inputs)
    elsewhere = sorted(name for name, meta in inputs.study_meta.items() if stage2 and not started_from(meta, stage2))
    if elsewhere:
        text += (f" **The studies {', '.join(elsewhere)} started from another Stage II run than the main table's "
                 f"`{stage2['run']}`** (another folder, or an earlier run of that name): they compare their cells "
                 "with one another, not with the main table; rerun `make study` to align them.")  # fmt: skip
    return text


def seed_status(inputs: ReportInputs, verdicts: list[V.Verdict]) -> str:
    decided = sum(v.outcome in V.DECIDED for v in verdicts)
    seeds = main_seed_rows(inputs)
    studies = dict(inputs.studies)
    if seeds is not None:
        studies["main_table_seeds"] = seeds  # the study's children with the main runs: a row's seeds in all
    else:
        studies.pop("main_table_seeds", None)
    parts = [f"{decided} of {len(verdicts)} verdicts can be decided (they need 95 % intervals over "
             f"≥ {V.MIN_SEEDS} seeds per cell)"]  # fmt: skip
    if seeds is None:
        parts.append("main table: one training seed per run")
    for name, frame in studies.items():
        by = [c for c in STUDY_CELLS.get(name, []) if c in frame]
        if frame.empty or not by:
            continue
        seeds = (frame["state"] == "done").groupby([frame[c] for c in by], dropna=False).sum()
        span = f"{int(seeds.min())}" if seeds.min() == seeds.max() else f"{int(seeds.min())}–{int(seeds.max())}"
        parts.append(f"{name.replace('_', ' ')}: {span} finished seeds in each of {len(seeds)} cells")
    return "; ".join(parts) + "."


def _metric(metrics: dict, prefix: str) -> str | None:
    return next((k for k in metrics if k.startswith(prefix)), None)


def data_status(inputs: ReportInputs, reference: dict | None) -> tuple[str, str]:
    """(sentence, table): the teacher's and Stage III's samples against the held-out clips, per metric: the
    means and how many of their clips fall outside the range of the held-out clips' values."""
    shown = [s for s in inputs.summaries if s.get("kind") == "teacher" or s.get("stage") == "stage3"]
    if reference is None or not shown:
        why = "no data row (the runs were scored with other backbones)" if reference is None else "no teacher run"
        return f"Not compared: {why}, so this report cannot say how close the samples are to the data.", ""
    rows, unlike = [], {}
    header = ["metric", "held-out clips: mean (range over clips)", *[f"{s['method']}: mean (clips outside)"
                                                                   for s in shown]]  # fmt: skip
    for prefix in FIDELITY:
        name = _metric(reference["metrics"], prefix)
        data = np.asarray(reference.get("per_clip", {}).get(name) or [], dtype=float) if name else np.array([])
        if not len(data):
            continue
        lo, hi = float(np.min(data)), float(np.max(data))
        cells = [name + (" (first-frame fidelity)" if prefix == "I2V Subject" else ""),
                 f"{reference['metrics'][name]:.3f} ({lo:.3f} – {hi:.3f})"]  # fmt: skip
        for s in shown:
            clips = np.asarray(s.get("per_clip", {}).get(name) or [], dtype=float)
            outside = int(((clips < lo) | (clips > hi)).sum())
            cells.append(f"{s['metrics'][name]:.3f} ({outside}/{len(clips)})" if len(clips) else "–")
            if len(clips) and outside * 2 > len(clips):
                unlike.setdefault(s["method"], []).append(name)
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return "Not compared: no per-clip metric shared with the data row.", ""
    table = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows])
    if unlike:
        counts = ", ".join(f"{len(names)} of {len(rows)} metrics for {method}" for method, names in unlike.items())
        text = (f"The samples do not resemble the data: most clips fall outside the held-out clips' range on {counts} "
                "(table). The methods are compared with one another at this scale, not with the paper's quality; "
                "look at the samples below.")  # fmt: skip
    else:
        text = "On every metric below most clips of the teacher and of Stage III lie within the held-out clips' range."
    return text, table


def teacher_fidelity_file(teacher_run: Path) -> Path | None:
    """``fidelity.json`` of ``benchmarks/teacher_fidelity.py`` for a teacher run: in its samples, else next to the
    checkpoint a pretrained teacher run loaded (the committed demo teacher's)."""
    own = teacher_run / "samples" / "fidelity" / "fidelity.json"
    if own.exists():
        return own
    finished = teacher_run / "finished.json"
    loaded = json.loads(finished.read_text()).get("teacher") if finished.exists() else None
    return Path(loaded) / "fidelity.json" if loaded and (Path(loaded) / "fidelity.json").exists() else None


def _result_for_sampler(results: list[dict], teacher_run: Path) -> dict:
    """The fidelity result measured with the teacher run's own sampler (CFG scale, and step count where recorded);
    without a config or a match, the largest CFG scale measured."""
    sampling = RunFolder(teacher_run).config.get("sampling", {}) if (teacher_run / "config.yaml").exists() else {}
    same = [r for r in results if r["guidance_scale"] == sampling.get("guidance_scale")]
    same_steps = [r for r in same if r.get("steps") == sampling.get("teacher_steps")]
    return (same_steps or same or [max(results, key=lambda r: r["guidance_scale"])])[0]


def teacher_status(inputs: ReportInputs) -> str:
    """Does the teacher do image-to-video: PSNR per generated frame vs the copy baseline, and its frame-to-frame
    change vs the data's, with the run's own sampler (``fidelity.json``, aad1lib.eval.teacher_fidelity)."""
    teacher = next((s for s in inputs.summaries if s.get("kind") == "teacher"), None)
    file = teacher_fidelity_file(Path(teacher["run_path"])) if teacher else None
    if file is None:
        return "Not measured (no fidelity.json: run benchmarks/teacher_fidelity.py on the teacher run)."
    measured = json.loads(file.read_text())
    results = [v for v in measured.values() if isinstance(v, dict) and "psnr_teacher" in v]
    r = _result_for_sampler(results, Path(teacher["run_path"]))
    below = sum(t <= c for t, c in zip(r["psnr_teacher"], r["psnr_copy"], strict=True))
    sampler = f", {r['steps']} {r.get('sampler', '')} steps" if "steps" in r else ""
    return (f"on {measured.get('clips', '?')} held-out clips at CFG {r['guidance_scale']:g}{sampler}, mean PSNR "
            f"{r['psnr_teacher_mean']:.2f} dB vs {r['psnr_copy_mean']:.2f} dB for repeating the first frame, "
            f"{'above it at all' if not below else f'at or below it at {below} of'} {len(r['psnr_teacher'])} generated "
            "frames; "
            f"frame-to-frame change {r['frame_change_ratio']:.2f} × the data's. "
            + ("It does image-to-video better than copying." if r["beats_copy_every_frame"] else
               "It does not beat copying the first frame: the students inherit that ceiling.")
            + f" (`{_shown_path(file)}`)")  # fmt: skip


def warm_start_status(inputs: ReportInputs) -> str:
    """Which step each Stage II run kept (``stage2.keep``: early stopping on the teacher's validation loss, or the
    last update): step 0 means the run IS its Stage I model, so the DMD warm-up ablation has no Stage-I cell to train
    (designs.kept_stage1_weights) and a 4-step baseline is Stage I sampled with 4 steps."""
    kept = []
    for summary in (s for s in inputs.summaries if s["stage"] == "stage2"):
        finished = Path(summary["run_path"]) / "finished.json"
        info = json.loads(finished.read_text()) if finished.exists() else {}
        if designs.kept_step(info) is not None:
            kept.append((summary, info))
    if not kept:
        return "No finished Stage II run with validation in the main table." + seeds_kept_status(inputs)
    parts = [_kept_text(s, i) for s, i in kept]
    text = "; ".join(parts) + "."
    main, at_zero = _main_stage2(inputs), [s for s, i in kept if designs.kept_step(i) == 0]
    if at_zero:
        text += (f" DMD raised the validation loss at every evaluation of {len(at_zero)} of {len(kept)} runs, which "
                 "therefore keep their Stage I weights")  # fmt: skip
        if main is not None and any(s["run"] == main["run"] for s in at_zero):
            text += (
                ": the warm start is the Stage I model, so the DMD warm-up ablation has no run without the warm-up "
                "that would differ (not trained)"
            )
        if any(s.get("steps_per_chunk") == 4 for s in at_zero):
            text += "; a 4-step baseline kept at step 0 is Stage I sampled with 4 steps"
        text += "."
    return text + seeds_kept_status(inputs)


def _kept_text(summary: dict, info: dict) -> str:
    """One Stage II run's kept step and its teacher validation loss (best-kept) or final and best (last-kept)."""
    if info.get("keep") == "last":
        return (f"`{summary['run']}` kept its last step {info['kept_step']} (the fixed-length warm-up; teacher "
                f"validation loss {info['final_val']:.5f} there, {info['initial_val']:.5f} at step 0, lowest "
                f"{info['best_val']:.5f} at step {info['best_step']})")  # fmt: skip
    return (f"`{summary['run']}` kept step {designs.kept_step(info)} (teacher validation loss {info['best_val']:.5f},"
            f" at step 0 {info['initial_val']:.5f})")  # fmt: skip


def seeds_kept_status(inputs: ReportInputs) -> str:
    """Which step the Stage II runs of the main-table seeds kept: all at step 0 = one set of weights per row."""
    seeds, main = main_seed_rows(inputs), {s["run_path"] for s in inputs.summaries}
    if seeds is None:
        return ""
    runs = [Path(r) for r, m in zip(seeds["run"], seeds["method"], strict=True)
            if m in designs.MAIN_STAGE2_ROWS and r not in main and (Path(r) / "finished.json").exists()]  # fmt: skip
    kept = [designs.kept_step(json.loads((run / "finished.json").read_text())) for run in runs]
    if not kept:
        return ""
    at_zero = sum(step == 0 for step in kept)
    text = f" The main-table seeds' Stage II runs: {at_zero} of {len(kept)} kept step 0"
    if at_zero == len(kept) and at_zero:
        text += " — every seed of those rows is the Stage I model, so their intervals over seeds have zero width"
    return text + "."


def _shown_path(path: Path) -> Path:
    """A path inside the repository relative to its root (a committed report must not carry this machine's)."""
    try:
        return Path(path).resolve().relative_to(ROOT.resolve())
    except ValueError:
        return Path(path)


def adversarial_status(inputs: ReportInputs) -> str:
    """How far Stage III's discriminator got from chance: d_loss and D(real) − D(fake) over the last half of the
    main Stage III run (its metrics.jsonl), the studies' D gap range, and the held-out pair accuracy, which decides
    whether D separates real from generated clips when it was measured."""
    import math

    ours, records = stage3_metrics(inputs)
    rows = [r for r in records if "d_loss" in r and "d_real" in r and "d_fake" in r]
    if not rows:
        return "No Stage III metrics.jsonl: the discriminator's training signal is not known."
    half = rows[len(rows) // 2 :]
    d_loss = float(np.mean([r["d_loss"] for r in half]))
    gap = float(np.mean([r["d_real"] - r["d_fake"] for r in half]))
    chance = 2 * math.log(2)  # softplus(0) twice: D(real) = D(fake)
    off = abs(d_loss - chance) / chance
    text = (f"Stage III (`{ours['run']}`), last {len(half)} of {len(rows)} discriminator updates: d_loss {d_loss:.3f} "
            f"vs {chance:.3f} (2 ln 2) for a D that cannot tell real from generated clips ({100 * off:.1f} % away), "
            f"D(real) − D(fake) {gap:.3f}.")  # fmt: skip
    gaps = [f["D gap (last half)"].dropna() for f in inputs.studies.values() if "D gap (last half)" in f]
    gaps = pd.concat(gaps) if gaps else pd.Series(dtype=float)
    if len(gaps):
        text += f" Study runs: D(real) − D(fake) from {gaps.min():.3f} to {gaps.max():.3f} ({len(gaps)} runs)."
    evals = [r for r in records if "d_pair_acc" in r]
    if evals:
        first, last = evals[0], evals[-1]
        high = sum(r["d_pair_acc"] >= LEARNED_PAIR_ACCURACY for r in evals[1:])
        text += (f" Held-out D pair accuracy (real vs the generator's clips, {len(evals)} evaluations): "
                 f"{first['d_pair_acc']:.2f} at step {first['step']}, {last['d_pair_acc']:.2f} at step {last['step']}"
                 f" (sign accuracy {last['d_acc']:.2f}); ≥ {LEARNED_PAIR_ACCURACY} at {high} of the "
                 f"{len(evals) - 1} after step {first['step']}.")  # fmt: skip
        if len(evals) > 1 and high >= (len(evals) - 1) / 2:
            # the held-out accuracy decides, not the training loss: on noised inputs with R1/R2 d_loss stays near
            # 2 ln 2 even when D ranks (almost) every held-out real clip above its generated one
            return text + (" The discriminator separates held-out real clips from the generator's: the adversarial "
                           "stage has a signal, although its training loss stays near 2 ln 2.")  # fmt: skip
        mean = float(np.mean([r["d_pair_acc"] for r in evals[1:]])) if len(evals) > 1 else 0.5
        if mean >= PARTIAL_PAIR_ACCURACY:
            return text + (f" Mean {mean:.2f} after step {first['step']} (chance 0.5): the discriminator separates "
                           "held-out real clips from the generator's part of the time, so the adversarial signal "
                           "comes and goes.")  # fmt: skip
    if off <= CHANCE_TOLERANCE:
        text += (f" Within {100 * CHANCE_TOLERANCE:.0f} % of chance: the discriminator barely separates the "
                 "data from the samples, so the adversarial stage (and the D ablations) has little signal to act "
                 "on.")  # fmt: skip
    return text


def speed_status(inputs: ReportInputs) -> str:
    speed = inputs.speed or {}
    ratios = V._speedups(speed)
    if not ratios:
        return "No causal 1-NFE / 4-NFE pair in speed.json."
    longest = max(ratios)
    limit = V._pass_limit(speed, longest)
    text = (f"{speed.get('device_name', 'unnamed device')}, median of {speed.get('repeats', '?')} timings: 4-NFE / "
            f"1-NFE per-chunk latency {ratios[longest]:.2f}× at {longest}× the training length")  # fmt: skip
    if limit:
        text += (f", {100 * ratios[longest] / limit:.0f} % of the {limit:.2f}× that the pass count per chunk allows"
                 "; the paper's FPS are from a GPU")  # fmt: skip
        if ratios[longest] > 1.05 * limit:
            text += (". Above what the pass count allows: the timings are noisy at this scale (a few ms per chunk, "
                     "median of a few runs), read the ratio as ≈ the limit")  # fmt: skip
    return text + "."


@dataclass
class Report:
    inputs: ReportInputs
    sections: dict[str, str]  # title -> markdown
    figures: dict[str, object]  # file name -> matplotlib Figure
    gifs: dict[str, dict]  # file name -> clips for write_gif
    verdicts: list[V.Verdict]

    @property
    def markdown(self) -> str:
        return "\n\n".join(self.sections.values()) + "\n"

    def write(self, out_dir: Path, fps: int = 8) -> Path:
        """index.md + figures/*.png + figures/*.gif under ``out_dir``."""
        figures = Path(out_dir) / "figures"
        figures.mkdir(parents=True, exist_ok=True)
        for name, fig in self.figures.items():
            fig.savefig(figures / name, dpi=110, bbox_inches="tight", pad_inches=0.1)  # no label cut at the edge
        for name, clips in self.gifs.items():
            write_gif(figures / name, clips, fps)
        index = Path(out_dir) / "index.md"
        index.write_text(self.markdown)
        (Path(out_dir) / "index.html").write_text(html_page(self.markdown, Path(out_dir)), encoding="utf-8")
        return index


def build_report(preset: str, main_runs: list[str], studies_root: Path | None = None, sample_clips: int = 3) -> Report:
    """Everything of the report, in reading order; nothing is written until :meth:`Report.write`."""
    inputs = load_inputs(preset, main_runs, studies_root)
    cfg = load_preset(preset)
    reference, clips = None, None
    if inputs.summaries:  # the held-out clips scored like the runs, when the offline backbones were used
        first = inputs.summaries[0]
        offline = MetricSuite(fps=cfg.data.fps, grid_period=patch_grid_pixels(cfg))
        if all(first["backbones"][k] == getattr(offline, k).name for k in first["backbones"]):
            reference = evaluate_data(cfg, first["num_clips"], offline)
        clips = side_by_side(preset, inputs.summaries, sample_clips)
    return compose_report(inputs, reference, clips)


def compose_report(inputs: ReportInputs, reference: dict | None = None, clips: dict | None = None) -> Report:
    """The report from what :func:`build_report` loaded and generated (no model, no data set here): title,
    status block, verdict table, provenance, main table, speed, studies, samples."""
    figures: dict[str, object] = {}
    gifs: dict[str, dict] = {}
    verdicts = all_verdicts(inputs)
    sections = {"title": title(inputs), "status": status_section(inputs, verdicts, reference),
                "verdicts": verdict_section(verdicts), "header": header(inputs)}  # fmt: skip

    main = ["## Main table", ""]
    seeds = main_seed_rows(inputs)
    if inputs.summaries:
        first = inputs.summaries[0]
        over = ("the next table has its trained rows over seeds" if seeds is not None else
                "the studies below have them" + ("; AAD-1's Stage III over seeds from this Stage II run is the warm-up "
                f"ablation's “{V.WARM}” row" if warm_start_seeds(inputs) is not None else ""))  # fmt: skip
        main += [f"{first['num_clips']} held-out first frames, the same noise for every run (seed {first['seed']}); "
                 f"Drift over {first['long_video_factor']}× the training length. One training run per row: no "
                 f"intervals here ({over}).", "", main_table(inputs, reference)]  # fmt: skip
    if inputs.missing_runs:
        main += ["", "Missing rows:", "", *[f"- `{r}`" for r in inputs.missing_runs]]
    if seeds is not None:
        main += ["", "### The trained rows over seeds", "",
                 "Mean ± 95 % interval (Student t) over training seeds: the runs above and the main-table-seeds "
                 "study's (`make study`), each stage from the same input run as the row's run above (Stage II rows "
                 "from its Stage I run, Stage III from its Stage II run), so a seed varies that stage's training; "
                 "the same held-out clips and noise.", "",
                 study_table(seeds, ["method"], MAIN_SEED_METRICS)]  # fmt: skip
    sections["main"] = "\n".join(main)
    heldout = heldout_discriminator_rows(inputs)
    if heldout:
        ours = next(s for s in inputs.summaries if s.get("stage") == "stage3")
        finished = Path(ours["run_path"]) / "finished.json"
        g_start = json.loads(finished.read_text()).get("d_warmup_end_step") if finished.exists() else None
        figures["stage3_discriminator.png"] = plot_heldout_discriminator(heldout, g_start)
        sections["stage3_discriminator"] = "\n".join([
            "## Stage III: the discriminator on held-out clips", "",
            f"`{ours['run']}`: real test clips vs the current generator's clips from the same first frames, noised as "
            f"D's training noises them, every {heldout[1]['step'] - heldout[0]['step'] if len(heldout) > 1 else '?'} "
            "steps (G starts when the pair accuracy reaches the preset's warm-up threshold).", "",
            "![held-out D](figures/stage3_discriminator.png)",
        ])  # fmt: skip
    if inputs.speed:
        sections["speed"] = (f"## Speed\n\nFrom `{inputs.speed_run}/speed.json` (06_evaluate; the models of the main "
                             f"table's runs).\n\n" + format_speed_table(inputs.speed))  # fmt: skip

    # the studies
    if "discriminator_ablation" in inputs.studies:
        frame = inputs.studies["discriminator_ablation"]
        frame = frame.assign(D=frame["D attention"] + " + " + frame["D logit"])
        sections["ablation"] = "\n".join([
            "## Discriminator ablation (the paper's 2×2)", "",
            _study_note(inputs.study_meta["discriminator_ablation"]), "",
            study_table(frame, ["D attention", "D logit"]), "", "![ablation](figures/discriminator_ablation.png)",
        ])  # fmt: skip
        figures["discriminator_ablation.png"] = plot_cells(frame, "D", "D attention + logit (mean ± 95 % CI)")
    if "lambda_sweep" in inputs.studies:
        frame = inputs.studies["lambda_sweep"]
        by = ["λ", "σ"] if frame["σ"].nunique() > 1 else ["λ"]
        sections["lambda"] = "\n".join([
            "## λ of the approximate R1/R2", "", _study_note(inputs.study_meta["lambda_sweep"]), "",
            study_table(frame, by), "", "![λ sweep](figures/lambda_sweep.png)",
        ])  # fmt: skip
        figures["lambda_sweep.png"] = plot_cells(frame, "λ", "metrics against λ (mean ± 95 % CI)", numeric_x=True,
                                                 hue="σ" if len(by) > 1 else None)  # fmt: skip
    if "warmup_ablation" in inputs.studies:
        frame = inputs.studies["warmup_ablation"]
        sections["warmup"] = "\n".join([
            "## DMD warm-up ablation", "", _study_note(inputs.study_meta["warmup_ablation"]), "",
            study_table(frame, ["init"]),
        ])  # fmt: skip
    if not inputs.studies:
        sections["studies"] = "## Studies\n\nNot run yet: `make study` (see README)."

    # samples: the same first frames and noise for every main run
    if clips:
        figures["samples.png"] = plot_strips(sample_rows(clips, len(clips["Data"])),
                                             title="data / each method, same first frames and noise")  # fmt: skip
        gifs["samples.gif"] = clips
        rows = " / ".join(clips)
        sections["samples"] = "\n".join([
            "## Samples", "", f"Rows: {rows}; the same first frame and noise per column, upscaled 4× (nearest).", "",
            "![samples](figures/samples.gif)", "", "![strips](figures/samples.png)",
        ])  # fmt: skip
    return Report(inputs, sections, figures, gifs, verdicts)


def _study_note(meta: dict) -> str:
    return (f"Stage III from `{Path(meta['init_from']).name}`, {meta.get('steps') or 'the preset’s'} generator "
            f"updates per run, seeds {meta['seeds']}; mean ± 95 % interval (Student t) over seeds; every run is "
            f"a papermill execution of 03_adversarial + 06_evaluate (copies in its run folder).")  # fmt: skip


# ---- the HTML page ---------------------------------------------------------------------------------------------
PAGE_CSS = """
body { font: 15px/1.45 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1180px;
       margin: 1.5em auto; padding: 0 1.2em; color: #1f2328; }
h1 { font-size: 1.7em; border-bottom: 1px solid #d0d7de; padding-bottom: .3em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 1.6em; }
.wide { overflow-x: auto; margin: .8em 0; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfbfc; }
code { font-size: 90%; background: #f3f4f6; padding: 0 3px; border-radius: 3px; }
img { max-width: 100%; }
img[src^="data:image/gif"] { image-rendering: pixelated; }
"""


def html_page(markdown_text: str, base: Path) -> str:
    """index.md as one self-contained HTML page: its images (PNG, GIF) inlined as data URIs, wide tables
    scrolling sideways; nothing but the report (no notebook inputs, outputs or warnings)."""
    import base64
    import html
    import mimetypes
    import re

    import mistune

    body = mistune.create_markdown(escape=False, plugins=["table"])(markdown_text)

    def inline(match: re.Match) -> str:
        path = Path(base) / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return f'{match.group(1)}"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    body = re.sub(r'(<img src=)"(?!data:|https?:)([^"]+)"', inline, body)
    body = body.replace("<table>", '<div class="wide"><table>').replace("</table>", "</table></div>")
    heading = re.search(r"^# (.+)$", markdown_text, flags=re.M)
    name = html.escape(heading.group(1).replace("`", "")) if heading else "report"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{name}</title>\n'
            f"<style>{PAGE_CSS}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")  # fmt: skip
