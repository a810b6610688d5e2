"""Build datasets, text encoder, codec and Wan transformers from an ExperimentConfig."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from .config import ExperimentConfig, check_pretrained_sizes
from .data import RealClipsDataset, SyntheticI2VDataset, VideoFolderDataset
from .models.causal_wan import CausalWanTransformer3DModel
from .models.codec import LatentCodec, build_codec
from .models.text import TextEncoder, build_text_encoder
from .run_folder import RunFolder
from .runs import run_summary


def build_dataset(cfg: ExperimentConfig, split: str) -> Dataset:
    """The preset's clips for ``split`` (``train`` / ``test``); samples as in :mod:`aad1lib.data`."""
    d = cfg.data
    if d.kind == "synthetic":
        num = d.train_clips if split == "train" else d.test_clips
        return SyntheticI2VDataset(split, num, d.num_frames, d.height, d.width, fps=d.fps, seed=d.seed,
                                   background_blur=d.background_blur, speeds=d.speeds,
                                   camera_modes=tuple(d.camera_modes), num_sprites=d.num_sprites)  # fmt: skip
    if d.kind == "real_clips":
        return RealClipsDataset(d.num_frames, d.height, d.width)
    # held-out files by data.seed (data.test_clips of them), clips resampled to data.fps
    return VideoFolderDataset(d.root, d.captions_csv, d.num_frames, d.height, d.width, on_error=d.on_error,
                              fps=d.fps, split=split, test_files=d.test_clips, seed=d.seed)  # fmt: skip


def build_text(cfg: ExperimentConfig, dtype: torch.dtype = torch.float32) -> TextEncoder:
    """The preset's text encoder on the CPU, loaded in ``dtype`` (trainers pass their compute dtype)."""
    t = cfg.text
    if t.kind == "tiny":
        return build_text_encoder("tiny", dim=t.dim, max_length=t.max_length, seed=t.seed).to(dtype)
    return build_text_encoder("umt5", path=t.path, max_length=t.max_length, dtype=dtype)


def build_latent_codec(cfg: ExperimentConfig) -> LatentCodec:
    if cfg.codec.kind == "identity":
        return build_codec("identity")
    return build_codec("wan_vae", path=cfg.codec.path)


def build_wan(cfg: ExperimentConfig, seed: int | None = None) -> CausalWanTransformer3DModel:
    """A Wan transformer: the local checkpoint of ``model.pretrained``, else a seeded random init."""
    if cfg.model.pretrained:
        check_pretrained_sizes(cfg)  # the preset's model.* sizes must describe the checkpoint (planner, shapes)
        return load_wan(cfg.model.pretrained)
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed if seed is None else seed)
        model = CausalWanTransformer3DModel(**cfg.wan_kwargs())
    if cfg.model.residual_to_first_frame:  # predicts the residual r0 = 0 at init: samples copy the first frame
        torch.nn.init.zeros_(model.proj_out.weight)
        torch.nn.init.zeros_(model.proj_out.bias)
    return model


def load_wan(path: str | Path, dtype: torch.dtype = torch.float32) -> CausalWanTransformer3DModel:
    """A local Wan transformer: its own folder (``config.json``) or the ``transformer/`` of a Wan root."""
    root = Path(path)
    subfolder = None if (root / "config.json").exists() else "transformer"
    return CausalWanTransformer3DModel.from_pretrained(root, subfolder=subfolder, torch_dtype=dtype)


def load_run_model(run: RunFolder, device="cpu", dtype: torch.dtype = torch.float32) -> CausalWanTransformer3DModel:
    """The model a finished run produced: ``<run>/model`` (diffusers format), or the Wan checkpoint a
    teacher run points to (cluster presets load Wan instead of training), loaded in ``dtype``."""
    if (run.path / "model" / "config.json").exists():
        return CausalWanTransformer3DModel.from_pretrained(run.path / "model", torch_dtype=dtype).to(device)
    teacher = run_summary(run).get("teacher")
    if teacher:
        return load_wan(teacher, dtype).to(device)
    raise FileNotFoundError(f"{run.path} has no model/ folder and points to no checkpoint")


def collate(samples: list[dict]) -> dict:
    """Stack videos/first frames, keep prompts, motions and sources as lists."""
    return {
        "video": torch.stack([s["video"] for s in samples]),  # [B, 3, F, H, W]
        "first_frame": torch.stack([s["first_frame"] for s in samples]),  # [B, 3, H, W]
        "prompt": [s["prompt"] for s in samples],
        "motion": [s["motion"] for s in samples],
        "source": [s["source"] for s in samples],
    }
