"""A study's numbers: one row per child (its labels, status, evaluation metrics and training signals), and the
per-cell mean ± 95 % interval over seeds (Student t: with 2–5 seeds a normal interval would be too narrow)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .children import Child

# the columns the studies compare (summary.json metric names carry their backbone, matched by prefix)
MOTION_RATIO, DRIFT, QUALITY, GRID = "Motion Ratio", "Drift", "Imaging Quality", "Grid Artefacts"
DIVERGED_MARKERS = ("DivergenceError", "saturated", "non-finite")


def child_row(child: Child) -> dict[str, Any]:
    """Labels + state + every metric of the child's summary.json + training signals from its metrics.jsonl."""
    status = child.status()
    row: dict[str, Any] = dict(child.labels, child=child.name, state=status["state"], run=child.run_path)
    row["error"] = status.get("error")
    row["diverged"] = bool(status["state"] == "failed" and any(m in (row["error"] or "") for m in DIVERGED_MARKERS))
    run = Path(child.run_path) if child.run_path else None
    if run is not None and (run / "summary.json").exists() and status["state"] == "done":
        row.update(summary_metrics(json.loads((run / "summary.json").read_text())))
    if run is not None and (run / "metrics.jsonl").exists():
        row.update(training_signals(run / "metrics.jsonl"))
    return row


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Every evaluation metric of a run's summary.json, Drift included where it applies."""
    metrics = dict(summary["metrics"])
    if summary["drift"]["applicable"]:
        metrics[summary["drift"]["name"]] = summary["drift"]["value"]
    return metrics


def training_signals(metrics_file: Path) -> dict[str, float]:
    """Stability of a Stage III run: the D gap (D(real) − D(fake)) over its last half and how much the
    generator's loss and gradient norm jump around (std over the generator updates)."""
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    gaps = [r["d_real"] - r["d_fake"] for r in rows if "d_real" in r and "d_fake" in r]
    g_loss = [r["g_loss"] for r in rows if "g_loss" in r]
    g_norm = [r["g_grad_norm"] for r in rows if "g_grad_norm" in r]
    out = {}
    if gaps:
        out["D gap (last half)"] = float(np.mean(gaps[len(gaps) // 2 :]))
    if len(g_loss) > 1:
        out["G loss std"] = float(np.std(g_loss))
    if len(g_norm) > 1:
        out["G grad-norm std"] = float(np.std(g_norm))
    return out


def collect(children: list[Child]) -> pd.DataFrame:
    return pd.DataFrame([child_row(c) for c in children])


def column(frame: pd.DataFrame, prefix: str) -> str:
    """The one column whose name starts with ``prefix`` (metric names carry their backbone)."""
    matches = [c for c in frame.columns if str(c).startswith(prefix)]
    if len(matches) != 1:
        raise KeyError(f"expected one column starting with {prefix!r}, found {matches}")
    return matches[0]


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, int]:
    """(mean, half-width of the Student-t interval, n) of the finite values; half-width NaN for n < 2."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(x[0]), math.nan, 1
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    return float(x.mean()), float(half), n


def cell_stats(frame: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per cell of ``by``: ``<metric>`` mean, ``<metric> ±`` half-width, n, runs, failures."""
    rows = []
    for key, group in frame.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        done = group[group["state"] == "done"]
        for metric in metrics:
            mean, half, n = mean_ci(done[metric].tolist() if metric in done else [])
            row[metric], row[f"{metric} ±"] = mean, half
        row["n"] = len(done)
        row["failed"] = int((group["state"] == "failed").sum())
        row["diverged"] = int(group["diverged"].sum())
        row["runs"] = list(group["child"])
        rows.append(row)
    return pd.DataFrame(rows)


def format_cell(mean: float, half: float, digits: int = 3) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if np.isfinite(half) else " (n=1)")


def markdown_cells(stats: pd.DataFrame, by: list[str], metrics: list[str], digits: int = 3) -> str:
    """Markdown table: the cell's axes, mean ± 95 % interval per metric, seeds done / failed, the runs."""
    headers = [*by, *metrics, "seeds (failed)", "runs"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in stats.iterrows():
        cells = [str(row[b]) for b in by]
        cells += [format_cell(row[m], row[f"{m} ±"], digits) for m in metrics]
        cells.append(f"{row['n']}" + (f" ({row['failed']})" if row["failed"] else ""))
        cells.append("<br>".join(f"`{r}`" for r in row["runs"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def last_sample_strips(frame: pd.DataFrame, by: list[str]) -> dict[str, Path]:
    """``{cell label: strips.png of its first finished run's last sampling point}`` for the notebooks."""
    strips = {}
    for key, group in frame[frame["state"] == "done"].groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        run = Path(group["run"].iloc[0])
        found = sorted(run.glob("samples/step-*/strips.png"))
        if found:
            label = ", ".join(f"{b} = {k}" for b, k in zip(by, key, strict=True))
            strips[f"{label} ({run.name}, {found[-1].parent.name})"] = found[-1]
    return strips
