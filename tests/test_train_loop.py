"""The shared loop: exact resume after an interruption, a NaN guard that keeps the last good checkpoint,
run folders that are never overwritten."""

import json

import pytest
import torch

from aad1lib.config import load_preset
from aad1lib.run_folder import RunExistsError
from aad1lib.train import DivergenceError, TrainLoop
from aad1lib.train.teacher import train_teacher


def _tiny(**overrides):
    base = {"teacher.steps": 8, "train.checkpoint_every": 3, "train.sample_every": 100, "train.tracker": "none",
            "train.ema_decay": 0.9}  # fmt: skip
    return load_preset("tiny", {**base, **overrides})


def test_resume_after_interruption_gives_same_weights_and_metrics(tmp_path, monkeypatch):
    cfg = _tiny()
    full = train_teacher(cfg, run_name="full", runs_root=tmp_path)

    import aad1lib.train.teacher as teacher_module

    real_loss = teacher_module.teacher_loss
    calls = {"n": 0}

    def interrupted_loss(*args, **kwargs):  # the 8th step (index 7) is interrupted
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(teacher_module, "teacher_loss", interrupted_loss)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, run_name="resumed", runs_root=tmp_path)
    monkeypatch.setattr(teacher_module, "teacher_loss", real_loss)
    run_dir = tmp_path / "teacher-tiny-resumed"
    assert not (run_dir / "finished.json").exists()
    assert len([json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]) == 7
    resumed = train_teacher(cfg, run_name="resumed", runs_root=tmp_path)  # resumes from step 6

    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "peak_rss_mb")} for r in rows]  # noqa: E731
    assert strip(resumed.run.read_metrics()) == strip(full.run.read_metrics())
    assert [r["step"] for r in resumed.run.read_metrics()] == list(range(8))


