"""Latent codecs: the space the generator, the teacher and the discriminator work in.

Two codecs share one interface (:class:`LatentCodec`):

- :class:`IdentityCodec` for the CPU presets: pixel space, ``C = 3``, no compression, any frame count.
- :class:`WanVAECodec` for the Wan presets: diffusers ``AutoencoderKLWan`` (4x temporal, 8x spatial,
  16 channels for Wan 2.1), with latents normalised per channel by the VAE config's ``latents_mean`` /
  ``latents_std`` exactly as diffusers' Wan pipelines do, so the flow-matching noise matches their scale.

Codec weights are frozen. No ``torch.no_grad()`` is forced: with frozen weights and an input that does not
require grad no graph is built, and a caller that wants gradients through ``decode`` still gets them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["LatentCodec", "IdentityCodec", "WanVAECodec", "build_codec"]

CODEC_KINDS = ("identity", "wan_vae")


class LatentCodec(nn.Module):
    """Interface: ``encode(video [B, 3, F, H, W] in [-1, 1]) -> latents [B, C, F', H', W']`` and ``decode``.

    ``F' = 1 + (F - 1) // temporal_factor`` (the first frame is kept on its own, as in Wan's causal VAE),
    ``H' = H // spatial_factor``, ``W' = W // spatial_factor``. Valid frame counts are ``1 + frame_step * k``.
    """

    latent_channels: int
    temporal_factor: int
    spatial_factor: int
    frame_step: int = 1  # valid frame counts are 1 + frame_step * k

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_num_frames(self, num_frames: int) -> None:
        """Raise ValueError naming the nearest valid counts unless ``num_frames = 1 + frame_step * k``."""
        step = self.frame_step
        if num_frames >= 1 and (num_frames - 1) % step == 0:
            return
        below = 1 + max(0, (num_frames - 1) // step) * step
        above = below + step if num_frames > below else below
        nearest = f"{below}" if below == above else f"{below} or {above}"
        raise ValueError(
            f"{type(self).__name__} needs a frame count of the form 1+{step}k, got num_frames={num_frames}; "
            f"nearest valid: {nearest}"
        )

    def check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"expected video [B, 3, F, H, W], got shape {tuple(video.shape)}")
        _, _, frames, height, width = video.shape
        self.check_num_frames(frames)
        self._check_spatial(height, width)

    def _check_spatial(self, height: int, width: int) -> None:
        if height % self.spatial_factor or width % self.spatial_factor:
            raise ValueError(
                f"height and width must be multiples of spatial_factor={self.spatial_factor}, got {height}x{width}"
            )

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, F', H', W')`` of the latents of a ``num_frames x height x width`` clip."""
        self.check_num_frames(num_frames)
        self._check_spatial(height, width)
        return (
            self.latent_channels,
            1 + (num_frames - 1) // self.temporal_factor,
            height // self.spatial_factor,
            width // self.spatial_factor,
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode(video)


class IdentityCodec(LatentCodec):
    """Pixel space: latents are the video itself (CPU presets, docs/design.md §4: 3x16x32x32 = 64 tokens/frame)."""

    latent_channels = 3
    temporal_factor = 1
    spatial_factor = 1
    frame_step = 1

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        return video

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 5 or latents.shape[1] != 3:
            raise ValueError(f"expected latents [B, 3, F, H, W], got shape {tuple(latents.shape)}")
        return latents


class WanVAECodec(LatentCodec):
    """diffusers ``AutoencoderKLWan`` with Wan's latent normalisation.

    - ``encode``: posterior mode (``sample=False``, deterministic, as the Wan I2V pipeline's ``argmax``) or a
      posterior sample, then ``z = (z_raw - latents_mean) / latents_std`` per channel.
    - ``decode``: ``z_raw = z * latents_std + latents_mean``, then the VAE decoder (output clamped to [-1, 1]).
    - Frame counts must be ``1 + 4k``: ``AutoencoderKLWan`` encodes the first frame alone and then chunks of
      exactly 4 frames, and silently drops a trailing partial chunk (6 frames decode back to 5), so we
      refuse such counts before running anything.

    Compression factors are read off the architecture (``2**sum(temperal_downsample)`` in time,
    ``2**(len(dim_mult) - 1) * patch_size`` in space), not from ``scale_factor_*`` in the config, which
    keeps Wan's defaults (4, 8) even for tiny test configs.
    """

    frame_step = 4  # AutoencoderKLWan._encode: first frame, then chunks of 4 frames

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        config = vae.config
        self.latent_channels = config.z_dim
        self.temporal_factor = 2 ** sum(bool(t) for t in config.temperal_downsample)
        self.spatial_factor = 2 ** (len(config.dim_mult) - 1) * (config.patch_size or 1)
        if self.frame_step % self.temporal_factor:
            raise ValueError(f"temporal compression {self.temporal_factor} must divide the VAE's 4-frame encode chunk")
        for name in ("latents_mean", "latents_std"):
            values = getattr(config, name)
            if len(values) != config.z_dim:
                raise ValueError(f"VAE config {name} has {len(values)} entries, expected z_dim={config.z_dim}")
        # (1, C, 1, 1, 1) so they broadcast over [B, C, F', H', W']; non-persistent: they live in the config
        shape = (1, config.z_dim, 1, 1, 1)
        self.register_buffer("latents_mean", torch.tensor(config.latents_mean).view(shape), persistent=False)
        self.register_buffer("latents_std", torch.tensor(config.latents_std).view(shape), persistent=False)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,  # Wan model root with a vae/ subfolder, or the VAE folder itself
        dtype: torch.dtype = torch.float32,  # Wan runs its VAE in float32
        device: str | torch.device | None = None,
    ) -> WanVAECodec:
        from diffusers import AutoencoderKLWan

        root = Path(path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"VAE path does not exist or is not a folder: {root}")
        folder = root / "vae" if (root / "vae").is_dir() else root
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"no AutoencoderKLWan config found: expected {folder / 'config.json'}"
                + ("" if folder != root else f" (or a 'vae/' subfolder of {root})")
            )
        vae = AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
        codec = cls(vae)
        return codec.to(device) if device is not None else codec

    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        return (raw - self.latents_mean) / self.latents_std

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.latents_std + self.latents_mean

    def encode(
        self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``video [B, 3, F, H, W]`` in [-1, 1] -> normalised latents ``[B, C, F', H', W']`` (input dtype)."""
        self.check_video(video)
        posterior = self.vae.encode(video.to(self.vae_dtype)).latent_dist
        raw = posterior.sample(generator) if sample else posterior.mode()
        return self.normalize(raw.float()).to(video.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, C, F', H', W']`` -> video ``[B, 3, F, H, W]`` in [-1, 1].

        ``F = 1 + temporal_factor * (F' - 1)``.
        """
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected latents [B, {self.latent_channels}, F', H', W'], got shape {tuple(latents.shape)}"
            )
        raw = self.denormalize(latents.float()).to(self.vae_dtype)
        return self.vae.decode(raw).sample.to(latents.dtype)

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, temporal_factor={self.temporal_factor}, "
            f"spatial_factor={self.spatial_factor}"
        )


def build_codec(kind: str, **kwargs) -> LatentCodec:
    """``"identity"`` -> :class:`IdentityCodec`; ``"wan_vae"`` -> :meth:`WanVAECodec.from_pretrained`
    (kwargs: path, dtype, device)."""
    if kind == "identity":
        return IdentityCodec(**kwargs)
    if kind == "wan_vae":
        return WanVAECodec.from_pretrained(**kwargs)
    raise ValueError(f"unknown codec kind {kind!r}; allowed: {', '.join(map(repr, CODEC_KINDS))}")
