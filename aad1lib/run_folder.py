"""One folder per run under experiments/runs/: config, metrics, checkpoints, samples — never overwritten; and the
repository's one atomic file write (:func:`atomic_write_text`, :func:`atomic_write_json`).

```
experiments/runs/<stage>-<preset>-<name>/
  run.json          stage, preset, name, git commit, package versions, start time
  config.yaml       the resolved ExperimentConfig (+ the stage's notebook parameters)
  metrics.jsonl     one JSON line per logged step
  checkpoints/step-0000100/   accelerate state (models, optimizers, RNG) + loop.json, written atomically
  model/ …          final weights in diffusers format (from_pretrained-able)
  samples/          mp4 + strip png per sampling point
  finished.json     written last: the run completed (later stages only start from finished runs)
```
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from .paths import ROOT

RUNS_ROOT = ROOT / "experiments" / "runs"
_PACKAGES = ("torch", "diffusers", "accelerate", "transformers", "numpy", "aad1")


def git_commit() -> str | None:
    """HEAD's hash, ``+dirty`` when tracked files changed; the hash alone when ``git status`` is too slow (it
    runs the notebooks' clean filter on every changed notebook) — never None just because status timed out."""
    here = Path(__file__).parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=30)  # fmt: skip
    except subprocess.TimeoutExpired:
        return out.stdout.strip() + "+dirty-unchecked"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class RunExistsError(FileExistsError):
    pass


class RunFolder:
    """A run's folder. Use :meth:`create` (new or resumable run) or :meth:`open` (read a finished one)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # ---- creation ------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, stage: str, preset: str, config: dict[str, Any], name: str | None = None, root: Path | None = None
    ) -> RunFolder:
        """A new run folder, or the unfinished one of the same name (to resume it).

        A finished run is never overwritten, and an unfinished one is only resumed with the same config — unless
        it holds nothing yet (a start that failed on a config/input error: no checkpoint, metrics, samples, model
        or ODE pairs), in which case it is started afresh with the new config.
        """
        root = Path(root or RUNS_ROOT)
        name = name or time.strftime("%Y%m%d-%H%M%S")
        run = cls(root / f"{stage}-{preset}-{name}")
        if run.path.exists():
            if run.finished:
                raise RunExistsError(f"run {run.path} already finished; choose another run_name (nothing was touched)")
            saved = (
                yaml.safe_load((run.path / "config.yaml").read_text()) if (run.path / "config.yaml").exists() else None
            )
            if saved is None or saved == _plain(config):
                return run
            if run.holds_results():
                raise RunExistsError(
                    f"unfinished run {run.path} was started with a different config; resume it with the same "
                    "parameters or choose another run_name"
                )
            # a failed start: nothing to lose. Its tracker folder only holds the rejected config (no metrics).
            shutil.rmtree(run.path / "tracking", ignore_errors=True)
        (run.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run.path / "samples").mkdir(exist_ok=True)
        (run.path / "config.yaml").write_text(yaml.safe_dump(_plain(config), sort_keys=False))
        info = dict(
            stage=stage,
            preset=preset,
            name=name,
            git_commit=git_commit(),
            packages=package_versions(),
            started=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        (run.path / "run.json").write_text(json.dumps(info, indent=2))
        return run

    # what a run folder holds before its first logged step / checkpoint (RunFolder.create, TrainLoop's tracker)
    _STARTED_ONLY = ("run.json", "config.yaml", "checkpoints", "samples", "metrics.jsonl", "tracking", "ode_pairs")

    def holds_results(self) -> bool:
        """False only for a run that has produced nothing yet: no checkpoint (not even a partial one), no
        metrics, samples, ODE pairs, model or anything else besides its config and an empty tracker log."""
        for entry in self.path.iterdir():
            if entry.name not in self._STARTED_ONLY:
                return True
            if entry.name == "metrics.jsonl":
                if entry.read_text().strip():
                    return True
            elif entry.name == "tracking":
                continue  # tracker logs mirror metrics.jsonl (TrainLoop.log): no metrics there either
            elif entry.is_dir():
                if any(entry.iterdir()):
                    return True
            elif entry.name not in ("run.json", "config.yaml"):
                return True
        return False

    @classmethod
    def open(cls, path: str | Path) -> RunFolder:
        run = cls(Path(path))
        if not (run.path / "run.json").exists():
            raise FileNotFoundError(f"{run.path} is not a run folder (no run.json)")
        return run

    # ---- contents ------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        return json.loads((self.path / "run.json").read_text())

    @property
    def config(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / "config.yaml").read_text())

    @property
    def finished(self) -> bool:
        return (self.path / "finished.json").exists()

    def mark_finished(self, **summary: Any) -> None:
        atomic_write_json(self.path / "finished.json", dict(summary, finished=time.time()))

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    def log_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_file.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, last_step: int) -> None:
        """Drop lines logged after ``last_step`` (a resumed run recomputes them)."""
        kept = [r for r in self.read_metrics() if r.get("step", -1) <= last_step]
        atomic_write_text(self.metrics_file, "".join(json.dumps(r) + "\n" for r in kept))

    # ---- checkpoints ---------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"step-{step:07d}"

    def checkpoints(self) -> list[Path]:
        return sorted(p for p in (self.path / "checkpoints").glob("step-*") if (p / "loop.json").exists())

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def begin_checkpoint(self, step: int) -> Path:
        """Temporary folder to write a checkpoint into; :meth:`commit_checkpoint` renames it in one step."""
        tmp = self.path / "checkpoints" / f".tmp-step-{step:07d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, state: dict[str, Any], keep: int) -> Path:
        (tmp / "loop.json").write_text(json.dumps(dict(state, step=step)))
        final = self.checkpoint_dir(step)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)  # atomic: a crash leaves either the old set or the new checkpoint
        for old in self.checkpoints()[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"


def _plain(obj: Any) -> Any:
    """YAML/JSON-friendly copy (tuples -> lists)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a temporary file beside it (named per process, so two
    writers never share one), then ``os.replace``. A reader sees the old file or the new one, also after a kill."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: Any, overwrite: bool = True, default: Any = None) -> None:
    """:func:`atomic_write_text` of ``json.dumps(obj, indent=2, default=default)``; with ``overwrite=False`` an
    existing ``path`` is refused (``FileExistsError``) and left as it is."""
    if not overwrite and Path(path).exists():
        raise FileExistsError(f"{path} already exists: pass overwrite=True to replace it")
    atomic_write_text(path, json.dumps(obj, indent=2, default=default))
