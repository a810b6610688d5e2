"""A student before and after a training stage, on the same held-out first frames and noise (notebooks 02, 03).

Both stages' students stream the clips chunk by chunk with the trained stage's few-step ``sigmas``; the rows
are scored with the teacher's denoising loss (Stage II) and the mean optical-flow magnitude (both stages).
``result`` is what a trainer returns (:class:`~aad1lib.train.stage2.Stage2Run` /
:class:`~aad1lib.train.stage3.Stage3Run`): its ``run``, trained ``model`` and ``sigmas``.
"""

from __future__ import annotations

import torch

from ..builders import build_dataset, build_latent_codec, build_text, collate, load_run_model
from ..conditioning import I2VConditioner, build_image_encoder, context_of
from ..config import ExperimentConfig
from ..losses import teacher_denoising_loss
from ..rollout import seeded_renoise, stream_generate
from ..run_folder import RunFolder
from ..runs import run_summary
from .sample_motion import motion_comparison


@torch.no_grad()
def _generate(cfg: ExperimentConfig, models: dict, sigmas: torch.Tensor, num_clips: int):
    """The test batch and its encodings, and ``{"data": latents, name: generated latents}`` per model."""
    text_encoder, codec = build_text(cfg), build_latent_codec(cfg)
    ctx = cfg.chunking.context_frames
    test = build_dataset(cfg, "test")
    batch = collate([test[i] for i in range(min(len(test), num_clips))])
    latents = codec.encode(batch["video"])
    text = text_encoder.encode(batch["prompt"])[0]
    noise = torch.randn(latents[:, :, ctx:].shape, generator=torch.Generator().manual_seed(cfg.seed + 11))
    condition = I2VConditioner(cfg, codec, build_image_encoder(cfg))(batch["first_frame"])
    rows = {"data": latents}
    for name, model in models.items():
        rows[name] = stream_generate(model, cfg.chunk_layout(), text, noise, sigmas, context=context_of(latents, ctx),
                                     renoise=seeded_renoise(cfg.seed + 1), condition=condition).video  # fmt: skip
    return batch, codec, text, condition, rows


@torch.no_grad()
def before_after(cfg: ExperimentConfig, result, num_clips: int) -> tuple[dict, dict, dict]:
    """Stage I vs Stage II student on the same held-out first frames and noise.

    Returns the test batch, ``{"data"|"Stage I"|"Stage II": [B, 3, F, H, W]}`` and a table of the teacher's
    denoising loss (lower = closer to the teacher's distribution; the data row is the floor) and the mean
    optical-flow magnitude of each row.
    """
    summary = run_summary(result.run)
    teacher = load_run_model(RunFolder.open(summary["teacher_run"])).eval()
    before = load_run_model(RunFolder.open(summary["stage1_run"])).eval()
    models = {"Stage I": before, "Stage II": result.model.cpu().eval()}
    batch, codec, text, condition, rows = _generate(cfg, models, result.sigmas, num_clips)
    ctx, table = cfg.chunking.context_frames, {}
    for name, video in rows.items():
        pixels = codec.decode(video).clamp(-1, 1)
        table[name] = {
            "teacher denoising loss": teacher_denoising_loss(teacher, video, text, ctx, cfg.seed, condition),
            "flow px/frame (DIS)": motion_comparison(pixels, batch["video"])["flow_px_generated"],
        }
        rows[name] = pixels
    return batch, rows, table


@torch.no_grad()
def motion_before_after(cfg: ExperimentConfig, result, num_clips: int) -> tuple[dict, dict]:
    """The one-step generator before (its init run) and after Stage III on the same held-out first frames and
    noise: ``{"data"|"before"|"after": [B, 3, F, H, W]}`` and their mean optical-flow magnitude (DIS px/frame)."""
    before = load_run_model(RunFolder.open(run_summary(result.run)["init_run"])).eval()
    models = {"before": before, "after": result.model.cpu().eval()}
    batch, codec, _, _, latents = _generate(cfg, models, result.sigmas, num_clips)
    rows = {"data": batch["video"]} | {name: codec.decode(latents[name]).clamp(-1, 1) for name in models}
    flows = {name: motion_comparison(video, batch["video"])["flow_px_generated"] for name, video in rows.items()}
    return rows, flows
