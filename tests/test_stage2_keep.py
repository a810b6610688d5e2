"""Stage II hands on the weights ``stage2.keep`` names: the final update's ("last", the paper's fixed-length
warm-up) or the lowest teacher validation loss's ("best", early stopping)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from aad1lib.config import load_preset
from aad1lib.study.designs import kept_stage1_weights
from aad1lib.train.stage1 import train_stage1
from aad1lib.train.stage2 import train_stage2
from aad1lib.train.teacher import train_teacher

FAST = {"train.tracker": "none", "train.sample_every": 1000, "teacher.steps": 3, "stage1.steps": 3,
        "stage1.ode_pairs": 4, "stage1.ode_steps": 4, "stage1.shard_size": 4, "stage2.steps": 2,
        "stage2.critic_steps": 1, "stage2.eval_every": 1, "stage2.lr_generator": 1e-3,
        "train.checkpoint_every": 2}  # fmt: skip


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    cfg = load_preset("tiny", FAST)
    teacher = train_teacher(cfg, run_name="t", runs_root=root)
    yield root, train_stage1(cfg, teacher.run, run_name="t", runs_root=root).run
    torch.set_num_threads(threads)


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "diffusion_pytorch_model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage2_keep_last_hands_on_the_final_update_whatever_the_validation_says(stage1):
    root, s1 = stage1
    run = train_stage2(load_preset("tiny", dict(FAST, **{"stage2.keep": "last"})), s1, run_name="last",
                       runs_root=root).run  # fmt: skip
    info = json.loads((run.path / "finished.json").read_text())
    assert info["keep"] == "last" and info["kept_step"] == 2
    assert info["final_val"] is not None and info["best_step"] is not None
    final_update = load_file(str(run.checkpoint_dir(2) / "generator.safetensors"))  # the live weights after step 2
    assert _same(_weights(run.path / "model"), final_update)
    assert not _same(_weights(run.path / "model"), _weights(s1.path / "model"))  # DMD moved it
    assert not (run.path / "best_model").exists()  # nothing selected by validation
    assert not kept_stage1_weights(run)


def test_stage2_keep_best_hands_on_the_lowest_validation_loss(stage1):
    root, s1 = stage1
    run = train_stage2(load_preset("tiny", FAST), s1, run_name="best", runs_root=root).run
    info = json.loads((run.path / "finished.json").read_text())
    vals = [m["val_teacher_loss"] for m in run.read_metrics() if "val_teacher_loss" in m]
    assert info["keep"] == "best" and info["kept_step"] == info["best_step"]
    assert info["best_val"] == min(vals) and info["final_val"] == vals[-1]
    assert _same(_weights(run.path / "model"), _weights(run.path / "best_model"))
    assert kept_stage1_weights(run) == (info["best_step"] == 0)
