"""Dispatch a study's child runs: in this process (default), or through submitit (Slurm, or its local/debug
executors for trying the same path on a laptop).

A failed child is reported and the sweep goes on; children that finished earlier are skipped, so re-running a
sweep resumes it.

    report = run_children(children)                                  # local, one after the other
    report = run_children(children, "slurm", slurm=SlurmOptions(partition="gpu", gpus_per_node=8))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .children import Child, run_child

# executor name -> submitit cluster ("local" runs the children in this process, no submitit)
SUBMITIT_CLUSTERS = {"slurm": "slurm", "submitit-local": "local", "debug": "debug"}
EXECUTORS = ("local", *SUBMITIT_CLUSTERS)


@dataclass
class SlurmOptions:
    """Resources of one child job (submitit's AutoExecutor parameters)."""

    partition: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    timeout_min: int = 240
    mem_gb: int | None = None
    additional: dict[str, Any] = field(default_factory=dict)  # e.g. {"account": "my-project", "qos": "high"}

    def parameters(self) -> dict[str, Any]:
        params: dict[str, Any] = dict(timeout_min=self.timeout_min, gpus_per_node=self.gpus_per_node,
                                      cpus_per_task=self.cpus_per_task)  # fmt: skip
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if self.additional:
            params["slurm_additional_parameters"] = dict(self.additional)
        return params


@dataclass
class SweepReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished in an earlier sweep
    failed: dict[str, str] = field(default_factory=dict)  # child -> error
    seconds: float = 0.0

    def __str__(self) -> str:
        lines = [f"{len(self.ran)} ran, {len(self.skipped)} skipped (finished earlier), {len(self.failed)} failed "
                 f"in {self.seconds:.0f} s"]  # fmt: skip
        lines += [f"  FAILED {name}: {error}" for name, error in self.failed.items()]
        return "\n".join(lines)


def check_executor(executor: str) -> None:
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; allowed: {list(EXECUTORS)}")
    if executor != "local":
        try:
            import submitit  # noqa: F401
        except ImportError as error:
            raise ImportError(f"executor={executor!r} needs submitit: pip install submitit") from error


def run_children(
    children: list[Child],
    executor: str = "local",
    max_parallel: int | None = None,
    slurm: SlurmOptions | None = None,
    progress: bool = True,
) -> SweepReport:
    """Run every child that is not done yet; never raises for a failed child (see the report).

    ``max_parallel``: children in flight at once for the submitit executors (default: 1 on the local ones —
    a second training process on a small machine slows both far more than 2× — and all of them on Slurm).
    """
    check_executor(executor)
    names = [c.name for c in children]
    if len(set(names)) != len(names):
        raise ValueError(f"children must have distinct names: {sorted(n for n in names if names.count(n) > 1)}")
    report = SweepReport(skipped=[c.name for c in children if c.done])
    todo = [c for c in children if not c.done]
    tic = time.time()
    bar = tqdm(total=len(children), initial=len(report.skipped), desc="children", disable=not progress)
    if executor == "local":
        for child in todo:
            bar.set_postfix_str(child.name)
            try:
                run_child(child, log=bar.write if progress else None)  # its steps' lines above the bar
                report.ran.append(child.name)
            except Exception as error:  # a failed child must not kill the sweep
                report.failed[child.name] = str(error)
            bar.update()
    else:
        _run_submitit(todo, executor, max_parallel, slurm or SlurmOptions(), report, bar)
    bar.close()
    report.seconds = time.time() - tic
    if progress:
        print(report)
    return report


def make_submitter(executor: str, folder: Path, slurm: SlurmOptions):
    """submitit's AutoExecutor for ``executor`` with the child jobs' resources (logs under ``folder``/<job id>)."""
    import submitit

    submitter = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster=SUBMITIT_CLUSTERS[executor])
    submitter.update_parameters(name="aad1-study", **slurm.parameters())
    return submitter


def _run_submitit(todo, executor, max_parallel, slurm, report, bar) -> None:
    if not todo:
        return
    cluster = SUBMITIT_CLUSTERS[executor]
    submitter = make_submitter(executor, Path(todo[0].studies_root) / "submitit", slurm)
    limit = max_parallel or (len(todo) if cluster == "slurm" else 1)
    queue, running = list(todo), []
    while queue or running:
        while queue and len(running) < limit:
            child = queue.pop(0)
            running.append((child, submitter.submit(run_child_reporting, child)))
        # the debug executor runs a job when its result is asked for: wait on the oldest job
        child, job = running[0] if cluster == "debug" else _first_done(running)
        running.remove((child, job))
        try:
            outcome = job.result()
        except Exception as error:  # the job itself failed (killed, timed out, could not start)
            outcome = {"failed": f"job {job.job_id}: {_last_line(error)}"}
        if "failed" in outcome:
            report.failed[child.name] = outcome["failed"]
        else:
            report.ran.append(child.name)
        bar.update()


def run_child_reporting(child: Child) -> dict:
    """What a submitit job runs: a failed child is a result, not an exception (submitit's debug executor
    would open pdb on one, and a sweep must go on)."""
    try:
        return run_child(child)
    except Exception as error:
        return {"failed": _last_line(error)}


def _last_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else repr(error)


def _first_done(running):
    while True:
        for pair in running:
            if pair[1].done():
                return pair
        time.sleep(2.0)
