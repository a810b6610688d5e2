"""Stage III: exact resume, 2-process FSDP2 == 1 process, divergence guard, bad input refused up front."""

import json

import pytest
import torch
from standins import torchrun

import aad1lib.train.stage3 as stage3_module
from aad1lib.config import ConfigError, load_preset
from aad1lib.models import CausalWanTransformer3DModel
from aad1lib.train import DivergenceError
from aad1lib.train.stage1 import train_stage1
from aad1lib.train.stage2 import train_stage2
from aad1lib.train.stage3 import train_stage3
from aad1lib.train.teacher import train_teacher

FAST = {"train.tracker": "none", "train.sample_every": 1000, "teacher.steps": 3, "stage1.steps": 3,
        "stage1.ode_pairs": 4, "stage1.ode_steps": 4, "stage1.shard_size": 4, "stage2.steps": 1,
        "stage2.critic_steps": 1, "stage2.eval_every": 1, "stage3.steps": 4, "train.checkpoint_every": 2}  # fmt: skip


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A tiny teacher -> Stage I -> Stage II chain (seconds), shared by the Stage III tests."""
    root = tmp_path_factory.mktemp("runs")
    cfg = load_preset("tiny", FAST)
    teacher = train_teacher(cfg, run_name="t", runs_root=root)
    s1 = train_stage1(cfg, teacher.run, run_name="t", runs_root=root)
    s2 = train_stage2(cfg, s1.run, run_name="t", runs_root=root)
    return dict(root=root, cfg=cfg, teacher=teacher.run, stage1=s1.run, stage2=s2.run)


def _weights(run):
    return CausalWanTransformer3DModel.from_pretrained(run.path / "model").state_dict()


def _losses(run):
    keep = ("d_loss", "g_loss", "r1", "r2", "d_real", "d_fake")
    return [{k: v for k, v in m.items() if k in keep} for m in run.read_metrics()]


def test_interrupted_stage3_resumes_to_the_same_losses_and_weights(pipeline, monkeypatch):
    cfg, root = pipeline["cfg"], pipeline["root"]
    full = train_stage3(cfg, pipeline["stage2"], run_name="full", runs_root=root)

    real_loss, calls = stage3_module.generator_adversarial_loss, {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 4:  # during step 3, after the step-2 checkpoint
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(stage3_module, "generator_adversarial_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_stage3(cfg, pipeline["stage2"], run_name="cut", runs_root=root)
    monkeypatch.setattr(stage3_module, "generator_adversarial_loss", real_loss)
    resumed = train_stage3(cfg, pipeline["stage2"], run_name="cut", runs_root=root)

    assert _losses(resumed.run) == _losses(full.run) and len(_losses(full.run)) == 4
    for (name, a), b in zip(_weights(full.run).items(), _weights(resumed.run).values(), strict=True):
        assert torch.equal(a, b), name


def _torchrun(pipeline, nproc, name, *sets):
    return torchrun("stage3", "tiny", name, pipeline["root"], nproc, init_from=pipeline["stage2"].path,
                    sets=["stage3.steps=3", "train.tracker=none", "train.sample_every=1000", *sets])  # fmt: skip


@pytest.mark.slow
def test_two_process_fsdp2_matches_one_process_and_its_checkpoint_loads_in_one_process(pipeline):
    one = _torchrun(pipeline, 1, "fsdp-ref")
    two = _torchrun(pipeline, 2, "fsdp-two", "train.parallel=fsdp2")
    assert json.loads((two.path / "finished.json").read_text())["world_size"] == 2
    for a, b in zip(_losses(one), _losses(two), strict=True):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-6)
    for (name, a), b in zip(_weights(one).items(), _weights(two).values(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)


def test_saturated_discriminator_stops_with_clear_message_keeping_last_checkpoint(pipeline):
    cfg = load_preset("tiny", {**FAST, "stage3.saturation_gap": -1e9, "stage3.saturation_steps": 3,
                               "train.checkpoint_every": 1})  # fmt: skip
    with pytest.raises(DivergenceError, match="saturated.*step-0000002"):
        train_stage3(cfg, pipeline["stage2"], run_name="sat", runs_root=pipeline["root"])


@pytest.mark.parametrize(
    "overrides, message",
    [({"stage3.lam": -1.0}, "lam"), ({"stage3.r1_sigma": 0.0}, "r1_sigma"),
     ({"stage3.disc_attention": "sideways"}, "allowed values"), ({"stage3.disc_logit": "pixel"}, "allowed values")],
)  # fmt: skip
def test_bad_stage3_settings_are_refused_by_the_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_preset("tiny", overrides)


def test_init_from_a_run_that_is_not_stage2_is_refused_before_any_work(pipeline):
    before = sorted(p.name for p in pipeline["root"].iterdir())
    with pytest.raises(ValueError, match="init_from must be a finished Stage II run"):
        train_stage3(pipeline["cfg"], pipeline["teacher"], run_name="bad", runs_root=pipeline["root"])
    assert sorted(p.name for p in pipeline["root"].iterdir()) == before
