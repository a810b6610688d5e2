"""1 NFE vs 4 NFE vs the teacher, in one process: latency, frames/s, peak memory, growth with video length.

    python benchmarks/speed.py                                  # tiny preset, CPU
    python benchmarks/speed.py --preset wan2.1-1.3b --device cuda --lengths 1 4   # a GPU: + bf16 / flash

Builds ONE randomly initialised Wan transformer of the preset's size (no checkpoint, no training: weights do
not change the timing) and runs it as the 1-NFE causal student (AAD-1), as a 4-NFE causal baseline
(CausVid / Self-Forcing) and as the bidirectional teacher with the preset's sampler steps × CFG. Prints the
markdown table (measured 4-NFE / 1-NFE ratio next to the pass-count limit 5/2 = 2.5× and the paper's
14.33 / 5.71 FPS) and, with --json, writes the result.
"""

import argparse
import json

import torch

from aad1lib.config import load_preset
from aad1lib.eval.speed import format_speed_table, speed_benchmark
from aad1lib.models import CausalWanTransformer3DModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1, 4, 16], help="multiples of the training length")
    parser.add_argument("--baseline-steps", type=int, default=4, help="denoising steps per chunk of the baseline")
    parser.add_argument("--teacher-steps", type=int, help="default: the preset's sampling.teacher_steps")
    parser.add_argument("--teacher-max-length", type=int, help="skip teacher lengths above this multiple")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", help="default: float32 on CPU; float32 bfloat16 on CUDA")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_preset(args.preset)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, (args.dtypes or ["float32"])[0])
    with torch.device(args.device):  # build on the device: a 14B model never passes through CPU memory
        model = CausalWanTransformer3DModel(**cfg.wan_kwargs()).to(dtype).eval()
    teacher_steps = args.teacher_steps or cfg.sampling.teacher_steps
    cfg_text = " × CFG" if cfg.sampling.guidance_scale != 1.0 else ""
    models = {
        "AAD-1 (1 NFE)": (model, "causal", 1),
        f"causal baseline ({args.baseline_steps} NFE)": (model, "causal", args.baseline_steps),
        f"teacher ({teacher_steps} steps{cfg_text})": (model, "teacher", teacher_steps),
    }
    result = speed_benchmark(
        cfg, models, lengths=tuple(args.lengths), batch=args.batch, repeats=args.repeats,
        dtypes=tuple(args.dtypes) if args.dtypes else None, teacher_max_length=args.teacher_max_length,
        seed=args.seed,
    )  # fmt: skip
    params = sum(p.numel() for p in model.parameters())
    print(f"preset {cfg.name}: random-init Wan transformer, {params:,} parameters")
    print(format_speed_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(result, args=vars(args)), f, indent=2)


if __name__ == "__main__":
    main()
