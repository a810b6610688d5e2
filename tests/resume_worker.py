"""Run under ``torch.distributed.run`` by test_distributed_resume.py: a TrainLoop killed after its checkpoint,
then resumed, on every rank; each rank writes what it saw to ``<root>/rank<r>.json``."""

import json
import sys
from pathlib import Path

import torch
from diffusers.optimization import get_scheduler

from aad1lib.config import load_preset
from aad1lib.train.loop import TrainLoop


def start_loop(cfg, root: Path, interrupt_at: int | None = None):
    loop = TrainLoop("state", "tiny", cfg.to_dict(), cfg.train, cfg.seed, run_name="x", runs_root=root)
    model = loop.add_model("m", torch.nn.Linear(4, 4), lambda params: torch.optim.AdamW(params, lr=0.1),
                           lambda opt: get_scheduler("constant", opt))  # fmt: skip
    loop.state["updates"] = 0
    loop.checkpointed_folders.append("best_model")

    def step_fn(step, gen):
        if step == interrupt_at:
            raise KeyboardInterrupt
        loss = model(torch.randn(4, 4, generator=gen)).pow(2).mean()
        loop.optimize("m", loss)
        loop.state["updates"] += 1
        if loop.is_main:  # rank 0 keeps the stage's folders, as Stage II's best weights
            (loop.run.path / "best_model").mkdir(exist_ok=True)
            (loop.run.path / "best_model" / "step.txt").write_text(str(step))
        return {"loss": loss.item()}

    return loop, step_fn


def main(root: Path, parallel: str, precision: str) -> None:
    cfg = load_preset("tiny", {"train.checkpoint_every": 3, "train.tracker": "none", "train.parallel": parallel,
                               "train.mixed_precision": precision})  # fmt: skip
    seen: dict = {}
    best = root / "state-tiny-x" / "best_model" / "step.txt"
    loop, step_fn = start_loop(cfg, root, interrupt_at=5)
    try:
        loop.fit(step_fn, max_steps=6)
    except KeyboardInterrupt:
        seen["killed"] = dict(updates=loop.state["updates"], best=best.read_text())
    loop.accelerator.wait_for_everyone()
    loop, step_fn = start_loop(cfg, root)
    seen["resumed_at"] = loop.resume()
    loop.accelerator.wait_for_everyone()  # rank 0 restored the folders
    seen["after_resume"] = dict(updates=loop.state["updates"], best=best.read_text(), sharded=loop.sharded)
    loop, step_fn = start_loop(cfg, root)
    loop.fit(step_fn, max_steps=6)
    loop.accelerator.wait_for_everyone()
    seen["finished"] = dict(updates=loop.state["updates"], best=best.read_text())
    rank = loop.accelerator.process_index
    (root / f"rank{rank}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
