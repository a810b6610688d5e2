"""Wan 2.1 I2V conditioning: the channel-concatenated first frame and the CLIP image tokens.

Read from diffusers' ``WanImageToVideoPipeline`` (``prepare_latents``, ``encode_image``), docs/design.md §8:

- ``condition = concat([mask, latents of [first frame, zeros, ...]], dim=1)``: the mask has one channel per pixel
  frame of a latent frame (the VAE's temporal factor: 4 for Wan, 1 in pixel space), 1 on the first pixel frame
  (repeated over the first latent frame's channels) and 0 elsewhere; the latents are the codec's normalised
  encoding of a clip that is the first frame followed by black (zero) frames. The model input is
  ``concat([noisy latents, condition], dim=1)`` (16 + 4 + 16 = 36 channels for Wan 2.1 I2V); every frame,
  the first included, is generated.
- CLIP image tokens: the image encoder's penultimate hidden states of the first frame (as uint8, like the
  pipeline's PIL image), preprocessed by the checkpoint's ``CLIPImageProcessor``; they go in as
  ``encoder_hidden_states_image``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .codec import LatentCodec


def first_frame_mask(num_pixel_frames: int, temporal_factor: int, height: int, width: int) -> torch.Tensor:
    """``[1, temporal_factor, F_latent, h, w]``: 1 where the pixel frame is the given first frame."""
    mask = torch.zeros(1, 1, num_pixel_frames, height, width)
    mask[:, :, 0] = 1.0
    # the first latent frame stands for one pixel frame: repeat it so every latent frame covers temporal_factor
    mask = torch.cat([mask[:, :, :1].repeat(1, 1, temporal_factor, 1, 1), mask[:, :, 1:]], dim=2)
    mask = mask.view(1, -1, temporal_factor, height, width)  # [1, F_latent, tf, h, w]
    return mask.transpose(1, 2)


@torch.no_grad()
def wan_i2v_condition(codec: LatentCodec, first_frame: torch.Tensor, num_pixel_frames: int) -> torch.Tensor:
    """``first_frame [B, 3, H, W]`` in [-1, 1] -> condition ``[B, tf + C, F_latent, h, w]`` (mask, then latents)."""
    batch, _, height, width = first_frame.shape
    black = first_frame.new_zeros(batch, 3, num_pixel_frames - 1, height, width)
    video = torch.cat([first_frame[:, :, None], black], dim=2)  # [B, 3, F, H, W]
    latents = codec.encode(video)  # [B, C, F_latent, h, w], normalised
    mask = first_frame_mask(num_pixel_frames, codec.temporal_factor, *latents.shape[-2:]).to(latents)
    return torch.cat([mask.expand(batch, -1, -1, -1, -1), latents], dim=1)


class CLIPImageEncoder(nn.Module):
    """The I2V checkpoint's ``image_encoder`` (CLIP vision) + ``image_processor``: first frame -> image tokens."""

    def __init__(self, model: nn.Module, processor) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> CLIPImageEncoder:
        """``path``: a Wan I2V root with ``image_encoder/`` and ``image_processor/`` (local files only)."""
        from transformers import CLIPImageProcessor, CLIPVisionModel

        root = Path(path).expanduser()
        for sub in ("image_encoder", "image_processor"):
            if not (root / sub).is_dir():
                raise FileNotFoundError(f"no {sub}/ in {root}: wan_i2v with image_dim needs a Wan I2V folder")
        model = CLIPVisionModel.from_pretrained(root / "image_encoder", dtype=dtype, local_files_only=True)
        processor = CLIPImageProcessor.from_pretrained(root / "image_processor", local_files_only=True)
        return cls(model, processor)

    @torch.no_grad()
    def encode(self, first_frame: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> ``[B, tokens, hidden]`` (the penultimate layer, as Wan's pipeline)."""
        # uint8, as the pipeline's PIL image: the processor's PIL path truncates float input to uint8 itself
        images = ((first_frame.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu()
        pixels = self.processor(images=list(images), return_tensors="pt").pixel_values  # rescales by 1/255
        param = next(self.model.parameters())
        out = self.model(pixel_values=pixels.to(param.device, param.dtype), output_hidden_states=True)
        return out.hidden_states[-2]
