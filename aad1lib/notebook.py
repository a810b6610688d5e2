"""Helpers for the thin papermill notebooks: strict parameters, their preset overrides, run lookup, plots.

papermill only *warns* about a parameter the notebook does not declare and still exits 0
(docs/design.md §4), so every notebook calls :func:`check_parameters` right after its parameters cell.
Which config key each parameter overrides is the one table :data:`NOTEBOOK_KEYS`; notebooks build their
overrides with :func:`preset_overrides`.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
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


# ---- parameter -> config ------------------------------------------------------------------------------------
def _study_seeds(cfg) -> list[int]:
    return [0] if cfg.name == "tiny" else [0, 1, 2]  # a verdict needs an interval over >= 3 seeds


def _study_clips(cfg) -> int:
    return min(8, cfg.data.test_clips)


def _sweep_sigmas(cfg) -> list[float]:
    return [cfg.stage3.r1_sigma]


def _main_seeds(cfg) -> list[int]:  # besides the main runs' own seed (the preset's)
    return [cfg.seed + 1] if cfg.name == "tiny" else [cfg.seed + 1, cfg.seed + 2]


def _probe_seeds(cfg) -> list[int]:
    return [0] if cfg.name == "tiny" else [0, 1, 2]


def _probe_updates(cfg) -> int:
    return 8 if cfg.name == "tiny" else 200


def _probe_eval_every(cfg) -> int:
    return 4 if cfg.name == "tiny" else 20


_STUDY = {
    "preset": None, "init_from": None, "seeds": _study_seeds, "steps": "stage3.steps", "num_clips": _study_clips,
    "long_video_factor": None, "executor": None, "max_parallel": None, "slurm_partition": None,
    "slurm_gpus_per_node": None, "slurm_cpus_per_task": None, "slurm_timeout_min": None,
}  # fmt: skip

NOTEBOOK_KEYS: dict[str, dict[str, str | Callable[[Any], Any] | None]] = {
    "00_teacher": {"preset": None, "steps": "teacher.steps", "lr": "teacher.lr", "seed": "seed", "run_name": None},
    "01_causal_init": {
        "preset": None, "init_from": None, "steps": "stage1.steps", "target_steps": "stage1.target_steps",
        "frames_per_chunk": "chunking.frames_per_chunk", "ode_pairs": "stage1.ode_pairs", "lr": "stage1.lr",
        "seed": "seed", "run_name": None,
    },
    "02_dmd_warmup": {
        "preset": None, "init_from": None, "steps": "stage2.steps", "student_steps": "stage2.student_steps",
        "rollout": "stage2.rollout", "guidance_scale": "stage2.guidance_scale", "critic_steps": "stage2.critic_steps",
        "keep": "stage2.keep", "lr_generator": "stage2.lr_generator", "lr_critic": "stage2.lr_critic", "seed": "seed",
        "run_name": None,
    },
    "03_adversarial": {
        "preset": None, "init_from": None, "steps": "stage3.steps", "lam": "stage3.lam", "r1_sigma": "stage3.r1_sigma",
        "disc_attention": "stage3.disc_attention", "disc_logit": "stage3.disc_logit", "d_steps": "stage3.d_steps",
        "d_warmup_steps": "stage3.d_warmup_steps", "d_warmup_accuracy": "stage3.d_warmup_accuracy",
        "d_warmup_max_steps": "stage3.d_warmup_max_steps", "t_max": "stage3.t_max",
        "train_disc_backbone": "stage3.train_disc_backbone",
        "real_source": "stage3.real_source", "lr_generator": "stage3.lr_generator",
        "lr_discriminator": "stage3.lr_discriminator", "seed": "seed", "log_every": "train.log_every",
        "run_name": None,
    },
    "04_discriminator_ablation": {**_STUDY, "warmup_ablation": None},
    "05_lambda_sweep": {**_STUDY, "lams": None, "sigmas": _sweep_sigmas},
    "09_main_table_seeds": {
        "preset": None, "init_from": None, "seeds": _main_seeds, "num_clips": _study_clips, "long_video_factor": None,
        "executor": None, "max_parallel": None, "slurm_partition": None, "slurm_gpus_per_node": None,
        "slurm_cpus_per_task": None, "slurm_timeout_min": None,
    },
    "06_evaluate": {
        "preset": None, "runs": None, "num_clips": None, "long_video_factor": None, "seed": "seed",
        "flow_backend": None, "dino_dir": None, "clip_dir": None, "raft_path": None, "musiq_path": None,
        "dreamsim_dir": None, "speed_lengths": None, "teacher_max_length": None, "speed_repeats": None,
        "device": None, "threads": None, "overwrite": None,
    },
    "07_report": {"preset": None, "main_runs": None, "studies_root": None, "out_dir": None, "sample_clips": None},
    "08_discriminator_probe": {
        "preset": None, "teacher_run": None, "init_from": None, "designs": None, "failures": None,
        "seeds": _probe_seeds, "updates": _probe_updates, "eval_every": _probe_eval_every,
        "batch_size": "train.batch_size", "lr": "stage3.lr_discriminator", "lam": "stage3.lam",
        "t_max": "stage3.t_max", "eval_clips": "stage3.disc_eval_clips", "drift_rate": None, "grid_rate": None,
        "device": None, "threads": None,
    },
}  # fmt: skip
"""Every notebook parameter, per notebook (file stem): the dotted config key it overrides (its ``None`` = the
preset's value), a function ``cfg -> value`` for a notebook-only parameter whose ``None`` stands for a value derived
from the preset (:func:`with_preset_values`), or ``None`` for a notebook-only parameter. 04/05 pass ``steps`` on to
their 03_adversarial children, where it overrides ``stage3.steps``; 08's ``updates`` are D-only updates of its probe
(:mod:`aad1lib.study.disc_probe`), not Stage III steps."""


def notebook_keys(notebook: str | Path) -> dict[str, str | Callable[[Any], Any] | None]:
    """:data:`NOTEBOOK_KEYS` of ``notebook`` (a stem such as ``"03_adversarial"``, a file name or a path)."""
    stem = Path(notebook).stem
    if stem not in NOTEBOOK_KEYS:
        raise ConfigError(f"unknown notebook {stem!r}; known: {sorted(NOTEBOOK_KEYS)}")
    return NOTEBOOK_KEYS[stem]


def preset_overrides(notebook: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """The dotted-key overrides for :func:`aad1lib.config.load_preset` from a notebook's parameters: one per
    config parameter that is not ``None`` (``None`` keeps the preset's value). A name the table does not know
    is an error, so the table cannot fall behind a notebook."""
    keys = notebook_keys(notebook)
    unknown = sorted(set(params) - set(keys))
    if unknown:
        raise UnknownParameterError(f"{Path(notebook).stem}: parameter(s) {unknown} missing from NOTEBOOK_KEYS")
    return {keys[name]: value for name, value in params.items() if isinstance(keys[name], str) and value is not None}


def preset_value(notebook: str | Path, name: str, cfg) -> Any:
    """The value parameter ``name`` takes under ``cfg`` when it is ``None`` (its config field, or the value derived
    from the preset); ``None`` for a notebook-only parameter whose ``None`` means something else (see its help)."""
    key = notebook_keys(notebook)[name]
    if key is None:
        return None
    if callable(key):
        return key(cfg)
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def with_preset_values(notebook: str | Path, params: dict[str, Any], cfg) -> dict[str, Any]:
    """``params`` with each ``None`` of a preset-derived notebook-only parameter replaced by its value under ``cfg``
    (e.g. 04/05's ``seeds``); config parameters stay as given (``cfg`` already holds their values)."""
    keys = notebook_keys(notebook)
    return {name: keys[name](cfg) if value is None and callable(keys.get(name)) else value
            for name, value in params.items()}  # fmt: skip


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
