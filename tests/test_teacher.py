"""Stage 0: the teacher trains on the tiny preset, and a Wan-style preset loads a local checkpoint instead."""

import pytest
import torch
import yaml

from aad1lib.config import CONFIG_DIR, load_preset
from aad1lib.models import CausalWanTransformer3DModel
from aad1lib.train.teacher import train_teacher


def test_teacher_flow_matching_loss_decreases_on_tiny(tmp_path):
    cfg = load_preset("tiny", {"teacher.steps": 40, "train.tracker": "none", "train.sample_every": 100})
    result = train_teacher(cfg, run_name="learn", runs_root=tmp_path)
    losses = [m["loss"] for m in result.run.read_metrics()]
    assert sum(losses[-10:]) / 10 < 0.9 * sum(losses[:10]) / 10
    assert (result.run.path / "model" / "config.json").exists() and result.run.finished


def test_teacher_cosine_schedule_decays_the_learning_rate_to_zero_after_warmup(tmp_path):
    cfg = load_preset("tiny", {"teacher.steps": 6, "teacher.warmup_steps": 2, "teacher.lr_schedule": "cosine",
                               "train.tracker": "none", "train.sample_every": 100})  # fmt: skip
    lrs = [m["lr"] for m in train_teacher(cfg, run_name="cos", runs_root=tmp_path).run.read_metrics()]
    peak = cfg.teacher.lr
    assert lrs[:2] == pytest.approx([peak / 2, peak])  # logged after each step's update: linear warm-up
    assert all(a > b for a, b in zip(lrs[1:], lrs[2:], strict=False))  # then cosine decay ...
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # ... to zero at the last step


def test_pretrained_preset_loads_local_wan_checkpoint_instead_of_training(tmp_path):
    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    wan_root = tmp_path / "Wan-tiny"
    reference = CausalWanTransformer3DModel(**load_preset("tiny").wan_kwargs())
    reference.save_pretrained(wan_root / "transformer")
    raw["name"] = "tiny-pretrained"
    raw["model"]["pretrained"] = str(wan_root)
    preset = tmp_path / "tiny-pretrained.yaml"
    preset.write_text(yaml.safe_dump(raw))
    result = train_teacher(load_preset(preset, {"train.tracker": "none"}), run_name="wan", runs_root=tmp_path)
    assert result.run.read_metrics() == [] and result.run.finished
    for a, b in zip(reference.state_dict().values(), result.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_demo_preset_loads_its_committed_teacher_from_a_repository_relative_path():
    """demo.yaml names experiments/checkpoints/demo-teacher-long relative to the repository root (any working
    directory: papermill runs in notebooks/); the checkpoint holds a trained residual teacher of the preset's sizes."""
    from aad1lib.builders import build_wan
    from aad1lib.paths import ROOT

    cfg = load_preset("demo")
    assert cfg.model.pretrained == str(ROOT / "experiments/checkpoints/demo-teacher-long")
    assert cfg.model.residual_to_first_frame and cfg.data.background_blur > 0
    model = build_wan(cfg)  # check_pretrained_sizes: the preset's sizes describe the checkpoint
    assert model.proj_out.weight.abs().sum() > 0  # trained, not the zero-initialised output of a fresh residual model
    assert load_preset("demo", {"model.pretrained": None}).model.pretrained is None  # retraining on request
