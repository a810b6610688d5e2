"""Stream N chunks through the causal Wan generator and print per-chunk latency, FPS and KV-cache memory.

    python benchmarks/streaming.py                       # docs/design.md §4 CPU size, window of 3 chunks
    python benchmarks/streaming.py --window-chunks 0     # no window: cost and cache grow with length

Target (foundation issue): with a window, the last chunk's latency is within 15 % of the first
full-window chunk's, and the cache stops growing once the window is full.
"""

import argparse
import json

import torch

from aad1lib.eval.streaming_speed import benchmark_streaming, format_table, to_records
from aad1lib.flow import few_step_sigmas
from aad1lib.models import CausalWanTransformer3DModel, ChunkLayout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--frames-per-chunk", type=int, default=2)
    parser.add_argument("--sink-frames", type=int, default=1)
    parser.add_argument("--window-chunks", type=int, default=3, help="0 = no window (cache keeps everything)")
    parser.add_argument("--size", type=int, default=32, help="frame height = width (pixel space)")
    parser.add_argument("--steps", type=int, default=1, help="denoising steps per chunk (1 = AAD-1)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128, help="transformer width (heads × 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the table as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CausalWanTransformer3DModel(
        patch_size=(1, 4, 4),
        num_attention_heads=args.width // 32,
        attention_head_dim=32,
        in_channels=3,
        out_channels=3,
        text_dim=64,
        freq_dim=64,
        ffn_dim=4 * args.width,
        num_layers=args.layers,
    ).eval()
    window = None
    if args.window_chunks:
        window = args.sink_frames + args.window_chunks * args.frames_per_chunk
    layout = ChunkLayout(args.frames_per_chunk, context_frames=1, sink_frames=args.sink_frames, window_frames=window)
    sigmas = few_step_sigmas([1000, 750, 500, 250][: args.steps], shift=5.0)
    timings = benchmark_streaming(model, layout, args.chunks, args.size, args.size, sigmas, repeats=args.repeats)

    tokens = (args.size // 4) ** 2
    print(
        f"layout: {layout}; {tokens} tokens/frame; {args.steps} step(s) + 1 cache write per chunk; "
        f"{args.threads} threads; best of {args.repeats}"
    )
    print(format_table(timings))
    if window:
        first_full = next(t for t in timings if t.cached_frames >= window)
        last = timings[-1]
        print(
            f"first full-window chunk: #{first_full.chunk} {first_full.latency_ms:.1f} ms; "
            f"last: {last.latency_ms:.1f} ms ({100 * (last.latency_ms / first_full.latency_ms - 1):+.1f} %); "
            f"cache {first_full.cache_mb:.2f} -> {last.cache_mb:.2f} MB"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "timings": to_records(timings)}, f, indent=2)


if __name__ == "__main__":
    main()
