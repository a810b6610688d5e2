"""Streaming KV cache for chunk-by-chunk generation (sink frames + sliding window).

Keys are stored *after* the rotary embedding, i.e. at their absolute frame positions, so a cached
chunk never needs re-roping (docs/design.md §5). After each cache write the cache keeps exactly the
frames the next chunk may see under its :class:`ChunkLayout` — the sink frames and the most recent
window — so its memory stops growing once the window is full.
"""

from __future__ import annotations

import torch

from ..chunking import ChunkLayout


class KVCache:
    """Per-layer self-attention keys/values of finished chunks, one segment per cache write.

    Segments are never concatenated here: attention concatenates them inside the block, so every chunk's
    graph (and every recompute closure under gradient checkpointing) refers to the SAME cached tensors and
    the cache is held once, not once per chunk (docs/design.md §7). Eviction drops
    segments or narrows them to views.

    Args:
        num_layers: transformer blocks of the model that reads/writes the cache.
        layout: the chunk layout that decides eviction.
        detach: store detached tensors (Self-Forcing training: gradients flow through the current
            chunk only, the context is a constant).
    """

    def __init__(self, num_layers: int, layout: ChunkLayout, detach: bool = True):
        self.layout = layout
        self.detach = detach
        # per layer, per segment: [B, S_segment, heads, head_dim] (views of what the model wrote)
        self.keys: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
        self.values: list[list[torch.Tensor]] = [[] for _ in range(num_layers)]
        self.segment_frames: list[torch.Tensor] = []  # per segment: [S_segment] absolute frame of each token
        self.next_frame = 0  # first frame not yet written
        self._staged: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_layers(self) -> int:
        return len(self.keys)

    @property
    def token_frames(self) -> torch.Tensor:
        """``[S_cache]`` absolute frame of each cached token, in cache order."""
        return torch.cat(self.segment_frames) if self.segment_frames else torch.empty(0, dtype=torch.long)

    @property
    def cached_frames(self) -> list[int]:
        return torch.unique(self.token_frames).tolist()

    def past(self, layer: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This layer's cached ``(key, value)`` segments, oldest first (a new list of the same tensors)."""
        return list(zip(self.keys[layer], self.values[layer], strict=True))

    def stage(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Hold this layer's new keys/values until :meth:`commit` (called once all layers ran)."""
        if self.detach:
            key, value = key.detach(), value.detach()
        self._staged[layer] = (key, value)

    def commit(self, frames: torch.Tensor, tokens_per_frame: int) -> None:
        """Append the staged chunk (absolute ``frames``) as a segment and evict what the next chunk can't see."""
        if len(self._staged) != self.num_layers:
            raise RuntimeError(f"cache write saw {len(self._staged)} of {self.num_layers} layers")
        for layer, (key, value) in self._staged.items():
            self.keys[layer].append(key)
            self.values[layer].append(value)
        self.segment_frames.append(frames.cpu().repeat_interleave(tokens_per_frame))
        self._staged.clear()
        self.next_frame = int(frames.max()) + 1
        self._evict()

    def _evict(self) -> None:
        query = torch.tensor([self.next_frame])
        kept_frames, kept = [], []  # kept: (segment, start, length) runs of visible tokens
        for seg, token_frames in enumerate(self.segment_frames):
            visible = self.layout.visible(query, token_frames)[0]
            for start, length in _runs(visible):
                kept.append((seg, start, length))
                kept_frames.append(token_frames[start : start + length])
        if sum(length for *_, length in kept) == sum(len(f) for f in self.segment_frames):
            return
        for layer in range(self.num_layers):  # narrow() keeps views: nothing is copied
            self.keys[layer] = [self.keys[layer][seg].narrow(1, start, n) for seg, start, n in kept]
            self.values[layer] = [self.values[layer][seg].narrow(1, start, n) for seg, start, n in kept]
        self.segment_frames = kept_frames

    def discard_staged(self) -> None:
        self._staged.clear()

    def nbytes(self) -> int:
        """Memory held by cached keys and values (distinct storages counted once)."""
        seen, total = set(), 0
        for tensor in (t for segments in self.keys + self.values for t in segments):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total


def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, length)`` of each run of True in a 1-D bool mask."""
    runs, start = [], None
    for i, flag in enumerate(mask.tolist() + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - start))
            start = None
    return runs
