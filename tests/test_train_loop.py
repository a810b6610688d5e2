"""The shared loop: exact resume after an interruption, a NaN guard that keeps the last good checkpoint,
run folders that are never overwritten."""

import json

import pytest
import torch

from aad1lib.config import load_preset
from aad1lib.train import DivergenceError, RunExistsError, TrainLoop
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