def test_finished_run_is_never_overwritten(tmp_path):
    cfg = _tiny(**{"teacher.steps": 2})
    run = train_teacher(cfg, run_name="once", runs_root=tmp_path).run
    before = (run.path / "model" / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="already finished"):
        train_teacher(cfg, run_name="once", runs_root=tmp_path)
    assert (run.path / "model" / "diffusion_pytorch_model.safetensors").read_bytes() == before


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(tmp_path):
    cfg = _tiny()
    loop = TrainLoop("nan", "tiny", cfg.to_dict(), cfg.train, cfg.seed, run_name="x", runs_root=tmp_path)
    model = torch.nn.Linear(2, 1)
    loop.add_model("m", model, lambda params: torch.optim.SGD(params, lr=0.1))

    def step_fn(step, gen):
        loss = model(torch.randn(4, 2, generator=gen)).pow(2).mean()
        if step == 4:
            loss = loss * float("nan")
        loop.optimize("m", loss)
        return {"loss": loss.item()}

    with pytest.raises(DivergenceError, match="nan.*step-0000003"):
        loop.fit(step_fn, max_steps=10)
    assert [p.name for p in loop.run.checkpoints()] == ["step-0000003"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_failed_start_leaves_no_run_folder_that_blocks_a_corrected_rerun(tmp_path):
    """A run that stops on a config/input error (here: its teacher's checkpoint is gone) left an unfinished folder;
    the corrected run with the same run_name must start, not raise RunExistsError. Nothing with results is reused."""
    import shutil

    import yaml

    from aad1lib.config import CONFIG_DIR
    from aad1lib.models import CausalWanTransformer3DModel
    from aad1lib.run_folder import RunFolder
    from aad1lib.train.stage1 import train_stage1

    # a teacher run that points to a Wan checkpoint (cluster presets), whose folder was then removed
    raw = yaml.safe_load((CONFIG_DIR / "tiny.yaml").read_text())
    raw["model"]["pretrained"] = str(tmp_path / "Wan")
    (tmp_path / "wan.yaml").write_text(yaml.safe_dump(raw))
    CausalWanTransformer3DModel(**load_preset("tiny").wan_kwargs()).save_pretrained(tmp_path / "Wan")
    gone = train_teacher(load_preset(tmp_path / "wan.yaml", {"train.tracker": "none"}), run_name="gone",
                         runs_root=tmp_path).run  # fmt: skip
    shutil.rmtree(tmp_path / "Wan")
    good = train_teacher(_tiny(**{"teacher.steps": 2}), run_name="good", runs_root=tmp_path).run

    cfg = load_preset("tiny", {"stage1.steps": 2, "stage1.ode_pairs": 4, "train.sample_every": 100})  # tensorboard
    with pytest.raises(OSError):
        train_stage1(cfg, gone, run_name="x", runs_root=tmp_path)
    failed = RunFolder(tmp_path / "stage1-tiny-x")  # (none at all if the trainer checks its inputs first)
    assert not failed.path.exists() or not (failed.finished or failed.holds_results())
    result = train_stage1(cfg, good, run_name="x", runs_root=tmp_path)  # corrected: another teacher run
    assert result.run.path == failed.path and result.run.finished
    assert result.run.config["init_from"] == str(good.path) and result.run.read_metrics()

    # a started-only folder (config, empty checkpoints/samples, tracker hparams) takes the new config
    run = RunFolder.create("s", "tiny", {"a": 1}, name="empty", root=tmp_path)
    (run.path / "tracking").mkdir()
    (run.path / "tracking" / "hparams.yml").write_text("a: 1\n")
    assert not run.holds_results()
    assert RunFolder.create("s", "tiny", {"a": 2}, name="empty", root=tmp_path).config == {"a": 2}
    assert not (run.path / "tracking").exists() and (run.path / "run.json").exists()

    # an unfinished run that holds metrics or a checkpoint is never restarted with another config
    for produce in ("metrics", "checkpoint"):
        config = {"a": 1}
        run = RunFolder.create("s", "tiny", config, name=produce, root=tmp_path)
        if produce == "metrics":
            run.log_metrics({"step": 0, "loss": 1.0})
        else:
            run.commit_checkpoint(run.begin_checkpoint(3), 3, {}, keep=2)
        assert run.holds_results()
        with pytest.raises(RunExistsError, match="different config"):
            RunFolder.create("s", "tiny", {"a": 2}, name=produce, root=tmp_path)
        assert RunFolder.create("s", "tiny", config, name=produce, root=tmp_path).config == config  # resume
        assert run.holds_results() and run.config == config


def test_a_bf16_stage_then_an_fp32_stage_train_in_one_process(tmp_path):
    # accelerate refuses a second Accelerator with another mixed precision in the same process; notebooks and
    # test sessions train stages one after another
    from aad1lib.config import load_preset
    from aad1lib.train.teacher import train_teacher

    for precision in ("bf16", "no"):
        cfg = load_preset("tiny", {"train.tracker": "none", "teacher.steps": 1, "train.mixed_precision": precision,
                                   "train.sample_every": 1000})  # fmt: skip
        result = train_teacher(cfg, run_name=precision, runs_root=tmp_path)
        assert result.run.finished and result.run.config["train"]["mixed_precision"] == precision


class _Touch:
    """Unpickling it runs ``os.system("touch <marker>")``: what a crafted file in a shared run folder could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_resume_refuses_a_crafted_pickle_in_the_run_folder(tmp_path):
    import pickle

    from diffusers.optimization import get_scheduler

    from aad1lib.train import UnsafeCheckpointError

    cfg = _tiny()

    def start_loop():
        loop = TrainLoop("pickle", "tiny", cfg.to_dict(), cfg.train, cfg.seed, run_name="x", runs_root=tmp_path)
        model = loop.add_model("m", torch.nn.Linear(2, 1), lambda params: torch.optim.AdamW(params, lr=0.1),
                               lambda opt: get_scheduler("constant_with_warmup", opt, num_warmup_steps=2),
                               ema_decay=0.9)  # fmt: skip

        def step_fn(step, gen):
            loss = model(torch.randn(4, 2, generator=gen)).pow(2).mean()
            loop.optimize("m", loss)
            return {"loss": loss.item()}

        return loop, step_fn

    loop, step_fn = start_loop()
    loop.fit(step_fn, max_steps=3)  # checkpoint step-0000003: m.safetensors, m.optim.pt, m.sched.pt, ema.pt
    checkpoint = loop.run.latest_checkpoint()
    honest = {f: (checkpoint / f).read_bytes() for f in ("ema.pt", "m.optim.pt")}

    (tmp_path / "probe").mkdir()
    pickle.loads(pickle.dumps(_Touch(tmp_path / "probe" / "ran")))  # the payload does run when unpickled
    assert (tmp_path / "probe" / "ran").exists()

    marker = tmp_path / "code-ran"
    crafted = {  # a bare pickle, and one in torch.save's zip format
        "ema.pt": lambda path: path.write_bytes(pickle.dumps(_Touch(marker), protocol=2)),
        "m.optim.pt": lambda path: torch.save({"state": {}, "param_groups": [_Touch(marker)]}, path),
    }
    for name, write in crafted.items():
        write(checkpoint / name)
        loop, step_fn = start_loop()
        with pytest.raises(UnsafeCheckpointError, match=f"refusing to load .*{name}") as refused:
            loop.fit(step_fn, max_steps=6)
        assert str(checkpoint / name) in str(refused.value)
        assert not marker.exists(), f"unpickling {name} ran code"
        assert loop.run.latest_checkpoint() == checkpoint  # nothing trained past the refused checkpoint
        (checkpoint / name).write_bytes(honest[name])

    loop, step_fn = start_loop()  # the honest files (AdamW, LambdaLR, EMA states) load with weights_only=True
    assert loop.resume() == 3 and loop.emas["m"].optimization_step == 3


def test_stage_state_and_checkpointed_folders_resume_as_they_were_at_the_checkpoint(tmp_path):
    """Stage II's early-stopping record and best weights (Stage III's D counter alike) must not come back from a
    killed run's later steps: a resumed run replays those steps and would count them twice."""
    from resume_worker import start_loop  # the same loop the 2-process test resumes

    cfg = _tiny()  # checkpoint every 3 steps
    loop, step_fn = start_loop(cfg, tmp_path, interrupt_at=5)
    with pytest.raises(KeyboardInterrupt):
        loop.fit(step_fn, max_steps=6)
    best_file = loop.run.path / "best_model" / "step.txt"
    assert best_file.read_text() == "4" and loop.state["updates"] == 5  # the killed run got past its checkpoint

    loop, step_fn = start_loop(cfg, tmp_path)
    assert loop.resume() == 3
    assert loop.state["updates"] == 3 and best_file.read_text() == "2"  # as at the checkpoint after 3 steps
    loop, step_fn = start_loop(cfg, tmp_path)
    loop.fit(step_fn, max_steps=6)
    assert loop.state["updates"] == 6 and best_file.read_text() == "5"
