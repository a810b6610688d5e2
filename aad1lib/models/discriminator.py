"""VideoDiscriminator: the asymmetric critic of AAD-1 (Stage III).

A Wan transformer backbone, initialised from the teacher, reads the *noised* clip at timestep t with
its prompt. After a few blocks (default: at 1/2, 3/4 and the last of the blocks kept), learnable
query tokens cross-attend to the backbone tokens; a small MLP turns the concatenated query outputs
into the logit (Self-Forcing's GAN head, AAD-1 §"Asymmetric Generator-Discriminator").

Two switches give the paper's 2×2 ablation:
- ``attention``: ``"bidirectional"`` (default: the critic sees past *and* future frames) or ``"causal"``
  (block-causal, same chunking as the generator);
- ``logit``: ``"video"`` (one logit per clip, default) or ``"frame"`` (one logit per latent frame;
  queries attend to that frame's tokens only).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from diffusers.models.normalization import FP32LayerNorm
from einops import rearrange
from torch import nn

from ..chunking import ChunkLayout
from .causal_wan import CausalWanTransformer3DModel

ATTENTION_MODES = ("bidirectional", "causal")
LOGIT_MODES = ("video", "frame")


class QueryHead(nn.Module):
    """Learnable query tokens that cross-attend to one block's tokens."""

    def __init__(self, dim: int, num_queries: int, num_heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim) / math.sqrt(dim))
        self.norm = FP32LayerNorm(dim)  # fp32 statistics whatever dtype FSDP2 gathers the weights in
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, tokens: torch.Tensor, num_frames: int, per_frame: bool) -> torch.Tensor:
        """tokens ``[B, F*h*w, D]`` -> ``[B, Q*D]`` (video) or ``[B, F, Q*D]`` (frame)."""
        batch = tokens.shape[0]
        tokens = self.norm(tokens.float())
        if per_frame:
            tokens = rearrange(tokens, "b (f n) d -> (b f) n d", f=num_frames)
        queries = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        out, _ = self.attn(queries, tokens, tokens, need_weights=False)  # [B(*F), Q, D]
        out = rearrange(out, "b q d -> b (q d)")
        return rearrange(out, "(b f) e -> b f e", b=batch) if per_frame else out


class VideoDiscriminator(nn.Module):
    """Wan backbone + query-token heads -> realism logit ``[B]`` (video) or ``[B, F]`` (frame).

    Args:
        backbone: the Wan transformer to read features from (a copy of the teacher; see :meth:`from_teacher`).
        attention: ``"bidirectional"`` or ``"causal"`` backbone attention.
        logit: ``"video"`` or ``"frame"`` logit granularity.
        chunk_layout: chunking for the causal backbone (the generator's layout); required for ``"causal"``.
        tap_fractions: where to read features, as fractions of the backbone depth (1.0 = last block).
            Blocks after the last tap are dropped, so the critic costs one partial backbone pass.
        num_queries: learnable queries per tap.
        train_backbone: train the backbone with the heads, or freeze it (heads only).
    """

    def __init__(
        self,
        backbone: CausalWanTransformer3DModel,
        attention: str = "bidirectional",
        logit: str = "video",
        chunk_layout: ChunkLayout | None = None,
        tap_fractions: Sequence[float] = (0.5, 0.75, 1.0),
        num_queries: int = 4,
        head_hidden: int = 256,
        train_backbone: bool = True,
    ):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"unknown discriminator attention {attention!r}; allowed: {ATTENTION_MODES}")
        if logit not in LOGIT_MODES:
            raise ValueError(f"unknown discriminator logit {logit!r}; allowed: {LOGIT_MODES}")
        if attention == "causal" and chunk_layout is None:
            raise ValueError("a causal discriminator needs the generator's chunk_layout")
        if not isinstance(backbone, CausalWanTransformer3DModel):
            raise TypeError(f"backbone must be a CausalWanTransformer3DModel, got {type(backbone).__name__}")
        if not tap_fractions or not all(0 < f <= 1 for f in tap_fractions):
            raise ValueError(f"tap_fractions must be non-empty and lie in (0, 1], got {tuple(tap_fractions)}")
        num_layers = len(backbone.blocks)
        taps = sorted({min(num_layers, max(1, round(f * num_layers))) - 1 for f in tap_fractions})

        self.attention = attention
        self.logit = logit
        self.chunk_layout = chunk_layout if attention == "causal" else None
        self.tap_blocks = tuple(taps)
        backbone.blocks = backbone.blocks[: taps[-1] + 1]  # later blocks can't affect the logit
        self.backbone = backbone
        self.backbone.requires_grad_(train_backbone)

        dim = backbone.config.num_attention_heads * backbone.config.attention_head_dim
        self.heads = nn.ModuleList(
            QueryHead(dim, num_queries, backbone.config.num_attention_heads) for _ in self.tap_blocks
        )
        self.mlp = nn.Sequential(
            nn.Linear(len(self.tap_blocks) * num_queries * dim, head_hidden),
            nn.SiLU(),
            nn.Linear(head_hidden, 1),
        )

    @classmethod
    def from_teacher(cls, teacher: nn.Module, **kwargs) -> VideoDiscriminator:
        """Discriminator whose backbone is a copy of the teacher's weights (paper: Wan 2.1 T2V)."""
        if isinstance(teacher, CausalWanTransformer3DModel):
            backbone = copy.deepcopy(teacher)
        else:
            backbone = CausalWanTransformer3DModel.from_config(teacher.config)
            backbone.load_state_dict(teacher.state_dict())
        return cls(backbone.train(), **kwargs)

    def forward(
        self,
        noisy_video: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        condition: dict | None = None,
    ) -> torch.Tensor:
        """noisy_video ``[B, C, F, H, W]`` at ``timestep`` ``[B]`` (0..1000) -> logits ``[B]`` or ``[B, F]``.

        ``condition``: Wan I2V inputs of the clip for a backbone initialised from a Wan I2V model (model.i2v)."""
        num_frames = noisy_video.shape[2]
        features: dict[int, torch.Tensor] = {}
        hooks = [
            self.backbone.blocks[i].register_forward_hook(
                lambda _m, _in, out, i=i: features.setdefault(i, out)  # first call only (checkpoint recompute)
            )
            for i in self.tap_blocks
        ]
        try:
            self.backbone(
                noisy_video,
                timestep,
                encoder_hidden_states,
                chunk_layout=self.chunk_layout,
                return_dict=False,
                **(condition or {}),
            )
        finally:
            for hook in hooks:
                hook.remove()
        per_frame = self.logit == "frame"
        pooled = [head(features[i], num_frames, per_frame) for head, i in zip(self.heads, self.tap_blocks, strict=True)]
        return self.mlp(torch.cat(pooled, dim=-1)).squeeze(-1)
