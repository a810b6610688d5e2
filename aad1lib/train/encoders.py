"""The frozen encoders every stage trainer places the same way: text encoder, latent codec, I2V conditioner."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..builders import build_latent_codec, build_text
from ..conditioning import I2VConditioner, build_image_encoder
from ..config import ExperimentConfig
from ..models.codec import LatentCodec
from ..models.text import TextEncoder
from .loop import TrainLoop


def frozen_encoders(
    loop: TrainLoop, cfg: ExperimentConfig, image_encoder: bool = True
) -> tuple[TextEncoder, LatentCodec, I2VConditioner]:
    """The text encoder (compute dtype, sharded under FSDP2), the codec (Wan runs its VAE in fp32, replicated) and
    the I2V conditioner (with the checkpoint's CLIP image encoder for Wan I2V presets, unless ``image_encoder`` is
    False: a trained teacher has none)."""
    text_encoder = loop.add_frozen(build_text(cfg, loop.compute_dtype))
    codec = loop.add_frozen(build_latent_codec(cfg), dtype=torch.float32)
    encoder = build_image_encoder(cfg, loop.compute_dtype) if image_encoder else None
    return text_encoder, codec, I2VConditioner(cfg, codec, loop.add_frozen_or_none(encoder))


@dataclass
class StageBatches:
    """Base of a stage's batch source: the config, the loop (device, this rank's share of a batch) and the frozen
    encoders; subclasses draw the stage's batch dicts."""

    cfg: ExperimentConfig
    loop: TrainLoop
    codec: LatentCodec
    text_encoder: TextEncoder
    conditioner: I2VConditioner

    @property
    def latent_shape(self) -> tuple[int, ...]:  # [C, F, h, w] of a clip
        return self.codec.latent_shape(self.cfg.data.num_frames, self.cfg.data.height, self.cfg.data.width)
