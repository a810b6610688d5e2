"""06_evaluate: summaries per run, honest NFE counts, Drift only where a model can stream, clear run lookup."""

import json
import math

import pytest
import torch

from aad1lib.builders import load_run_model
from aad1lib.config import load_preset
from aad1lib.eval.evaluate import evaluate_runs
from aad1lib.eval.generate import eval_inputs, generate_latents
from aad1lib.eval.plan import generation_plan
from aad1lib.eval.tables import format_main_table
from aad1lib.runs import resolve_spec
from aad1lib.train.stage1 import train_stage1
from aad1lib.train.stage2 import train_stage2
from aad1lib.train.teacher import train_teacher

# as tests/test_stage3.py: a teacher -> Stage I -> Stage II chain in seconds
FAST = {"train.tracker": "none", "train.sample_every": 1000, "teacher.steps": 3, "stage1.steps": 3,
        "stage1.ode_pairs": 4, "stage1.ode_steps": 4, "stage1.shard_size": 4, "stage2.steps": 1,
        "stage2.critic_steps": 1, "stage2.eval_every": 1, "train.checkpoint_every": 2}  # fmt: skip
CLIPS, FACTOR = 2, 2


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a shared 2-core machine
    root = tmp_path_factory.mktemp("runs")
    cfg = load_preset("tiny", FAST)
    teacher = train_teacher(cfg, run_name="t", runs_root=root)
    s1 = train_stage1(cfg, teacher.run, run_name="t", runs_root=root)
    s2 = train_stage2(cfg, s1.run, run_name="t", runs_root=root)
    videos = {}
    results = evaluate_runs(cfg, [str(teacher.run.path), "latest:stage2"], num_clips=CLIPS, long_video_factor=FACTOR,
                            seed=5, runs_root=root, collect_videos=videos)  # fmt: skip
    yield dict(root=root, cfg=cfg, teacher=teacher.run, stage2=s2.run, results=results, videos=videos)
    torch.set_num_threads(threads)


def test_evaluate_runs_writes_a_summary_with_finite_metrics_into_each_run(pipeline):
    results = pipeline["results"]
    assert list(results) == [pipeline["teacher"].path.name, pipeline["stage2"].path.name]
    for run in (pipeline["teacher"], pipeline["stage2"]):
        summary = json.loads((run.path / "summary.json").read_text())
        assert summary["num_clips"] == CLIPS and summary["seed"] == 5 and summary["preset"] == "tiny"
        assert summary["backbones"]["flow"] == "DIS" and "commit" in summary
        assert set(summary["metrics"]) >= {"Subject Cons. (HOG)", "Dynamic Degree (DIS)", "Motion Ratio (DIS)",
                                           "I2V Background (ColorHist)", "Imaging Quality (SharpNoise)"}  # fmt: skip
        assert all(math.isfinite(v) for v in summary["metrics"].values()), summary["metrics"]
    table = format_main_table(results)
    assert "| Method |" in table and "Subject Cons. (HOG)" in table and "AAD-1 Stage II" in table
    # every run saw the same first frames: the clips start with the given image
    first = pipeline["videos"]["data"][:, :, 0]
    for name in results:
        assert torch.allclose(pipeline["videos"][name][:, :, 0], first, atol=1e-6), name


