"""Collect the runs' summary.json files and the studies' children into ``reports/``: index.md (readable on a
code host), figures/ (λ plot, ablation plot, sample strips, GIFs). Every table cell names the run it came from;
the verdicts come from :mod:`.verdicts`. The HTML copy is nbconvert's rendering of the executed 07 notebook.
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

from ..study.children import ROOT, STUDIES_ROOT, read_manifest
from ..study.results import DRIFT, GRID, MOTION_RATIO, QUALITY, cell_stats, collect, column, markdown_cells
from ..train.run_folder import git_commit
from . import verdicts as V

REPORTS_ROOT = ROOT / "experiments" / "reports"  # 07_report's default output (git-ignored; reports/ is committed)
STUDY_NAMES = ("discriminator_ablation", "warmup_ablation", "lambda_sweep")
STUDY_METRICS = (MOTION_RATIO, DRIFT, GRID, QUALITY, "D gap", "G grad-norm std")


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
    from ..eval.evaluate import resolve_spec

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
    return [
        *V.main_table_verdicts(inputs.summaries, inputs.speed),
        V.causal_frame_collapses(ablation),
        V.bidirectional_video_drifts_least(ablation),
        V.lambda_zero_collapses(sweep),
        V.lambda_large_grid_artefacts(sweep),
        V.lambda_twenty_best(sweep),
        V.warmup_quality(warmup),
        V.warmup_stability(warmup),
    ]


# ---- tables ------------------------------------------------------------------------------------------------
def main_table(inputs: ReportInputs, reference: dict | None = None) -> str:
    from ..eval.evaluate import format_main_table

    rows = []
    for summary in inputs.summaries:
        row = dict(summary["row"])
        row["run"] = f"`{summary['run']}`"
        rows.append(dict(summary, row=row))
    if reference is not None:
        reference = dict(reference, row=dict(reference["row"], run="held-out clips"))
    return format_main_table(rows, reference)


def study_table(frame: pd.DataFrame, by: list[str]) -> str:
    metrics = [m for m in (_column(frame, p) for p in STUDY_METRICS) if m]
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
    fig = Figure(figsize=(3.2 * len(metrics), 3.0))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    groups = [(None, frame)] if hue is None else list(frame.groupby(hue, sort=False))
    for ax, metric in zip(axes, metrics, strict=True):
        for label, group in groups:
            stats = cell_stats(group, [x], [metric])
            xs = stats[x].astype(float) if numeric_x else np.arange(len(stats))
            ax.errorbar(xs, stats[metric], yerr=stats[f"{metric} ±"].fillna(0), marker="o", capsize=4,
                        label=None if label is None else f"{hue} = {label}")  # fmt: skip
            if not numeric_x:
                ax.set_xticks(xs, [str(v) for v in stats[x]], rotation=15, fontsize=7)
        if metric.startswith(MOTION_RATIO):
            ax.axhline(1.0, color="grey", lw=0.8, ls=":")
            ax.axhline(V.COLLAPSE_RATIO, color="red", lw=0.8, ls="--", label="collapse threshold")
            ax.legend(fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@torch.no_grad()
def side_by_side(preset: str, summaries: list[dict], num_clips: int = 3) -> dict[str, torch.Tensor]:
    """Every main run's clips for the same held-out first frames and noise (as in the evaluation):
    ``{"Data": [B, 3, F, H, W], method: [B, 3, F, H, W]}`` in [-1, 1]."""
    from ..builders import build_latent_codec
    from ..config import load_preset
    from ..eval.evaluate import eval_inputs, generate_latents, generation_plan
    from ..runs import load_run_model
    from ..train.run_folder import RunFolder

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
def header(inputs: ReportInputs) -> str:
    seeds = sorted({s for meta in inputs.study_meta.values() for s in meta.get("seeds", [])})
    machine = (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
               + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))  # fmt: skip
    main_seeds = sorted({s.get("seed") for s in inputs.summaries})
    return "\n".join([
        f"# AAD-1 at the `{inputs.preset}` preset: what reproduced and what did not",
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
    counts = pd.Series([v.outcome for v in verdicts]).value_counts()
    tally = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    return "\n".join(["## What reproduced and what did not", "", f"{tally}.", "", *[v.markdown() for v in verdicts]])


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
            fig.savefig(figures / name, dpi=110)
        for name, clips in self.gifs.items():
            write_gif(figures / name, clips, fps)
        index = Path(out_dir) / "index.md"
        index.write_text(self.markdown)
        return index


def build_report(preset: str, main_runs: list[str], studies_root: Path | None = None, sample_clips: int = 3) -> Report:
    """Everything of the report, in reading order; nothing is written until :meth:`Report.write`."""
    from ..config import load_preset
    from ..data import plot_strips
    from ..eval.evaluate import evaluate_data, patch_grid_pixels
    from ..eval.metrics import MetricSuite
    from ..eval.speed import format_speed_table
    from ..notebook import sample_rows

    inputs = load_inputs(preset, main_runs, studies_root)
    cfg = load_preset(preset)
    sections = {"header": header(inputs)}
    figures: dict[str, object] = {}
    gifs: dict[str, dict] = {}
    verdicts = all_verdicts(inputs)
    sections["verdicts"] = verdict_section(verdicts)

    # main table (+ the held-out clips scored like the runs, when the offline backbones were used)
    main = ["## Main table", ""]
    if inputs.summaries:
        first = inputs.summaries[0]
        offline = MetricSuite(fps=cfg.data.fps, grid_period=patch_grid_pixels(cfg))
        reference = None
        if all(first["backbones"][k] == getattr(offline, k).name for k in first["backbones"]):
            reference = evaluate_data(cfg, first["num_clips"], offline)
        main += [f"{first['num_clips']} held-out first frames, the same noise for every run (seed {first['seed']}); "
                 f"Drift over {first['long_video_factor']}× the training length. One training seed per row: no "
                 "intervals here (the studies below have them).", "", main_table(inputs, reference)]  # fmt: skip
    if inputs.missing_runs:
        main += ["", "Missing rows:", "", *[f"- `{r}`" for r in inputs.missing_runs]]
    sections["main"] = "\n".join(main)
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
    if inputs.summaries:
        clips = side_by_side(preset, inputs.summaries, sample_clips)
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
