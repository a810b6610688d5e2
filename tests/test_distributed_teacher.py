"""Multi-process training on CPU (gloo): 2 processes see the same global batch as 1 process."""

import json
import subprocess
import sys

import pytest


def _run(tmp_path, nproc, name):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "-m", "aad1lib.train",
           "teacher", "--preset", "tiny", "--run-name", name, "--runs-root", str(tmp_path),
           "--set", "teacher.steps=3", "--set", "train.tracker=none", "--set", "train.sample_every=100",
           "--set", "train.grad_clip=0.0"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = (tmp_path / f"teacher-tiny-{name}" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.mark.slow
def test_two_process_ddp_losses_equal_one_process_with_same_global_batch(tmp_path):
    one = _run(tmp_path, 1, "one")
    two = _run(tmp_path, 2, "two")
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=1e-4, abs=1e-5)
