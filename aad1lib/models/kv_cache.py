"""Streaming KV cache for chunk-by-chunk generation (sink frames + sliding window).

Keys are stored *after* the rotary embedding, i.e. at their absolute frame positions, so a cached
chunk never needs re-roping (DESIGN.md §5). After each cache write the cache keeps exactly the
frames the next chunk may see under its :class:`ChunkLayout` — the sink frames and the most recent
window — so its memory stops growing once the window is full.
"""

from __future__ import annotations

import torch

from .chunking import ChunkLayout


class KVCache:
    """Per-layer self-attention keys/values of finished chunks.

    Args:
        num_layers: transformer blocks of the model that reads/writes the cache.
        layout: the chunk layout that decides eviction.
        detach: store detached tensors (Self-Forcing training: gradients flow through the current
            chunk only, the context is a constant).
    """

    def __init__(self, num_layers: int, layout: ChunkLayout, detach: bool = True):
        self.layout = layout
        self.detach = detach
        self.keys: list[torch.Tensor | None] = [None] * num_layers  # [B, S_cache, heads, head_dim]
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.token_frames = torch.empty(0, dtype=torch.long)  # [S_cache] absolute frame of each token
        self.next_frame = 0  # first frame not yet written
        self._staged: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def cached_frames(self) -> list[int]:
        return torch.unique(self.token_frames).tolist()

    def past(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        key = self.keys[layer]
        return None if key is None else (key, self.values[layer])

    def stage(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Hold this layer's new keys/values until :meth:`commit` (called once all layers ran)."""
        if self.detach:
            key, value = key.detach(), value.detach()
        self._staged[layer] = (key, value)

    def commit(self, frames: torch.Tensor, tokens_per_frame: int) -> None:
        """Append the staged chunk (absolute ``frames``) and evict what the next chunk can't see."""
        if len(self._staged) != self.num_layers:
            raise RuntimeError(f"cache write saw {len(self._staged)} of {self.num_layers} layers")
        new_frames = frames.repeat_interleave(tokens_per_frame)
        all_frames = torch.cat([self.token_frames, new_frames])
        self.next_frame = int(frames.max()) + 1
        query = torch.tensor([self.next_frame])
        keep = self.layout.visible(query, all_frames)[0]
        keep_idx = keep.nonzero().squeeze(1)
        prune = not bool(keep.all())
        for layer, (key, value) in self._staged.items():
            if self.keys[layer] is not None:
                key = torch.cat([self.keys[layer], key], dim=1)
                value = torch.cat([self.values[layer], value], dim=1)
            if prune:
                key = key.index_select(1, keep_idx.to(key.device))
                value = value.index_select(1, keep_idx.to(value.device))
            self.keys[layer], self.values[layer] = key, value
        self.token_frames = all_frames[keep_idx]
        self._staged.clear()

    def discard_staged(self) -> None:
        self._staged.clear()

    def nbytes(self) -> int:
        """Memory held by cached keys and values."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)
