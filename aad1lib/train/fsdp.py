"""FSDP2 (torch.distributed.fsdp.fully_shard) for the Wan models: sharding, and checkpoints of full states.

accelerate's FSDP plugin refuses CPU (v1) or silently falls back to DDP (v2) (DESIGN.md §4), so we call
PyTorch's FSDP2 ourselves: one ``fully_shard`` per transformer block, then the root. Checkpoints gather
full (unsharded) state dicts on CPU, so a run saved by N processes loads in one, and vice versa.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

SHARD_UNITS = ("WanTransformerBlock",)  # one FSDP unit per transformer block (Wan's _no_split_modules)
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def shard_model(model: torch.nn.Module, mixed_precision: str = "no") -> torch.nn.Module:
    """``fully_shard`` every transformer block, then the root (parameters become DTensors)."""
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if (mixed_precision == "bf16")
        else MixedPrecisionPolicy()
    )
    for module in model.modules():
        if type(module).__name__ in SHARD_UNITS:
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU state dict (a collective: every rank must call it)."""
    return get_model_state_dict(model, options=FULL)


def save_sharded(folder: Path, models: dict, optimizers: dict, schedulers: dict, is_main: bool) -> None:
    """Gather and write full model/optimizer/scheduler states (collective; rank 0 writes)."""
    for name, model in models.items():
        state = full_state_dict(model)
        optim = get_optimizer_state_dict(model, optimizers[name], options=FULL) if name in optimizers else None
        if is_main:
            save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"{name}.safetensors"))
            if optim is not None:
                torch.save(optim, folder / f"{name}.optim.pt")
            if name in schedulers:
                torch.save(schedulers[name].state_dict(), folder / f"{name}.sched.pt")


def save_plain(folder: Path, models: dict, optimizers: dict, schedulers: dict) -> None:
    """The same files as :func:`save_sharded` for unsharded models (called on the main process only)."""
    for name, model in models.items():
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(folder / f"{name}.safetensors"),
        )
        if name in optimizers:
            torch.save(optimizers[name].state_dict(), folder / f"{name}.optim.pt")
        if name in schedulers:
            torch.save(schedulers[name].state_dict(), folder / f"{name}.sched.pt")


def load_plain(folder: Path, models: dict, optimizers: dict, schedulers: dict) -> None:
    for name, model in models.items():
        model.load_state_dict(
            load_file(str(folder / f"{name}.safetensors"), device=str(next(model.parameters()).device))
        )
        if name in optimizers:
            optimizers[name].load_state_dict(torch.load(folder / f"{name}.optim.pt", weights_only=False))
        if name in schedulers:
            schedulers[name].load_state_dict(torch.load(folder / f"{name}.sched.pt", weights_only=False))


def load_sharded(folder: Path, models: dict, optimizers: dict, schedulers: dict) -> None:
    """Load full states written by :func:`save_sharded` into (possibly sharded) models; every rank reads."""
    for name, model in models.items():
        set_model_state_dict(model, load_file(str(folder / f"{name}.safetensors")), options=FULL)
        if name in optimizers:
            optim = torch.load(folder / f"{name}.optim.pt", weights_only=False)
            set_optimizer_state_dict(model, optimizers[name], optim_state_dict=optim, options=FULL)
        if name in schedulers:
            schedulers[name].load_state_dict(torch.load(folder / f"{name}.sched.pt", weights_only=False))
