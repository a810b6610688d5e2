"""Stage I data: teacher ODE trajectories, kept at the student's target timesteps, streamed from disk.

The teacher samples each clip with many Euler steps (CFG on); the states at a few evenly spaced steps
(the student's few-step list) and the final x0 are written in shards of safetensors files, so a
14B-scale set never has to fit in memory: :class:`ODEPairsDataset` reads one row at a time. Generation
writes each shard atomically and skips finished shards, so an interrupted run resumes.

```
ode_pairs/index.json                        spec: sigmas, target indices, shapes, shard names
ode_pairs/shard-00000.safetensors           states [N, S, C, F, H, W], x0 [N, C, F, H, W]
                                            (+ wan_i2v: condition [N, C_cond, F, H, W], encoder_hidden_states_image)
ode_pairs/shard-00000.json                  prompts, sources
```
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from . import flow
from .builders import collate
from .sampling import teacher_velocity_fn


def target_step_indices(ode_steps: int, target_steps: int) -> list[int]:
    """Evenly spaced teacher-step indices whose states the student learns from (0 = pure noise)."""
    return [round(i * ode_steps / target_steps) for i in range(target_steps)]


@torch.no_grad()
def record_trajectory(
    teacher, context, text, uncond_text, noise, sigmas, indices, guidance_scale, condition: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler-sample with the teacher; return states at ``sigmas[indices]`` ``[B, S, C, F, H, W]`` and x0.

    ``context``: clean context latents ``[B, C, Fc, H, W]`` (context_frame I2V) or None (Wan I2V ``condition``)."""
    ctx = 0 if context is None else context.shape[2]
    velocity = teacher_velocity_fn(teacher, ctx, text, uncond_text, guidance_scale, condition)
    x = noise if context is None else torch.cat([context, noise], dim=2)
    states = {}
    for i in range(len(sigmas) - 1):
        if i in indices:
            states[i] = x.clone()
        sigma = sigmas[i].expand(x.shape[0])
        x = flow.euler_step(x, velocity(x, sigma), sigma, sigmas[i + 1].expand(x.shape[0]))
    return torch.stack([states[i] for i in indices], dim=1), x


