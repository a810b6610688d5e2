"""A wan2.1-1.3b-shaped preset end to end on stand-ins of its real inputs (tests/standins.py), one process.

The stand-in is a real ``Wan2.1-T2V-1.3B-Diffusers`` folder (diffusers' WanPipeline loads and samples it), only
tiny; the data is a folder of mp4s with a captions CSV. The preset keeps the cluster settings (umT5, Wan VAE,
fsdp2 + bf16, gradient checkpointing): with one process the loop trains the plain model under bf16 autocast.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from standins import STAGES, UMT5, WAN_TRANSFORMER, check_wan_t2v_standin, run_stages_cli

from aad1lib.config import load_preset
from aad1lib.eval.evaluate import evaluate_runs
from aad1lib.train.stage1 import train_stage1
from aad1lib.train.stage2 import train_stage2
from aad1lib.train.stage3 import train_stage3
from aad1lib.train.teacher import train_teacher

# the training losses each stage logs (every logged value must be finite; these must be present)
LOSSES = {"stage1": ("loss",), "stage2": ("dmd_loss", "critic_loss", "val_teacher_loss"),
          "stage3": ("d_loss", "g_loss", "r1", "r2")}  # fmt: skip


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def test_standin_is_a_wan_t2v_folder_that_diffusers_and_our_loaders_read(wan_standin, one_thread):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from aad1lib.models.causal_wan import CausalWanTransformer3DModel
    from aad1lib.models.codec import WanVAECodec
    from aad1lib.models.text import UMT5TextEncoder

    index = json.loads((wan_standin / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKLWan"] and index["text_encoder"][1] == "UMT5EncoderModel"
    assert index["scheduler"] == ["diffusers", "UniPCMultistepScheduler"]
    for file in ("transformer/config.json", "transformer/diffusion_pytorch_model.safetensors", "vae/config.json",
                 "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/spiece.model",
                 "tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json"):  # fmt: skip
        assert (wan_standin / file).is_file(), file

    # the tokenizer has the trained sentencepiece vocabulary (not transformers 5.x's silent 4-token one)
    pieces = spm.SentencePieceProcessor(model_file=str(wan_standin / "tokenizer" / "spiece.model")).get_piece_size()
    tokenizer = AutoTokenizer.from_pretrained(wan_standin / "tokenizer")
    assert len(tokenizer) == pieces > 40
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a cat runs over the red car").input_ids)
    assert tokens == ["▁a", "▁cat", "▁runs", "▁over", "▁the", "▁red", "▁car", "</s>"]

    frames = check_wan_t2v_standin(wan_standin)  # diffusers' own WanPipeline: load + 2 sampling steps
    assert frames.shape == (5, 32, 32, 3) and np.isfinite(frames).all()

    model = CausalWanTransformer3DModel.from_pretrained(wan_standin, subfolder="transformer")
    assert {k: model.config[k] for k in WAN_TRANSFORMER} == {**WAN_TRANSFORMER, "patch_size": [1, 2, 2]}
    assert WanVAECodec.from_pretrained(wan_standin).latent_shape(9, 32, 32) == (16, 3, 4, 4)
    emb, mask = UMT5TextEncoder.from_pretrained(wan_standin, max_length=16).encode(["a red car", ""])
    assert emb.shape == (2, 16, UMT5["d_model"]) and mask.sum(1).tolist() == [4, 1]


def test_video_folder_standin_splits_and_moves_smoothly(wan_preset):
    from aad1lib.builders import build_dataset

    cfg = load_preset(wan_preset)
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert (len(train), len(test)) == (5, 3) and not set(train.files) & set(test.files)
    video = test[0]["video"]
    assert video.shape == (3, 9, 32, 32) and -1 <= video.min() < video.max() <= 1
    step = (video[:, 1:] - video[:, :-1]).abs().mean().item()
    assert 0.01 < step < (video[:, -1] - video[:, 0]).abs().mean().item()  # it moves, and frames drift apart


def _check_finished(runs: dict) -> None:
    assert all(run.finished for run in runs.values()), {s: r.path for s, r in runs.items() if not r.finished}
    teacher = json.loads((runs["teacher"].path / "finished.json").read_text())
    assert teacher["trained_steps"] == 0 and teacher["teacher"]  # Wan presets load the teacher, no training
    for stage, keys in LOSSES.items():
        metrics = runs[stage].read_metrics()
        assert metrics, f"{stage} logged nothing"
        for key in keys:
            assert any(key in m for m in metrics), f"{stage} never logged {key}"
        for m in metrics:
            assert all(math.isfinite(v) for v in m.values() if isinstance(v, float)), (stage, m)
        model = json.loads((runs[stage].path / "model" / "config.json").read_text())
        assert model["num_layers"] == WAN_TRANSFORMER["num_layers"] and model["in_channels"] == 16


@pytest.mark.parametrize("mixed_precision", ["bf16", "no"])
def test_wan_preset_trains_every_stage_and_evaluates_in_one_process(wan_preset, tmp_path, one_thread,
                                                                    mixed_precision):  # fmt: skip
    cfg = load_preset(wan_preset, {"train.mixed_precision": mixed_precision})
    assert (cfg.train.parallel, cfg.train.gradient_checkpointing, cfg.latent_frames) == ("fsdp2", True, 3)
    root = tmp_path / "runs"
    teacher = train_teacher(cfg, run_name="e2e", runs_root=root)
    s1 = train_stage1(cfg, teacher.run, run_name="e2e", runs_root=root)
    s2 = train_stage2(cfg, s1.run, run_name="e2e", runs_root=root)
    s3 = train_stage3(cfg, s2.run, run_name="e2e", runs_root=root)
    runs = dict(zip(STAGES, (teacher.run, s1.run, s2.run, s3.run), strict=True))
    _check_finished(runs)
    assert [len(runs[s].read_metrics()) for s in ("stage1", "stage3")] == [cfg.stage1.steps, cfg.stage3.steps]
    assert s1.target_sigmas.numel() == cfg.stage1.target_steps

    results = evaluate_runs(cfg, [str(r.path) for r in runs.values()], num_clips=2, long_video_factor=2, seed=0,
                            runs_root=root)  # fmt: skip
    assert list(results) == [r.path.name for r in runs.values()]
    for name, summary in results.items():
        assert summary["clip"]["pixel_frames"] == 9 and summary["num_clips"] == 2
        assert all(math.isfinite(v) for v in summary["metrics"].values()), (name, summary["metrics"])
        assert summary["drift"]["applicable"] == (summary["kind"] == "causal"), name
        assert (runs[summary["stage"]].path / "summary.json").is_file()


def _losses(run, keys) -> list[dict]:
    return [{k: m[k] for k in keys if k in m} for m in run.read_metrics()]


@pytest.mark.slow
@pytest.mark.parametrize("mixed_precision", ["bf16", "no"])
def test_wan_preset_with_two_fsdp2_processes_matches_one_process(wan_preset, tmp_path, mixed_precision):
    """What a cluster job runs (``torch.distributed.run -m aad1lib.train <stage>``) at the preset's own settings:
    FSDP2, gradient checkpointing, umT5 + Wan VAE + video folder; 2 processes give the losses of 1 process."""
    sets = {"train.mixed_precision": mixed_precision}
    one = run_stages_cli(wan_preset, tmp_path / "runs", nproc=1, extra_sets=sets, run_name="one")
    two = run_stages_cli(wan_preset, tmp_path / "runs", nproc=2, extra_sets=sets, run_name="two")
    _check_finished(two)
    finished = json.loads((two["stage3"].path / "finished.json").read_text())
    assert (finished["world_size"], finished["parallel"]) == (2, "fsdp2")
    assert two["stage1"].config["init_from"] == str(two["teacher"].path)
    assert (two["stage2"].path / "ode_pairs").exists() is False and (two["stage1"].path / "ode_pairs").is_dir()
    # bf16: the sharded model gathers bf16 weights where one process casts fp32 weights under autocast (measured:
    # losses within 0.8 %, fp32 within 1e-6); R1/R2 at sigma 0.01 are bf16 rounding noise, compared absolutely
    rel = 2e-2 if mixed_precision == "bf16" else 1e-4
    for stage, keys in LOSSES.items():
        a, b = _losses(one[stage], keys), _losses(two[stage], keys)
        assert len(a) == len(b) > 0, stage
        for row_a, row_b in zip(a, b, strict=True):
            assert row_b.keys() == row_a.keys(), stage
            for key in row_a:
                assert row_b[key] == pytest.approx(row_a[key], rel=rel, abs=5e-3 if key in ("r1", "r2") else 1e-5), (
                    stage, key, row_a[key], row_b[key])  # fmt: skip
    # the samples every rank computed (rank 0 wrote them) and the evaluation of the 2-process runs
    assert any(two["stage2"].samples_dir.rglob("*.mp4")) or any(two["stage2"].samples_dir.rglob("*.png"))
    cfg = load_preset(wan_preset, sets)
    results = evaluate_runs(cfg, [str(r.path) for r in two.values()], num_clips=2, long_video_factor=2, seed=0,
                            runs_root=tmp_path / "runs")  # fmt: skip
    assert all(math.isfinite(v) for summary in results.values() for v in summary["metrics"].values())
