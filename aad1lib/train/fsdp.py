"""FSDP2 (torch.distributed.fsdp.fully_shard) for the Wan models: sharding, and checkpoints of full states.

accelerate's FSDP plugin refuses CPU (v1) or silently falls back to DDP (v2) (docs/design.md §4), so we call
PyTorch's FSDP2 ourselves: one ``fully_shard`` per transformer block, then the root. Checkpoints gather
full (unsharded) state dicts on CPU, so a run saved by N processes loads in one, and vice versa.

No pickle from a run folder executes code: weights are safetensors, and the optimizer, scheduler and EMA states
(``*.optim.pt``, ``*.sched.pt``, ``ema.pt``: tensors in plain dicts/lists) load through :func:`load_state`,
which is ``torch.load(..., weights_only=True)`` and refuses, naming the file, anything else.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

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

# one FSDP unit per transformer block (the models' _no_split_modules): Wan, umT5 and CLIP vision (frozen encoders)
SHARD_UNITS = ("WanTransformerBlock", "UMT5Block", "CLIPEncoderLayer")
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)
COMPUTE_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class UnsafeCheckpointError(RuntimeError):
    """A run-folder state file holds more than tensors in plain containers; it was not loaded."""


def load_state(path: Path, map_location: str | torch.device | None = "cpu") -> Any:
    """A ``torch.save``'d state from a run folder, unpickled with ``weights_only=True``: tensors, numbers,
    strings and plain containers only, so a crafted file (on a shared filesystem, say) cannot run code on resume.
    Anything else is refused with :class:`UnsafeCheckpointError` naming the file, before any of it executes.

    Tensors land on ``map_location`` (CPU by default: ``load_state_dict`` moves optimizer state to the
    parameters' devices, so no rank reads rank 0's state onto rank 0's GPU)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds pickled objects other than tensors and plain containers, which "
            "could run code when unpickled (AAD-1 writes only tensors and plain dicts/lists there). If you did "
            f"not write it, inspect it; otherwise delete it or its checkpoint folder. torch said: {err}"
        ) from err


def shard_model(model: torch.nn.Module, mixed_precision: str = "no") -> torch.nn.Module:
    """``fully_shard`` every transformer block, then the root (parameters become DTensors).

    Call it on a model still on the CPU: each rank then moves only its shard to the device. The root does not
    cast its inputs (FSDP2's default would round Wan's 0..1000 timestep to bf16, which stock Wan keeps in fp32):
    callers run under autocast, as :class:`~aad1lib.train.loop.TrainLoop` does.
    """
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if (mixed_precision == "bf16")
        else MixedPrecisionPolicy()
    )
    _shard_units_then_root(model, policy)
    return model


def _shard_units_then_root(root: torch.nn.Module, policy: MixedPrecisionPolicy) -> None:
    for unit in root.modules():
        if type(unit).__name__ in SHARD_UNITS:
            fully_shard(unit, mp_policy=policy)
    fully_shard(root, mp_policy=dataclasses.replace(policy, cast_forward_inputs=False))


def shard_frozen(module: torch.nn.Module) -> bool:
    """Shard the frozen transformers inside ``module`` (block units, then the model) in the dtype they hold.

    The FSDP roots are the outermost diffusers/transformers models that contain shard units, because their
    ``forward`` is what callers run (a wrapper such as the text encoder is called through ``encode``, which
    FSDP's hooks never see). Returns False when ``module`` holds no shard unit (it stays replicated).
    """
    from diffusers import ModelMixin
    from transformers import PreTrainedModel

    roots, seen = [], set()
    for child in module.modules():
        if id(child) in seen or not isinstance(child, ModelMixin | PreTrainedModel):
            continue
        if any(type(m).__name__ in SHARD_UNITS for m in child.modules()):
            roots.append(child)
            seen.update(id(m) for m in child.modules())
    for root in roots:
        dtype = next(root.parameters()).dtype
        _shard_units_then_root(root, MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=dtype))
    return bool(roots)


def replicate_from_rank0(model: torch.nn.Module, full_state: dict[str, torch.Tensor]) -> None:
    """Load rank 0's full ``full_state`` into the sharded ``model`` on every rank (FSDP2's broadcast load):
    every rank starts from rank 0's weights, random heads included, without a full copy on any device."""
    set_model_state_dict(model, full_state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


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
            optimizers[name].load_state_dict(load_state(folder / f"{name}.optim.pt"))
        if name in schedulers:
            schedulers[name].load_state_dict(load_state(folder / f"{name}.sched.pt"))


def load_sharded(folder: Path, models: dict, optimizers: dict, schedulers: dict) -> None:
    """Load full states written by :func:`save_sharded` into (possibly sharded) models; every rank reads."""
    for name, model in models.items():
        set_model_state_dict(model, load_file(str(folder / f"{name}.safetensors")), options=FULL)
        if name in optimizers:
            optim = load_state(folder / f"{name}.optim.pt")
            set_optimizer_state_dict(model, optimizers[name], optim_state_dict=optim, options=FULL)
        if name in schedulers:
            schedulers[name].load_state_dict(load_state(folder / f"{name}.sched.pt"))
