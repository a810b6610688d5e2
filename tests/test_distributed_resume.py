"""Resume as a cluster job runs it: 2 processes (gloo), DDP and FSDP2. The stage's JSON state and its folders come
back as they were at the checkpoint on every rank, not as the killed run left them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("resume_worker.py")


@pytest.mark.slow
@pytest.mark.parametrize("parallel, precision", [("ddp", "no"), ("fsdp2", "no"), ("fsdp2", "bf16")])
def test_two_process_resume_restores_stage_state_and_folders_on_every_rank(tmp_path, parallel, precision):
    """fsdp2 + bf16: the Wan presets' own settings."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(WORKER), str(tmp_path),
           parallel, precision]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for seen in ranks:
        assert seen["killed"] == dict(updates=5, best="4")  # the killed run got past its checkpoint (3 steps)
        assert seen["resumed_at"] == 3
        assert seen["after_resume"] == dict(updates=3, best="2", sharded=parallel == "fsdp2")  # as at the checkpoint
        assert seen["finished"] == dict(updates=6, best="5")
