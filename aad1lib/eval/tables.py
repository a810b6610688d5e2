"""Presenting evaluation summaries: the main table's row and Markdown, the Drift curves, and the JSON
encoding of a summary's tensors and numpy scalars."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def table_row(summary: dict) -> dict[str, Any]:
    """One row of the main table: method, NFE, every metric (backbone in the name), Drift, motion ratio."""
    nfe = summary.get("nfe") or {}
    row: dict[str, Any] = {
        "Method": summary["method"],
        "NFE / chunk": nfe.get("nfe_per_chunk"),
        "NFE / clip": nfe.get("nfe_per_clip"),
        "passes / chunk": nfe.get("passes_per_chunk"),
    }
    metrics = dict(summary["metrics"])
    ratio = {k: metrics.pop(k) for k in list(metrics) if k.startswith("Motion Ratio")}
    row.update(metrics)
    drift_info = summary["drift"]
    row[drift_info["name"] + " ↓"] = drift_info["value"] if drift_info["applicable"] else "n/a"
    row.update(ratio)
    return row


def format_main_table(results: dict[str, dict] | list[dict], reference: dict | None = None, digits: int = 3) -> str:
    """Markdown table of :func:`~aad1lib.eval.evaluate.evaluate_runs`'s results (plus an optional
    :func:`~aad1lib.eval.evaluate.evaluate_data` row)."""
    summaries = list(results.values()) if isinstance(results, dict) else list(results)
    if reference is not None:
        summaries = [reference, *summaries]
    rows = [s["row"] for s in summaries]
    headers = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value):
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(row.get(h)) for h in headers) + " |" for row in rows]
    return "\n".join(lines)


def plot_drift_curves(results: dict[str, dict]):
    """Imaging quality per segment of the long rollouts (one line per causal run); a matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    for summary in results.values():
        d = summary["drift"]
        if d["applicable"]:
            ax.plot(range(1, len(d["curve"]) + 1), d["curve"], marker="o", label=summary["method"])
    if not ax.lines:
        ax.text(0.5, 0.5, "no long rollouts (teacher only, or long_video_factor = 0)", ha="center",
                transform=ax.transAxes)  # fmt: skip
    else:
        ax.legend(fontsize=8)
        ax.set_xticks(range(1, max(len(line.get_xdata()) for line in ax.lines) + 1))
    ax.set_xlabel("segment (one training length each)")
    ax.set_ylabel(next((s["drift"]["name"].replace("Drift", "IQ") for s in results.values()), "IQ"))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def json_default(obj):
    """``json.dump``'s ``default`` for a summary: tensors as lists, numpy scalars as Python numbers."""
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