def generate_ode_pairs(
    out_dir: Path,
    teacher,
    dataset: Dataset,
    text_encoder,
    codec,
    num_pairs: int,
    ode_steps: int,
    target_steps: int,
    shift: float,
    guidance_scale: float,
    context_frames: int,
    shard_size: int,
    batch_size: int,
    seed: int,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    conditioner=None,
) -> Path:
    """Write ``num_pairs`` trajectories (clips ``0..num_pairs-1`` of ``dataset``, cycled) into ``out_dir``.

    With ``world_size > 1`` every rank must call it: each batch's rows are split over the ranks (the teacher may
    be sharded, so all ranks run every forward), gathered, and rank 0 writes. A row's noise depends only on
    its index, so any world size writes the same trajectories. ``conditioner``: an
    :class:`~aad1lib.conditioning.I2VConditioner`; its Wan I2V inputs are stored with each trajectory, since the
    student regresses under the same condition.
    """
    out_dir = Path(out_dir)
    is_main = rank == 0
    sigmas = flow.sampling_sigmas(ode_steps, shift)
    indices = target_step_indices(ode_steps, target_steps)
    shards = [f"shard-{s:05d}" for s in range((num_pairs + shard_size - 1) // shard_size)]
    spec = dict(
        num_pairs=num_pairs, shard_size=shard_size, shards=shards, ode_steps=ode_steps, shift=shift,
        guidance_scale=guidance_scale, target_indices=indices, target_sigmas=[float(sigmas[i]) for i in indices],
        context_frames=context_frames, seed=seed,
    )  # fmt: skip
    index_file = out_dir / "index.json"
    if index_file.exists() and json.loads(index_file.read_text()) != spec:
        raise ValueError(f"{out_dir} holds ODE pairs of another spec; remove it or use another run")
    # resume: finished shards are kept (decided before anyone writes, so every rank skips the same shards)
    todo = [not (out_dir / f"{name}.safetensors").exists() for name in shards]
    if world_size > 1:
        torch.distributed.barrier()
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        index_file.write_text(json.dumps(spec, indent=2))
    device = next(teacher.parameters()).device
    empty = text_encoder.encode([""])[0]
    bar = tqdm(total=num_pairs, desc="ODE trajectories", disable=not (progress and is_main))
    for s, name in enumerate(shards):
        rows = range(s * shard_size, min(num_pairs, (s + 1) * shard_size))
        if not todo[s]:
            bar.update(len(rows))
            continue
        states, x0s, prompts, sources, conditions = [], [], [], [], {}
        for start in range(rows.start, rows.stop, batch_size):
            batch_rows = list(range(start, min(rows.stop, start + batch_size)))
            per_rank = -(-len(batch_rows) // world_size)
            mine = batch_rows[rank * per_rank : (rank + 1) * per_rank]
            padded = not mine  # fewer rows than ranks: run a copy of the last row (every rank must run) and drop it
            mine = mine or batch_rows[-1:]
            batch = collate([dataset[i % len(dataset)] for i in mine])
            latents = codec.encode(batch["video"].to(device))
            noise = torch.stack([_row_noise(seed, i, latents[0, :, context_frames:].shape) for i in mine]).to(latents)
            text = text_encoder.encode(batch["prompt"])[0]
            condition = conditioner(batch["first_frame"].to(device)) if conditioner is not None else {}
            context = latents[:, :, :context_frames] if context_frames else None
            st, x0 = record_trajectory(teacher, context, text, empty.expand_as(text), noise, sigmas.to(latents),
                                       indices, guidance_scale, condition)  # fmt: skip
            stored = {k: v.float().cpu() for k, v in condition.items()}
            part = [] if padded else [(st.float().cpu(), x0.float().cpu(), stored, batch["prompt"], batch["source"])]
            parts = [part]
            if world_size > 1:
                parts = [None] * world_size
                torch.distributed.all_gather_object(parts, part)
            for st, x0, cond, batch_prompts, batch_sources in (p for rank_parts in parts for p in rank_parts):
                states.append(st)
                x0s.append(x0)
                for key, value in cond.items():
                    conditions.setdefault(key, []).append(value)
                prompts += batch_prompts
                sources += batch_sources
            bar.update(len(batch_rows))
        if not is_main:
            continue
        tmp = out_dir / f".{name}.tmp"
        tensors = {"states": torch.cat(states), "x0": torch.cat(x0s)}
        tensors.update({key: torch.cat(values) for key, values in conditions.items()})
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        (out_dir / f"{name}.json").write_text(json.dumps(dict(prompts=prompts, sources=sources)))
        os.replace(tmp, out_dir / f"{name}.safetensors")  # a shard exists only once complete
    bar.close()
    return out_dir


def _row_noise(seed: int, row: int, shape) -> torch.Tensor:
    """The initial noise of trajectory ``row``: a function of (seed, row) only, whatever the batching."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + row))


class ODEPairsDataset(Dataset):
    """Reads trajectories one row at a time: ``{"states": [S, C, F, H, W], "x0": [C, F, H, W], "prompt": str}``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / "index.json"
        if not index.exists():
            raise FileNotFoundError(f"no ODE pairs in {self.folder} (index.json missing): generate them first")
        self.spec = json.loads(index.read_text())
        missing = [s for s in self.spec["shards"] if not (self.folder / f"{s}.safetensors").exists()]
        if missing:
            raise FileNotFoundError(f"ODE pair shards missing in {self.folder}: {missing} (generation interrupted?)")
        self._meta = {}

    @property
    def target_sigmas(self) -> torch.Tensor:
        return torch.tensor(self.spec["target_sigmas"])

    def __len__(self) -> int:
        return self.spec["num_pairs"]

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard, row = divmod(i, self.spec["shard_size"])
        name = self.spec["shards"][shard]
        with safe_open(str(self.folder / f"{name}.safetensors"), framework="pt") as f:
            # states, x0, and the Wan I2V inputs (condition, encoder_hidden_states_image) when the run has them
            item = {key: f.get_slice(key)[row : row + 1][0] for key in f.keys()}
        if name not in self._meta:
            self._meta = {name: json.loads((self.folder / f"{name}.json").read_text())}
        return {**item, "prompt": self._meta[name]["prompts"][row]}
