"""Per-GPU memory of an AAD-1 training stage under FSDP2, before launching it (and a CPU check of the planner).

    python benchmarks/memory_plan.py --preset wan2.1-14b --gpus 64 --stage stage3 --grad-checkpointing
    python benchmarks/memory_plan.py --preset wan2.1-14b --gpus 64 --stage stage3 --no-grad-checkpointing
    python benchmarks/memory_plan.py --preset wan2.1-14b --gpus 64 --stage stage3 --sequence-parallel 8
    python benchmarks/memory_plan.py --preset path/to/my-preset.yaml --gpus 8 --stage stage1
    python benchmarks/memory_plan.py --check-cpu      # planner vs a measured Stage-III-like step, tiny + demo
    python benchmarks/memory_plan.py --check-fsdp --stage stage3 --grad-checkpointing   # each rank of 2 processes

Prints one row per model the stage holds on the GPU (trained and frozen transformers, the text encoder, the VAE:
parameters, gradients, AdamW state, activations), the rollout's KV cache, FSDP2's unsharded buffers, the total per
GPU against the GPU size, every phase's total, the whole-job total and, for Stage III, the paper's ~1040 GB
reference. Conventions and formulas: aad1lib/scale/memory_planner.py. The planner is checked against measured
peaks in tests/test_memory_planner.py (one process, and each rank of a 2-process FSDP2 run:
aad1lib.scale.memory_measure.check_fsdp_plan_on_cpu).
"""

import argparse
import json
import sys

from aad1lib.config import ConfigError, available_presets, load_preset
from aad1lib.scale.memory_measure import check_fsdp_plan_on_cpu, check_plan_on_cpu
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


def check_fsdp(args) -> dict:
    if args.stage == "stage1":
        sys.exit("--check-fsdp measures stage2 or stage3")
    preset = "demo" if args.preset == "wan2.1-14b" else args.preset  # the default preset is far too big for a CPU
    check = check_fsdp_plan_on_cpu(
        preset,
        args.stage,
        batch_per_rank=args.batch_per_gpu or 4,
        grad_checkpointing=bool(args.grad_checkpointing),
        mixed_precision=args.mixed_precision,
    )
    print(check.summary())
    print(check.plan.to_markdown())
    return dict(
        planned_mib=check.plan.per_gpu_bytes / 2**20,
        measured_mib=[r["peak_bytes"] / 2**20 for r in check.ranks],
        ratio=check.ratio,
        phase_ratios=check.phase_ratios(),
    )


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
        help="D graphs alive in its update: 2 = real + fake, 4 with R1/R2 in the same backward "
        "(default: as the trainer, 4 when stage3.lam > 0)",
    )
    parser.add_argument("--sequence-parallel", type=int, default=1, help="context-parallel degree (activations / k)")
    parser.add_argument(
        "--check-cpu",
        action="store_true",
        help="measure a synthetic Stage-III step on this CPU (tiny, demo) against the planner",
    )
    parser.add_argument(
        "--check-fsdp",
        action="store_true",
        help="measure each rank of a 2-process FSDP2 run of --stage (stage2/stage3; demo unless --preset names "
        "another CPU preset) against the planner with num_gpus=2",
    )
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16"], help="--check-fsdp: compute dtype")
    parser.add_argument("--methods", nargs="+", default=["allocator", "rss"], choices=["allocator", "rss", "malloc"])
    parser.add_argument("--steps", type=int, default=2, help="--check-cpu: steps per measured run")
    parser.add_argument("--repeats", type=int, default=1, help="--check-cpu: runs per method (the max is kept)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.gpus < 1:
        sys.exit("--gpus must be >= 1")
    try:
        result = check_cpu(args) if args.check_cpu else check_fsdp(args) if args.check_fsdp else print_plan(args)
    except ConfigError as err:  # unknown preset / missing file / bad key / sizes contradicting the checkpoint
        sys.exit(f"error: {err}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
