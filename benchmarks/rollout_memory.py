"""Allocator peak of a Self-Forcing rollout with gradients through every chunk (the graph kept alive), with
gradient checkpointing: how the KV cache's share grows with the number of chunks.

    python benchmarks/rollout_memory.py --preset demo --frames 8 16 32

Each chunk's recomputed blocks read the cache's shared segments (docs/design.md §7), so the peak grows linearly
with the chunks; a cache copied into every chunk's graph grows quadratically (measured on demo sizes, no window:
8 → 16 generated frames, 70.7 → 199.0 MiB before, 41.7 → 78.0 MiB after).
"""

from __future__ import annotations

import argparse

import torch

from aad1lib.config import load_preset
from aad1lib.flow import few_step_sigmas
from aad1lib.models import CausalWanTransformer3DModel
from aad1lib.rollout import stream_generate
from aad1lib.scale.memory_measure import measure_peak_memory


def rollout_peak_bytes(cfg, frames: int, batch: int, window_frames: int | None, checkpointing: bool = True) -> int:
    """Allocator peak (bytes) of one 1-step rollout of ``frames`` generated latent frames, graph held."""
    from dataclasses import replace

    layout = replace(cfg.chunk_layout(), window_frames=window_frames)
    model = CausalWanTransformer3DModel(**cfg.wan_kwargs()).train()
    if checkpointing:
        model.enable_gradient_checkpointing()
    gen = torch.Generator().manual_seed(0)
    channels, height, width = cfg.model.in_channels, cfg.data.height, cfg.data.width
    text = torch.randn(batch, cfg.text.max_length, cfg.model.text_dim, generator=gen)
    noise = torch.randn(batch, channels, frames, height, width, generator=gen)
    context = torch.randn(batch, channels, layout.context_frames, height, width, generator=gen)
    kept = {}

    def run() -> None:
        kept["video"] = stream_generate(model, layout, text, noise, few_step_sigmas([1000], cfg.sampling.shift),
                                        context=context, grad_step=0).video  # fmt: skip

    measurement, _ = measure_peak_memory(run, "allocator")
    return measurement.delta_bytes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32], help="generated latent frames")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--window-frames", type=int, default=None, help="default: no window (the cache grows)")
    args = parser.parse_args(argv)
    cfg = load_preset(args.preset)
    torch.set_num_threads(1)
    print("| generated frames | chunks | allocator peak (MiB) |\n|---|---|---|")
    for frames in args.frames:
        peak = rollout_peak_bytes(cfg, frames, args.batch or cfg.train.batch_size, args.window_frames)
        print(f"| {frames} | {frames // cfg.chunking.frames_per_chunk} | {peak / 2**20:.1f} |", flush=True)


if __name__ == "__main__":
    main()
