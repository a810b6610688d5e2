"""Streaming benchmark: per-chunk latency, frames per second and KV-cache memory, chunk 1 … N.

Measures the deployment path of :func:`aad1lib.rollout.stream_generate` (denoising steps + the cache
write per chunk). With a sliding window the per-chunk cost and the cache size must stop growing once
the window is full; without one both grow with the video. Timings are printed, never asserted.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..chunking import ChunkLayout
from ..models.causal_wan import CausalWanTransformer3DModel
from ..rollout import stream_generate


@dataclass
class ChunkTiming:
    chunk: int  # 1-based, as printed
    latency_ms: float  # wall time of this chunk: its denoising steps + its cache write
    fps: float  # frames of this chunk / latency
    cache_mb: float  # KV cache held after this chunk was written
    cached_frames: int


def benchmark_streaming(
    model: CausalWanTransformer3DModel,
    layout: ChunkLayout,
    num_chunks: int,
    height: int,
    width: int,
    sigmas: torch.Tensor,
    batch: int = 1,
    text_len: int = 16,
    repeats: int = 3,
) -> list[ChunkTiming]:
    """Stream ``num_chunks`` chunks ``repeats`` times (after one warm-up) and keep each chunk's best time."""
    channels = model.config.in_channels
    text = torch.randn(batch, text_len, model.config.text_dim)
    context = torch.randn(batch, channels, layout.context_frames, height, width) if layout.context_frames else None
    noise = torch.randn(batch, channels, num_chunks * layout.frames_per_chunk, height, width)
    best: list[ChunkTiming | None] = [None] * num_chunks

    for run in range(repeats + 1):
        stamps: list[tuple[float, int, int]] = []

        def record(chunk, _x0, cache, stamps=stamps):
            stamps.append((time.perf_counter(), cache.nbytes(), len(cache.cached_frames)))

        start = time.perf_counter()
        with torch.inference_mode():
            stream_generate(model, layout, text, noise, sigmas, context=context, chunk_callback=record)
        if run == 0:
            continue  # warm-up
        previous = start
        for i, (stamp, nbytes, frames) in enumerate(stamps):
            latency = stamp - previous
            previous = stamp
            timing = ChunkTiming(
                chunk=i + 1,
                latency_ms=1e3 * latency,
                fps=layout.frames_per_chunk * batch / latency,
                cache_mb=nbytes / 2**20,
                cached_frames=frames,
            )
            if best[i] is None or timing.latency_ms < best[i].latency_ms:
                best[i] = timing
    return best


def format_table(timings: list[ChunkTiming]) -> str:
    rows = ["| chunk | latency (ms) | frames/s | KV cache (MB) | cached frames |", "|---|---|---|---|---|"]
    rows += [
        f"| {t.chunk} | {t.latency_ms:.1f} | {t.fps:.1f} | {t.cache_mb:.2f} | {t.cached_frames} |" for t in timings
    ]
    return "\n".join(rows)


def to_records(timings: list[ChunkTiming]) -> list[dict]:
    return [asdict(t) for t in timings]
