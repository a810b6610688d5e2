"""The one papermill runner: ``make reproduce`` / ``make study`` (:mod:`aad1lib.reproduce`) and every study
child (:mod:`aad1lib.study.children`) execute their notebooks through :func:`run_notebooks`.

A sequence of steps executes into one folder, each notebook with ``notebooks/`` as its working directory::

    <folder>/<step>.ipynb         the executed notebook (kept when it fails: it holds the traceback)
    <folder>/<step>.done.json     written once the step finished: notebook, parameters, seconds, commit
    <folder>/failed.json          the step that failed, its error and where its executed notebook is

A step whose marker holds the same notebook and parameters is skipped, so re-running resumes; a step whose
parameters changed runs again. A failure stops the sequence and is returned, not raised: the finished steps
keep their markers and the caller decides whether the next sequence (the next child) goes on.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import NOTEBOOKS
from .run_folder import atomic_write_json, git_commit


@dataclass(frozen=True)
class Step:
    notebook: str  # name under notebooks/, e.g. "03_adversarial", or a path to an .ipynb
    parameters: dict[str, Any] = field(default_factory=dict)
    key: str = ""  # names the executed notebook and its marker (default: the notebook's name)
    what: str = ""  # one line for the progress log
    html: Path | None = None  # also render the executed notebook to this HTML file, without input cells

    @property
    def source(self) -> Path:
        return Path(self.notebook) if self.notebook.endswith(".ipynb") else NOTEBOOKS / f"{self.notebook}.ipynb"

    @property
    def name(self) -> str:
        return self.key or self.source.stem

    def executed(self, folder: Path) -> Path:
        return Path(folder) / f"{self.name}.ipynb"

    def marker(self, folder: Path) -> Path:
        return Path(folder) / f"{self.name}.done.json"


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished in an earlier invocation
    seconds: dict[str, float] = field(default_factory=dict)  # every finished step's wall time, skipped ones too
    failure: dict[str, Any] | None = None  # failed.json's body

    @property
    def ok(self) -> bool:
        return self.failure is None


def run_notebooks(
    steps: Sequence[Step],
    folder: Path,
    log: Callable[[str], None] | None = print,
    label: str = "",
    cell_progress: bool = False,
) -> Outcome:
    """Execute ``steps`` in order into ``folder``, skipping those finished earlier; stop at the first failure.

    ``log`` gets one line per step event (None: quiet), prefixed by ``label``; ``cell_progress`` shows
    papermill's per-cell progress bar."""
    names = [step.name for step in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"steps must have distinct names: {sorted(n for n in names if names.count(n) > 1)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "failed.json").unlink(missing_ok=True)
    say = log or (lambda line: None)
    outcome, start = Outcome(), time.time()
    for i, step in enumerate(steps, 1):
        prefix = f"{label}[{i}/{len(steps)}] {step.name}" + (f" ({step.what})" if step.what else "")
        marker, executed = step.marker(folder), step.executed(folder)
        if marker.exists():
            done = json.loads(marker.read_text())
            if _same(done.get("parameters"), step.parameters) and done.get("notebook") == step.notebook:
                outcome.skipped.append(step.name)
                outcome.seconds[step.name] = done["seconds"]
                say(f"{prefix}: done earlier, skipped ({_duration(done['seconds'])})")
                continue
            say(f"{prefix}: notebook or parameters changed since it finished, running it again")
            marker.unlink()
        say(f"{prefix}: running …")
        tic = time.time()
        try:
            _execute(step, executed, cell_progress)
        except Exception as error:  # papermill raises PapermillExecutionError with the cell's traceback
            outcome.failure = dict(step=step.name, index=i - 1, notebook=step.source.stem, executed=str(executed),
                                   error=_short_error(error), failed=time.strftime("%Y-%m-%d %H:%M:%S"))  # fmt: skip
            atomic_write_json(folder / "failed.json", outcome.failure, default=str)
            say(f"{prefix}: FAILED after {_duration(time.time() - tic)}: {outcome.failure['error']}\n"
                f"    the executed notebook with the traceback: {executed}")  # fmt: skip
            break
        seconds = outcome.seconds[step.name] = time.time() - tic
        outcome.ran.append(step.name)
        # a marker is whole or absent, also when the runner is killed
        atomic_write_json(marker, dict(notebook=step.notebook, parameters=step.parameters, seconds=seconds,
                                       commit=_commit(), finished=time.strftime("%Y-%m-%d %H:%M:%S")),
                          default=str)  # fmt: skip
        say(f"{prefix}: finished in {_duration(seconds)} ({_duration(time.time() - start)} since start)")
    say(f"{label}{len(outcome.seconds)}/{len(steps)} steps done ({len(outcome.ran)} now, {len(outcome.skipped)} "
        f"earlier); this invocation {_duration(time.time() - start)}, all finished steps "
        f"{_duration(sum(outcome.seconds.values()))}")  # fmt: skip
    return outcome


def _execute(step: Step, executed: Path, cell_progress: bool) -> None:
    import papermill

    with quiet_papermill():
        papermill.execute_notebook(str(step.source), str(executed), parameters=step.parameters,
                                   cwd=str(NOTEBOOKS), progress_bar=cell_progress)  # fmt: skip
    if step.html is not None:  # = jupyter nbconvert --to html --no-input
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
        body, _ = exporter.from_filename(str(executed))
        step.html.parent.mkdir(parents=True, exist_ok=True)
        step.html.write_text(body, encoding="utf-8")


@contextlib.contextmanager
def quiet_papermill():
    """papermill warns about every parameter annotation it cannot parse (``int | None``) and every name it
    cannot find; our notebooks check their parameters themselves (``check_parameters``) and refuse unknown
    ones, so those warnings are noise in a sweep's log."""
    log = logging.getLogger("papermill")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


@functools.cache  # once per process (a sweep): git status runs the notebooks' clean filter, seconds each time
def _commit() -> str | None:
    return git_commit()


def _short_error(error: BaseException) -> str:
    """The exception's last line (papermill's error carries the kernel's ename: evalue)."""
    name = getattr(error, "ename", None)
    if name:
        return f"{name}: {getattr(error, 'evalue', '')}"[:500]
    return traceback.format_exception_only(type(error), error)[-1].strip()[:500]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