def test_an_existing_summary_is_never_overwritten_silently(pipeline):
    cfg, root, teacher = pipeline["cfg"], pipeline["root"], pipeline["teacher"]
    before = (teacher.path / "summary.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        evaluate_runs(cfg, [str(teacher.path)], num_clips=1, long_video_factor=0, runs_root=root)
    assert (teacher.path / "summary.json").read_text() == before
    again = evaluate_runs(cfg, [str(teacher.path)], num_clips=1, long_video_factor=0, runs_root=root, overwrite=True)
    assert json.loads((teacher.path / "summary.json").read_text())["num_clips"] == 1
    assert again[teacher.path.name]["num_clips"] == 1


def test_nfe_is_counted_teacher_steps_times_two_with_cfg_and_one_step_plus_a_cache_write_per_chunk(pipeline):
    cfg = pipeline["cfg"]
    teacher = pipeline["results"][pipeline["teacher"].path.name]["nfe"]
    assert cfg.sampling.guidance_scale != 1.0
    assert teacher["nfe_per_clip"] == 2 * cfg.sampling.teacher_steps == teacher["passes_per_clip"]
    assert teacher["nfe_per_chunk"] is None and teacher["cache_writes_per_chunk"] == 0
    student = pipeline["results"][pipeline["stage2"].path.name]["nfe"]
    chunks = (cfg.latent_frames - cfg.chunking.context_frames) // cfg.chunking.frames_per_chunk
    assert student["nfe_per_chunk"] == 1 and student["cache_writes_per_chunk"] == 1
    assert student["passes_per_chunk"] == 2 and student["nfe_per_clip"] == chunks
    assert student["passes_per_clip"] == 1 + 2 * chunks  # + the context frame's cache write


def test_drift_is_not_applicable_to_the_bidirectional_teacher_and_has_a_curve_for_the_student(pipeline):
    teacher = pipeline["results"][pipeline["teacher"].path.name]
    assert teacher["drift"]["applicable"] is False and teacher["drift"]["value"] is None
    assert "bidirectional" in teacher["drift"]["reason"] and teacher["row"]["Drift (SharpNoise) ↓"] == "n/a"
    student = pipeline["results"][pipeline["stage2"].path.name]["drift"]
    assert student["applicable"] and len(student["curve"]) == FACTOR and math.isfinite(student["value"])
    assert student["value"] == pytest.approx(sum(student["per_clip"]) / CLIPS)  # mean of |IQ(first) - IQ(last)|
    assert student["value"] >= abs(student["curve"][0] - student["curve"][-1]) - 1e-12


def test_the_long_rollout_starts_with_exactly_the_training_length_clip(pipeline):
    cfg, run = pipeline["cfg"], pipeline["stage2"]
    plan = generation_plan(cfg, run)
    model = load_run_model(run).eval()
    inputs = eval_inputs(cfg, CLIPS, FACTOR, seed=5)
    short, _ = generate_latents(cfg, model, plan, inputs, long=False)
    long, _ = generate_latents(cfg, model, plan, inputs, long=True)
    assert long.shape[2] == cfg.chunking.context_frames + FACTOR * (short.shape[2] - cfg.chunking.context_frames)
    assert torch.equal(long[:, :, : short.shape[2]], short)


def test_latest_of_a_stage_without_runs_names_the_notebook_to_run_first(pipeline):
    with pytest.raises(FileNotFoundError, match="03_adversarial"):
        evaluate_runs(pipeline["cfg"], ["latest:stage3"], runs_root=pipeline["root"])
    with pytest.raises(FileNotFoundError, match="student_steps"):
        resolve_spec("latest:stage2?student_steps=4", "tiny", pipeline["root"])
    with pytest.raises(ValueError, match="latest:teacher"):
        resolve_spec("latest:stage9", "tiny", pipeline["root"])
    assert resolve_spec("latest:stage2?student_steps=1", "tiny", pipeline["root"]).path == pipeline["stage2"].path


def test_stage2_criterion_benchmark_scores_real_static_and_sampled_clips_with_stage2s_validation_loss(pipeline, capsys):
    """benchmarks/stage2_criterion.py prints the teacher denoising loss (Stage II's early-stopping criterion) of the
    held-out clips and of their static copies — equal to the loss recomputed here — and one line per run."""
    import runpy

    from aad1lib.losses import teacher_denoising_loss
    from aad1lib.paths import ROOT

    cfg, teacher = pipeline["cfg"], pipeline["teacher"]
    script = runpy.run_path(str(ROOT / "benchmarks" / "stage2_criterion.py"), run_name="stage2_criterion")
    script["main"](["--preset", "tiny", "--teacher-run", str(teacher.path), "--clips", "2",
                    "--runs", str(teacher.path), str(pipeline["stage2"].path)])  # fmt: skip
    lines = {line[:40].strip(): float(line[40:]) for line in capsys.readouterr().out.splitlines()[1:]}
    assert list(lines) == ["held-out real clips", "static copy of the first frame", teacher.path.name,
                           pipeline["stage2"].path.name]  # fmt: skip
    inputs, model = eval_inputs(cfg, 2, 1, cfg.seed), load_run_model(teacher).eval()
    static = inputs.latents[:, :, : cfg.chunking.context_frames].expand_as(inputs.latents)
    with torch.no_grad():
        for name, video in (("held-out real clips", inputs.latents), ("static copy of the first frame", static)):
            ctx = cfg.chunking.context_frames
            expected = teacher_denoising_loss(model, video, inputs.text, ctx, cfg.seed, inputs.condition)
            assert lines[name] == pytest.approx(expected, abs=5e-6)
    assert all(math.isfinite(v) and v > 0 for v in lines.values())
