"""Block-causal chunk layout: which frame may attend to which (the generator's attention pattern).

Frames are grouped into chunks that are generated one at a time. A query frame sees every frame of
its own chunk and of earlier chunks (block-causal, CausVid / Self-Forcing), optionally limited to a
sliding window of recent frames plus a few always-visible *sink* frames. For image-to-video the
given first frame(s) form a clean context chunk of their own ahead of the generated chunks.

The same rule builds the training mask over a whole clip and decides what the streaming KV cache
keeps, which is why streaming and full-sequence forwards agree (tests/test_causal_wan.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChunkLayout:
    """How a clip is split into causal chunks.

    Frame indices are absolute (0 = first frame of the clip). Chunk ``-1`` holds the
    ``context_frames`` (I2V conditioning frames), chunks ``0, 1, ...`` hold ``frames_per_chunk``
    generated frames each.
    """

    frames_per_chunk: int  # frames generated per autoregressive step (paper: 3 latent frames)
    context_frames: int = 0  # clean leading frames forming their own chunk (I2V: the given first frame)
    sink_frames: int = 0  # leading frames that stay visible forever (attention sink)
    window_frames: int | None = None  # frames of context a chunk attends to, sink included; None = all

    def __post_init__(self) -> None:
        if self.frames_per_chunk < 1:
            raise ValueError(f"frames_per_chunk must be >= 1, got {self.frames_per_chunk}")
        if self.context_frames < 0 or self.sink_frames < 0:
            raise ValueError(
                f"context_frames and sink_frames must be >= 0, got {self.context_frames}, {self.sink_frames}"
            )
        if self.window_frames is not None and self.window_frames <= self.sink_frames:
            raise ValueError(
                f"window_frames ({self.window_frames}) must be larger than sink_frames ({self.sink_frames}): "
                "the window holds the sink plus at least one recent frame"
            )

    # ---- sizes -----------------------------------------------------------------------------------
    def num_chunks(self, num_frames: int) -> int:
        """Number of generated chunks in a clip of ``num_frames`` frames (context excluded)."""
        self.check_num_frames(num_frames)
        return (num_frames - self.context_frames) // self.frames_per_chunk

    def check_num_frames(self, num_frames: int) -> None:
        generated = num_frames - self.context_frames
        if generated < self.frames_per_chunk or generated % self.frames_per_chunk:
            raise ValueError(
                f"{num_frames} frames do not split into chunks: need context_frames ({self.context_frames}) "
                f"+ a positive multiple of frames_per_chunk ({self.frames_per_chunk}), "
                f"e.g. {self.context_frames + self.frames_per_chunk * max(1, generated // self.frames_per_chunk)}"
            )

    def chunk_start(self, chunk: int) -> int:
        """First absolute frame of ``chunk`` (``-1`` = the context chunk)."""
        return 0 if chunk < 0 else self.context_frames + chunk * self.frames_per_chunk

    def check_span(self, frame_offset: int, num_frames: int) -> None:
        """A streaming call must cover whole chunks: the context chunk and/or generated chunks."""
        if frame_offset == 0 and self.context_frames:
            generated = num_frames - self.context_frames
            ok = generated >= 0 and generated % self.frames_per_chunk == 0
        else:
            ok = (
                frame_offset >= self.context_frames
                and (frame_offset - self.context_frames) % self.frames_per_chunk == 0
                and num_frames > 0
                and num_frames % self.frames_per_chunk == 0
            )
        if not ok:
            raise ValueError(f"frames [{frame_offset}, {frame_offset + num_frames}) are not whole chunks of {self}")

    # ---- visibility ------------------------------------------------------------------------------
    def chunk_of(self, frames: torch.Tensor) -> torch.Tensor:
        """Chunk index of each absolute frame index; ``-1`` for context frames."""
        chunk = torch.div(frames - self.context_frames, self.frames_per_chunk, rounding_mode="floor")
        return torch.where(frames < self.context_frames, torch.full_like(chunk, -1), chunk)

    def visible(self, query_frames: torch.Tensor, key_frames: torch.Tensor) -> torch.Tensor:
        """Bool ``[Fq, Fk]``: may query frame i attend to key frame j?

        Block-causal rule (docs/design.md §5): ``chunk(k) <= chunk(q)``; with a window, a key outside the
        query's own chunk must also be a sink frame or one of the ``window_frames - sink_frames``
        frames right before the query's chunk.
        """
        chunk_q = self.chunk_of(query_frames)[:, None]
        chunk_k = self.chunk_of(key_frames)[None, :]
        vis = chunk_k <= chunk_q
        if self.window_frames is not None:
            start_q = torch.where(
                chunk_q < 0, torch.zeros_like(chunk_q), self.context_frames + chunk_q * self.frames_per_chunk
            )
            recent = key_frames[None, :] >= start_q - (self.window_frames - self.sink_frames)
            sink = (key_frames < self.sink_frames)[None, :]
            vis = vis & ((chunk_k == chunk_q) | sink | recent)
        return vis

    def frame_mask(self, num_frames: int) -> torch.Tensor:
        """Bool ``[F, F]`` block-causal mask over a whole clip (training-time forward)."""
        self.check_num_frames(num_frames)
        frames = torch.arange(num_frames)
        return self.visible(frames, frames)
