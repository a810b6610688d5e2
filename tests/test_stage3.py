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
    heldout = [[{k: m[k] for k in ("d_acc", "d_pair_acc", "d_gap_heldout")} for m in run.read_metrics() if "d_acc" in m]
               for run in (one, two)]  # fmt: skip
    assert len(heldout[0]) == len(heldout[1]) == 1  # step 0: every rank ran G and D on the held-out clips
    for a, b in zip(*heldout, strict=True):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    for (name, a), b in zip(_weights(one).items(), _weights(two).values(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4, msg=name)


def _finished(run):
    return json.loads((run.path / "finished.json").read_text())


def _steps_with(run, key):
    return [m["step"] for m in run.read_metrics() if key in m]


def test_stage3_logs_heldout_discriminator_accuracy(pipeline):
    # 3 held-out clips at 2 per forward (the batch): encoded and evaluated in uneven parts
    cfg = load_preset("tiny", {**FAST, "stage3.disc_eval_every": 2, "stage3.disc_eval_clips": 3, "train.batch_size": 2})
    result = train_stage3(cfg, pipeline["stage2"], run_name="heldout", runs_root=pipeline["root"])

    evals = [m for m in result.run.read_metrics() if "d_acc" in m]
    assert [m["step"] for m in evals] == [0, 2]  # step 0 (before any update), then every disc_eval_every
    n = cfg.stage3.disc_eval_clips
    for m in evals:
        assert 0 <= m["d_acc"] <= 1 and 0 <= m["d_pair_acc"] <= 1
        assert m["d_acc"] * 2 * n == pytest.approx(round(m["d_acc"] * 2 * n))  # a fraction of the 2N clips
        assert m["d_pair_acc"] * n == pytest.approx(round(m["d_pair_acc"] * n))  # ... of the N pairs
        assert m["d_gap_heldout"] == m["d_gap_heldout"]  # finite (the loop refuses NaN)
    info = _finished(result.run)
    assert (info["d_warmup_end_step"], info["warmup_reached"]) == (0, True)  # d_warmup_steps = 0: G from step 0
    assert info["d_acc_at_warmup_end"] == evals[0]["d_acc"]


def test_heldout_accuracy_counts_clips_by_logit_sign_and_pairs_by_order():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([-1.0, -3.0, 1.0])
    acc = stage3_module.heldout_accuracy(real, fake)
    assert acc["d_acc"] == pytest.approx(4 / 6)  # reals 2.0, 0.5 > 0; fakes -1, -3 < 0
    assert acc["d_pair_acc"] == pytest.approx(2 / 3)  # pairs 0, 1 ordered right
    assert acc["d_gap_heldout"] == pytest.approx(real.mean() - fake.mean())
    frame = stage3_module.heldout_accuracy(real[:, None].expand(3, 4), fake[:, None].expand(3, 4))
    assert frame == acc  # frame logits: the clip's mean


def _scripted_accuracy(monkeypatch, pair_accs):
    """Replace the held-out metrics (D still runs) by a script of d_pair_acc values, one per evaluation."""
    calls = []

    def scripted(logits_real, logits_fake):
        value = pair_accs[min(len(calls), len(pair_accs) - 1)]
        calls.append(value)
        return dict(d_acc=value, d_pair_acc=value, d_gap_heldout=0.0)

    monkeypatch.setattr(stage3_module, "heldout_accuracy", scripted)
    return calls


def test_generator_waits_for_discriminator_accuracy(pipeline, monkeypatch, capsys):
    root = pipeline["root"]
    warm = {**FAST, "stage3.d_warmup_accuracy": 0.9, "stage3.disc_eval_every": 2}
    # unreachable: G starts at the cap, with a warning, and the run records that the threshold was not reached
    _scripted_accuracy(monkeypatch, [0.5])
    capped = load_preset("tiny", {**warm, "stage3.steps": 5, "stage3.d_warmup_max_steps": 3})
    run = train_stage3(capped, pipeline["stage2"], run_name="warm-cap", runs_root=root).run
    assert _steps_with(run, "g_loss") == [3, 4]
    assert _steps_with(run, "d_acc") == [0, 2, 3, 4]  # and at the cap, where G starts
    assert "WARNING" in capsys.readouterr().out
    info = _finished(run)
    assert (info["d_warmup_end_step"], info["warmup_reached"], info["d_pair_acc_at_warmup_end"]) == (3, False, 0.5)
    # reachable: G starts at the first evaluation at or after d_warmup_steps whose d_pair_acc reaches the threshold
    _scripted_accuracy(monkeypatch, [0.95, 0.5, 0.9, 0.5])  # steps 0 (before d_warmup_steps), 2, 4, 6
    reached = load_preset("tiny", {**warm, "stage3.steps": 7, "stage3.d_warmup_steps": 1,
                                   "stage3.d_warmup_max_steps": 100})  # fmt: skip
    run = train_stage3(reached, pipeline["stage2"], run_name="warm-reached", runs_root=root).run
    assert _steps_with(run, "g_loss") == [4, 5, 6]  # and it stays on when the accuracy drops again
    info = _finished(run)
    assert (info["d_warmup_end_step"], info["warmup_reached"], info["d_pair_acc_at_warmup_end"]) == (4, True, 0.9)


def test_accuracy_warmup_state_survives_a_resume(pipeline, monkeypatch):
    cfg = load_preset("tiny", {**FAST, "stage3.steps": 6, "stage3.d_warmup_accuracy": 0.9,
                               "stage3.d_warmup_max_steps": 100, "stage3.disc_eval_every": 2})  # fmt: skip
    _scripted_accuracy(monkeypatch, [0.5, 1.0, 0.5])  # reached at step 2 only
    real_loss, calls = stage3_module.generator_adversarial_loss, {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 4:  # G's update of step 5, after the step-4 checkpoint
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(stage3_module, "generator_adversarial_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_stage3(cfg, pipeline["stage2"], run_name="warm-cut", runs_root=pipeline["root"])
    monkeypatch.setattr(stage3_module, "generator_adversarial_loss", real_loss)
    _scripted_accuracy(monkeypatch, [0.5])  # the resumed run's evaluation (step 4) alone would not start G
    run = train_stage3(cfg, pipeline["stage2"], run_name="warm-cut", runs_root=pipeline["root"]).run
    assert _steps_with(run, "g_loss") == [2, 3, 4, 5]
    assert (_finished(run)["d_warmup_end_step"], _finished(run)["warmup_reached"]) == (2, True)


@pytest.mark.parametrize(
    "overrides, message",
    [({"stage3.d_warmup_accuracy": 0.5, "stage3.d_warmup_max_steps": 10}, r"d_warmup_accuracy must lie in \(0.5, 1\]"),
     ({"stage3.d_warmup_accuracy": 1.2, "stage3.d_warmup_max_steps": 10}, r"d_warmup_accuracy must lie in"),
     ({"stage3.d_warmup_accuracy": 0.9}, "needs stage3.d_warmup_max_steps"),
     ({"stage3.d_warmup_accuracy": 0.9, "stage3.d_warmup_steps": 5, "stage3.d_warmup_max_steps": 4},
      "d_warmup_max_steps >= stage3.d_warmup_steps"),
     ({"stage3.disc_eval_every": 0}, "disc_eval_every")],
)  # fmt: skip
def test_bad_discriminator_warmup_settings_are_refused_by_the_config(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_preset("tiny", overrides)


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
