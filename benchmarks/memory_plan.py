"""Per-GPU memory of an AAD-1 training stage under FSDP2, before launching it (and a CPU check of the planner).

    python benchmarks/memory_plan.py --preset wan2.1-14b --gpus 64 --stage stage3 --grad-checkpointing
    python benchmarks/memory_plan.py --preset wan2.1-14b --gpus 64 --stage stage3 --no-grad-checkpointing
    python benchmarks/memory_plan.py --preset wan2.1-14b --gpus 64 --stage stage3 --sequence-parallel 8
    python benchmarks/memory_plan.py --preset path/to/my-preset.yaml --gpus 8 --stage stage1
    python benchmarks/memory_plan.py --check-cpu      # planner vs a measured Stage-III-like step, tiny + demo

Prints one row per model (parameters, gradients, AdamW state, activations), the rollout's KV cache, FSDP2's
transient unsharded buffers, the total per GPU against the GPU size, the whole-job total and, for Stage III,
the paper's ~1040 GB reference. Conventions and formulas: aad1lib/scale/memory_planner.py.
"""

import argparse
import json
import sys

from aad1lib.config import ConfigError, available_presets, load_preset
from aad1lib.scale.memory_measure import check_plan_on_cpu
from aad1lib.scale.memory_planner import GIB, PUBLISHED_PARAMS, STAGES, plan_memory, wan_params


def print_plan(args) -> dict:
    cfg = load_preset(args.preset)
    plan = plan_memory(
        cfg,
        args.stage,
        num_gpus=args.gpus,
        batch_per_gpu=args.batch_per_gpu,
        grad_checkpointing=args.grad_checkpointing,
        gpu_gb=args.gpu_gb,
        frozen_disc_backbone=args.frozen_disc_backbone or None,
        disc_graphs=args.disc_graphs,
        sequence_parallel=args.sequence_parallel,
    )
    exact = wan_params(cfg.model)
    published = PUBLISHED_PARAMS.get(cfg.name)
    print(
        f"Wan transformer parameters: {exact:,} (exact, checked against the model built on meta)"
        + (f"; published name: {published / 1e9:g}B" if published else "")
    )
    print(plan.to_markdown())
    return {"per_gpu_gib": plan.per_gpu_bytes / GIB, "job_gib": plan.job_bytes / GIB, "fits": plan.fits}


def check_cpu(args) -> dict:
    results = {}
    for preset in ("tiny", "demo"):
        cfg = load_preset(preset)
        for method in args.methods:
            check = check_plan_on_cpu(
                cfg,
                method=method,
                repeats=args.repeats,
                steps=args.steps,
                grad_checkpointing=bool(args.grad_checkpointing),
            )
            print(check.summary())
            results[f"{preset}/{method}"] = dict(
                measured_mib=check.measured_bytes / 2**20,
                predicted_mib=check.predicted_bytes / 2**20,
                ratio=check.ratio,
            )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--preset",
        default="wan2.1-14b",
        help=f"a preset name ({', '.join(available_presets())}) or the path of a preset YAML file",
    )
    parser.add_argument("--stage", default="stage3", choices=STAGES)
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--batch-per-gpu", type=int, help="clips per GPU (default: train.batch_size / gpus)")
    parser.add_argument(
        "--grad-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: the preset's train.gradient_checkpointing",
    )
    parser.add_argument("--gpu-gb", type=float, default=80.0, help="GPU memory in GiB")
    parser.add_argument("--frozen-disc-backbone", action="store_true", help="Stage III: train the D heads only")
    parser.add_argument(
        "--disc-graphs",
        type=int,
        default=2,
        help="D graphs alive in its update: 2 = real + fake, 4 with R1/R2 in the same backward",
    )
    parser.add_argument("--sequence-parallel", type=int, default=1, help="context-parallel degree (activations / k)")
    parser.add_argument(
        "--check-cpu",
        action="store_true",
        help="measure a synthetic Stage-III step on this CPU (tiny, demo) against the planner",
    )
    parser.add_argument("--methods", nargs="+", default=["allocator", "rss"], choices=["allocator", "rss"])
    parser.add_argument("--steps", type=int, default=2, help="--check-cpu: steps per measured run")
    parser.add_argument("--repeats", type=int, default=1, help="--check-cpu: runs per method (the max is kept)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.gpus < 1:
        sys.exit("--gpus must be >= 1")
    try:
        result = check_cpu(args) if args.check_cpu else print_plan(args)
    except ConfigError as err:  # unknown preset / missing file / bad key / sizes contradicting the checkpoint
        sys.exit(f"error: {err}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
