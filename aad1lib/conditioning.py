"""What conditions a clip on its first frame in every model call of a stage (``model.i2v``, docs/design.md §8).

``context_frame``: nothing extra — the first latent frame itself is the clean context (``latents[:, :, :ctx]``);
with ``model.residual_to_first_frame`` its latent also goes to every call as ``{"anchor": [B, C, 1, h, w]}``.
``wan_i2v``: Wan 2.1 I2V's inputs for the whole clip, ``{"condition": [B, tf + C, F, h, w]}`` plus, for a
checkpoint with ``image_dim``, ``{"encoder_hidden_states_image": [B, T, D]}`` from its CLIP image encoder. The
model slices ``condition`` to each call's frames, so the same dict goes to the block-causal student, every chunk
of a rollout, the teacher, the critic and the evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import ExperimentConfig
from .models.codec import LatentCodec
from .models.i2v import CLIPImageEncoder, wan_i2v_condition
from .pretrained import read_checkpoint_config, wan_config_file


class I2VConditioner:
    """``first_frame [B, 3, H, W]`` (pixels in [-1, 1]) -> the model's conditioning keyword arguments."""

    def __init__(self, cfg: ExperimentConfig, codec: LatentCodec, image_encoder: CLIPImageEncoder | None = None):
        self.mode = cfg.model.i2v
        self.residual = cfg.model.residual_to_first_frame
        self.num_pixel_frames = cfg.data.num_frames
        self.codec = codec
        self.image_encoder = image_encoder

    @torch.no_grad()
    def __call__(self, first_frame: torch.Tensor, num_pixel_frames: int | None = None) -> dict[str, torch.Tensor]:
        """``num_pixel_frames``: the clip's length (default: the preset's; longer for long rollouts)."""
        if self.mode == "context_frame":
            return {"anchor": self.codec.encode(first_frame[:, :, None])} if self.residual else {}
        out = {"condition": wan_i2v_condition(self.codec, first_frame, num_pixel_frames or self.num_pixel_frames)}
        if self.image_encoder is not None:
            out["encoder_hidden_states_image"] = self.image_encoder.encode(first_frame).to(out["condition"].device)
        return out


def context_of(latents: torch.Tensor, context_frames: int) -> torch.Tensor | None:
    """The clean context latents ``[B, C, Fc, h, w]`` of context_frame I2V, or None (Wan I2V: no context frames)."""
    return latents[:, :, :context_frames] if context_frames else None


def uses_image_encoder(cfg: ExperimentConfig) -> bool:
    """A wan_i2v preset whose checkpoint has ``image_dim`` (Wan 2.1 I2V): CLIP tokens go in as image states."""
    if cfg.model.i2v != "wan_i2v" or not cfg.model.pretrained:
        return False
    file = wan_config_file(cfg.model.pretrained)
    return file.exists() and read_checkpoint_config(file).get("image_dim") is not None


def build_image_encoder(cfg: ExperimentConfig, dtype: torch.dtype = torch.float32) -> CLIPImageEncoder | None:
    """The checkpoint's CLIP image encoder (``<model.pretrained>/image_encoder``), if the preset uses one."""
    if not uses_image_encoder(cfg):
        return None
    root = Path(cfg.model.pretrained)
    root = root if (root / "image_encoder").is_dir() else root.parent  # a transformer/ folder: its Wan root
    return CLIPImageEncoder.from_pretrained(root, dtype=dtype)
