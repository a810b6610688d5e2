"""A study's child run: one or more papermill executions of the stage notebooks, with their parameters.

Every number of a study traces back to an executed notebook: the child's notebooks are executed into
``<studies>/children/<child>/`` (by :func:`aad1lib.notebook_runner.run_notebooks`: its steps' done markers,
``failed.json`` with the step and the error) and, once they finished, copied into the run folder the child
trained (``<run>/notebooks/``). A child is *done* when its ``done.json`` exists; a failed child is retried by
the next sweep, resuming at its failed step and its run folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..notebook_runner import Step, run_notebooks
from ..paths import ROOT

STUDIES_ROOT = ROOT / "experiments" / "studies"
NotebookStep = Step  # a child's step: notebook + parameters (its manifest entry)


class ChildFailed(RuntimeError):
    """A child's notebook raised; the message names the child, the step and the executed notebook."""


@dataclass(frozen=True)
class Child:
    """One child run of a study. ``name`` is unique for its parameters (see :func:`child_name`)."""

    name: str
    steps: tuple[NotebookStep, ...]
    labels: dict[str, Any] = field(default_factory=dict)  # the study's axes for this child, e.g. {"lam": 20.0}
    run_path: str | None = None  # the run folder the child trains (its notebooks are copied there)
    studies_root: str = str(STUDIES_ROOT)

    @property
    def folder(self) -> Path:
        return Path(self.studies_root) / "children" / self.name

    @property
    def done(self) -> bool:
        return (self.folder / "done.json").exists()

    def executed(self, index: int) -> Path:
        return self.steps[index].executed(self.folder)

    def status(self) -> dict[str, Any]:
        """``{"state": "done" | "failed" | "pending", ...}`` read from the child's folder."""
        for state in ("done", "failed"):
            path = self.folder / f"{state}.json"
            if path.exists():
                return dict(json.loads(path.read_text()), state=state)
        return {"state": "pending"}


def child_name(prefix: str, readable: str, identity: dict[str, Any]) -> str:
    """``<prefix>-<readable>-<hash>``: the hash covers everything that defines the child (notebooks,
    parameters, init run), so two studies asking for the same run share it and a changed parameter never
    reuses an old one."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{prefix}-{readable}-{digest}"


def run_child(child: Child, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Execute the child's notebooks in order (steps finished earlier are skipped) and mark it done.

    Raises :class:`ChildFailed` after the runner wrote ``failed.json``. Safe to call in another process
    (submitit). ``log``: the runner's progress lines (None: quiet)."""
    folder = child.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "child.json").write_text(json.dumps(_describe(child), indent=2, default=str))
    tic = time.time()
    outcome = run_notebooks(child.steps, folder, log=log, label=f"{child.name} ")
    if not outcome.ok:
        failed = outcome.failure
        raise ChildFailed(f"child {child.name}: {failed['step']} failed ({failed['error']}); see {failed['executed']}")
    if child.run_path and Path(child.run_path).exists():  # every number traces back to a notebook in its run
        copies = Path(child.run_path) / "notebooks"
        copies.mkdir(exist_ok=True)
        for index in range(len(child.steps)):
            shutil.copy2(child.executed(index), copies / child.executed(index).name)
    result = dict(name=child.name, run_path=child.run_path, seconds=outcome.seconds, wall_seconds=time.time() - tic,
                  finished=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
    (folder / "done.json").write_text(json.dumps(result, indent=2))
    return result


def _describe(child: Child) -> dict[str, Any]:
    return dict(name=child.name, labels=child.labels, run_path=child.run_path,
                steps=[dict(notebook=s.notebook, parameters=s.parameters) for s in child.steps])  # fmt: skip


def write_manifest(path: Path, meta: dict[str, Any], children: list[Child]) -> Path:
    """The study's children (names, labels, notebooks and parameters) + ``meta`` (e.g. seeds), for the report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = dict(meta, children=[_describe(c) for c in children], studies_root=str(path.parent))
    path.write_text(json.dumps(body, indent=2, default=str))
    return path


def read_manifest(path: Path) -> tuple[dict[str, Any], list[Child]]:
    body = json.loads(Path(path).read_text())
    children = [
        Child(
            d["name"],
            tuple(NotebookStep(s["notebook"], s["parameters"]) for s in d["steps"]),
            labels=d["labels"],
            run_path=d["run_path"],
            studies_root=body["studies_root"],
        )  # fmt: skip
        for d in body.pop("children")
    ]
    return body, children
