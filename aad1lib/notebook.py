"""Helpers for the thin papermill notebooks: strict parameters, run lookup, plots.

papermill only *warns* about a parameter the notebook does not declare and still exits 0
(docs/design.md §4), so every notebook calls :func:`check_parameters` right after its parameters cell.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from .config import ConfigError, _check_type

_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


class UnknownParameterError(ConfigError):
    pass


def check_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """Validate the notebook's parameters (the annotated names of its parameters cell).

    Rejects names papermill injected that the cell does not declare, and values of the wrong type.
    Returns ``{name: value}`` of the declared parameters (ints given for floats become floats).
    """
    annotations = namespace.get("__annotations__", {})
    declared = {name: annotations[name] for name in annotations if not name.startswith("_")}
    unknown = sorted(
        name
        for name, value in namespace.items()
        if not name.startswith("_")
        and name not in declared
        and name not in _IPYTHON_NAMES
        and not isinstance(value, types.ModuleType | types.FunctionType | type)
        and not callable(value)
    )
    if unknown:
        raise UnknownParameterError(f"unknown notebook parameter(s) {unknown}; allowed: {sorted(declared)}")
    params = {}
    for name, hint in declared.items():
        if isinstance(hint, str):
            hint = eval(hint, {"typing": typing}, {})  # noqa: S307 - annotations of our own notebooks
        params[name] = _check_type(hint, namespace[name], name)
        namespace[name] = params[name]
    return params


def plot_loss_curve(metrics: list[dict[str, Any]], keys: tuple[str, ...] = ("loss",), smooth: int = 20, title=None):
    """Raw (faint) and moving-average (solid) curves of ``keys`` against step; returns a matplotlib Figure."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    if not metrics:
        ax.text(0.5, 0.5, "no training steps in this run", ha="center", va="center", transform=ax.transAxes)
        return fig
    steps = np.array([m["step"] for m in metrics])
    for key in keys:
        values = np.array([m.get(key, np.nan) for m in metrics], dtype=float)
        (line,) = ax.plot(steps, values, alpha=0.25, linewidth=0.8)
        if len(values) >= smooth > 1:
            kernel = np.ones(smooth) / smooth
            ax.plot(steps[smooth - 1 :], np.convolve(values, kernel, mode="valid"), color=line.get_color(), label=key)
        else:
            line.set_label(key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show(fig, dpi: int = 110) -> None:
    """Display a matplotlib Figure built without pyplot as a PNG output (renders in nbconvert HTML too)."""
    import io

    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(buffer.getvalue()))


def sample_rows(groups: dict[str, Any], count: int) -> dict[str, Any]:
    """Interleave per-clip rows for a strip figure: ``{"data": [B,...], "1-step": [B,...]}`` ->
    ``{"data 0": ..., "1-step 0": ..., "data 1": ...}`` for the first ``count`` clips."""
    return {f"{name} {i}": videos[i] for i in range(count) for name, videos in groups.items()}
