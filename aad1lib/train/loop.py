"""The training loop every stage runs on: accelerate, run folder, tracking, EMA, clipping, exact resume.

A stage trainer registers its models/optimizers, then hands :meth:`TrainLoop.fit` a ``step_fn(step, gen)``
that does one training step (calling :meth:`TrainLoop.optimize` for each update) and returns scalars
to log. Everything random inside a step draws from ``gen``, a generator seeded by (seed, step, rank),
so a run resumed from a checkpoint replays exactly the batches and noise of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..config import ExperimentConfig, TrainConfig
from ..run_folder import RUNS_ROOT, RunFolder
from .fsdp import (
    COMPUTE_DTYPES,
    full_state_dict,
    load_plain,
    load_sharded,
    load_state,
    replicate_from_rank0,
    save_plain,
    save_sharded,
    shard_frozen,
    shard_model,
)


class DivergenceError(RuntimeError):
    """Training produced a NaN/inf loss (or another stage-specific failure); the last good checkpoint is kept."""


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


def broadcast_parameters(model: torch.nn.Module) -> None:
    for tensor in list(model.parameters()) + list(model.buffers()):
        torch.distributed.broadcast(tensor.data, src=0)


def average_gradients(model: torch.nn.Module) -> None:
    """Data parallelism by hand: one all-reduce (mean) of all gradients, flattened per dtype.

    What DDP does, without its reducer, which cannot follow a model called several times per backward.
    """
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in model.parameters():
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    world = torch.distributed.get_world_size()
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


class TrainLoop:
    """Owns the accelerator and the run folder of one training run.

    Args:
        stage: stage name used in the run folder (``teacher``, ``stage1`` …).
        preset: preset name used in the run folder.
        config: the resolved config (dict) written to the run folder and the tracker.
        train: the shared loop settings.
        seed: base seed of the per-step generators.
        run_name: folder name suffix; an unfinished run of that name is resumed.
        runs_root: parent folder of runs (default ``experiments/runs``).
    """

    def __init__(
        self,
        stage: str,
        preset: str,
        config: dict[str, Any],
        train: TrainConfig,
        seed: int,
        run_name: str | None = None,
        runs_root: Path | None = None,
        accelerator: Accelerator | None = None,
    ):
        self.train = train
        self.seed = seed
        tracker = None if train.tracker == "none" else train.tracker
        cpu = not torch.cuda.is_available()
        state = PartialState(cpu=cpu)  # process group first: every rank must agree on the run folder
        name = [run_name or time.strftime("%Y%m%d-%H%M%S")]
        if state.num_processes > 1:
            broadcast_object_list(name)
        if state.is_main_process:
            self.run = RunFolder.create(stage, preset, config, name=name[0], root=runs_root)
        state.wait_for_everyone()
        if not state.is_main_process:
            self.run = RunFolder(Path(runs_root or RUNS_ROOT) / f"{stage}-{preset}-{name[0]}")
        if accelerator is None and AcceleratorState._shared_state:
            # accelerate keeps one state per process and refuses an Accelerator with another mixed precision
            # (a notebook or test session that trains a bf16 stage, then an fp32 one): start a fresh state
            AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = accelerator or Accelerator(
            cpu=cpu,
            mixed_precision=train.mixed_precision,
            log_with=tracker,
            project_dir=str(self.run.path),
            step_scheduler_with_optimizer=False,  # batches are global: one schedule step per update, any world size
        )
        if tracker is not None:
            self.accelerator.init_trackers("tracking", config=flatten_config(config))
        self.models: dict[str, torch.nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.emas: dict[str, EMAModel] = {}
        self.step = 0
        self.stop_reason: str | None = None
        # A stage's own resumable state: JSON values in `state` (saved in loop.json) and run-relative folders in
        # `checkpointed_folders` (copied into each checkpoint). A resumed run gets both back as they were at its
        # checkpoint, not as a killed run left them later (e.g. Stage II's best weights, Stage III's D counter).
        self.state: dict[str, Any] = {}
        self.checkpointed_folders: list[str] = []

    @classmethod
    def for_stage(
        cls,
        stage: str,
        cfg: ExperimentConfig,
        run_name: str | None = None,
        runs_root: Path | None = None,
        notebook_params: dict | None = None,
        init_from: RunFolder | None = None,
    ) -> TrainLoop:
        """The loop of one stage trainer; its run folder's config records the notebook's parameters and the run
        the stage starts from (``init_from``)."""
        config = dict(cfg.to_dict(), notebook=notebook_params or {})
        if init_from is not None:
            config["init_from"] = str(init_from.path)
        return cls(stage, cfg.name, config, cfg.train, cfg.seed, run_name=run_name, runs_root=runs_root)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    # ---- registration --------------------------------------------------------------------------
    def add_model(
        self,
        name: str,
        model: torch.nn.Module,
        make_optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
        make_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        ema_decay: float | None = None,
    ) -> torch.nn.Module:
        """Place a model on the devices (DDP, or FSDP2 when ``train.parallel == "fsdp2"`` and several processes
        run), build its optimizer/scheduler from the factories (after sharding, as FSDP2 requires) and its EMA.
        Returns the model to call in training steps."""
        if self.train.gradient_checkpointing:
            for module in model.modules():
                if getattr(module, "_supports_gradient_checkpointing", False):
                    module.enable_gradient_checkpointing()
        if self.sharded:  # shard on the CPU: each rank moves only its shard to the device
            full_state = model.state_dict() if self.is_main else {}
            model = shard_model(model, self.train.mixed_precision)
            replicate_from_rank0(model, full_state)  # every rank starts from rank 0's weights (random heads too)
            del full_state
        else:
            model = model.to(self.device)
            if self.accelerator.num_processes > 1:
                broadcast_parameters(model)  # every rank starts from rank 0's weights (random heads included)
        # Not wrapped in DDP: our rollouts call the generator several times before one backward (and D runs
        # 4 times per update with R1/R2), which DDP's reducer rejects; gradients are averaged in optimize().
        optimizer = make_optimizer(model.parameters()) if make_optimizer else None
        if optimizer is not None:
            optimizer = self.accelerator.prepare(optimizer)
        if optimizer is not None:
            self.optimizers[name] = optimizer
            if make_scheduler is not None:
                scheduler = make_scheduler(optimizer)
                self.schedulers[name] = self.accelerator.prepare(scheduler)
        if ema_decay is not None:
            self.emas[name] = EMAModel(model.parameters(), decay=ema_decay)
        self.models[name] = model
        return model

    def add_frozen(self, model: torch.nn.Module, dtype: torch.dtype | None = None) -> torch.nn.Module:
        """Place a frozen model (teacher / real score, text encoder, ...): cast on the CPU to the compute dtype
        (or ``dtype``), then, under FSDP2, sharded by transformer block (no optimizer state, no full copy on
        any device); otherwise moved to the device. Call it on every rank, and call the model on every rank."""
        model = model.requires_grad_(False).eval()
        dtype = dtype or self.compute_dtype
        if any(p.dtype != dtype for p in model.parameters()):
            model = model.to(dtype)
        if not (self.sharded and shard_frozen(model)):
            model = model.to(self.device)
        return model

    def add_frozen_or_none(self, model: torch.nn.Module | None) -> torch.nn.Module | None:
        """:meth:`add_frozen` for an optional model (e.g. the image encoder of Wan I2V presets only)."""
        return None if model is None else self.add_frozen(model)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype models compute in (``train.mixed_precision``); frozen models are held in it."""
        return COMPUTE_DTYPES[self.train.mixed_precision]

    @property
    def sharded(self) -> bool:
        """FSDP2 is on (only with several processes; one process trains the plain model)."""
        return self.train.parallel == "fsdp2" and self.accelerator.num_processes > 1

    def step_generator(self, step: int, device: torch.device | str = "cpu") -> torch.Generator:
        """Randomness of one step: a function of (seed, step) only, so a resume replays it.

        The same on every rank: draw for the GLOBAL batch and keep this rank's rows with :meth:`local`,
        so N processes see exactly the batch one process would.
        """
        gen = torch.Generator(device=device)
        gen.manual_seed((self.seed * 1_000_003 + step) % 2**63)
        return gen

    def local_batch_size(self, global_batch: int) -> int:
        world = self.accelerator.num_processes
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} does not split over {world} processes")
        return global_batch // world

    def local(self, rows):
        """This rank's share (dim 0) of a tensor or list drawn for the global batch."""
        per = self.local_batch_size(len(rows))
        start = self.accelerator.process_index * per
        return rows[start : start + per]

    # ---- one update ----------------------------------------------------------------------------
    def optimize(self, name: str, loss: torch.Tensor, retain_graph: bool = False) -> float | None:
        """Backward, clip, step and zero-grad the optimizer ``name``; refuses a non-finite loss first.

        Returns the gradient norm before clipping (None if clipping is off).
        """
        value = loss.detach().float()
        if not torch.isfinite(value).all():
            self._diverged(f"{name} loss is {value.item()} at step {self.step}")
        self.accelerator.backward(loss, retain_graph=retain_graph)
        if self.accelerator.num_processes > 1 and not self.sharded:
            average_gradients(self.models[name])
        grad_norm = None
        if self.train.grad_clip and self.train.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.models[name].parameters(), self.train.grad_clip)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
            if not math.isfinite(grad_norm):
                self.optimizers[name].zero_grad(set_to_none=True)
                self._diverged(f"{name} gradient norm is {grad_norm} at step {self.step}")
        self.optimizers[name].step()
        if name in self.schedulers:
            self.schedulers[name].step()
        self.optimizers[name].zero_grad(set_to_none=True)
        if name in self.emas:
            self.emas[name].step(self.models[name].parameters())
        return grad_norm

    def request_stop(self, reason: str) -> None:
        """End :meth:`fit` after the current step (early stopping); the step is checkpointed."""
        self.stop_reason = reason

    def _diverged(self, what: str) -> None:
        last = self.run.latest_checkpoint()
        raise DivergenceError(
            f"training diverged: {what}. Stopped; the last good checkpoint is "
            f"{last if last else '(none yet)'} in {self.run.path}"
        )

    # ---- the loop ------------------------------------------------------------------------------
    def fit(
        self,
        step_fn: Callable[[int, torch.Generator], dict[str, float]],
        max_steps: int,
        sample_fn: Callable[[int], None] | None = None,
        desc: str = "train",
    ) -> list[dict[str, Any]]:
        """Run steps ``start .. max_steps - 1`` (start = after the latest checkpoint) and return the metrics."""
        start = self.resume()
        bar = tqdm(range(start, max_steps), desc=desc, initial=start, total=max_steps, disable=not self.is_main)
        tic = time.time()
        for step in bar:
            self.step = step
            for model in self.models.values():
                model.train()
            with self.accelerator.autocast():  # bf16/fp16 autocast when train.mixed_precision asks for it
                metrics = step_fn(step, self.step_generator(step))
            if self.accelerator.num_processes > 1:  # log the global-batch value, not rank 0's share
                values = torch.tensor(list(metrics.values()), dtype=torch.float64, device=self.device)
                metrics = dict(zip(metrics, self.accelerator.reduce(values, "mean").tolist(), strict=True))
            for key, value in metrics.items():
                if not math.isfinite(value):
                    self._diverged(f"{key} = {value} at step {step}")
            peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
            record = dict(step=step, **{k: float(v) for k, v in metrics.items()}, seconds=time.time() - tic,
                          peak_rss_mb=peak_mb)  # fmt: skip
            if self.is_main:
                self.run.log_metrics(record)
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(metrics.items())[:3]})
            if step % self.train.log_every == 0 or step == max_steps - 1:
                self.accelerator.log(metrics, step=step)
            done = step + 1
            if sample_fn is not None and (done % self.train.sample_every == 0 or done == max_steps):
                for model in self.models.values():
                    model.eval()
                with self.accelerator.autocast():  # every rank: sharded models need all of them
                    sample_fn(done)
            if done % self.train.checkpoint_every == 0 or done == max_steps or self.stop_reason:
                self.save_checkpoint(done)
            if self.stop_reason:
                if self.is_main:
                    print(f"stopped after step {done}: {self.stop_reason}")
                break
        bar.close()
        self.step = done if max_steps > start else start
        return self.run.read_metrics()

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self, done_steps: int) -> Path:
        """Models, optimizers, schedulers and EMA, written atomically (no RNG state: steps draw from
        :meth:`step_generator`)."""
        tmp = self.run.begin_checkpoint(done_steps) if self.is_main else None
        tmp_list = [str(tmp) if tmp else None]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(tmp_list)
        folder = Path(tmp_list[0])
        if self.sharded:
            save_sharded(folder, self.models, self.optimizers, self.schedulers, self.is_main)
        elif self.is_main:
            save_plain(folder, self.models, self.optimizers, self.schedulers)
        if self.is_main and self.emas:
            torch.save({name: ema.state_dict() for name, ema in self.emas.items()}, folder / "ema.pt")
        if self.is_main:
            for name in self.checkpointed_folders:
                if (self.run.path / name).exists():
                    shutil.copytree(self.run.path / name, folder / "folders" / name)
        self.accelerator.wait_for_everyone()
        final = None
        if self.is_main:
            state = dict(stage_state=self.state)
            final = self.run.commit_checkpoint(Path(tmp_list[0]), done_steps, state, keep=self.train.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return final or self.run.checkpoint_dir(done_steps)

    def resume(self) -> int:
        """Load the latest checkpoint of this run, if any; return the first step still to run."""
        latest = self.run.latest_checkpoint()
        if latest is None:
            if self.is_main:  # left by an attempt killed before its first checkpoint
                for name in self.checkpointed_folders:
                    shutil.rmtree(self.run.path / name, ignore_errors=True)
            return 0
        if self.sharded:
            load_sharded(latest, self.models, self.optimizers, self.schedulers)
        else:
            load_plain(latest, self.models, self.optimizers, self.schedulers)
        if self.emas:
            for name, state in load_state(latest / "ema.pt", map_location=self.device).items():
                self.emas[name].load_state_dict(state)
        saved = json.loads((latest / "loop.json").read_text())
        done = saved["step"]
        self.state.update(saved.get("stage_state", {}))
        self.accelerator.wait_for_everyone()  # every rank has read the checkpoint before rank 0 rewrites folders
        if self.is_main:
            for name in self.checkpointed_folders:
                shutil.rmtree(self.run.path / name, ignore_errors=True)  # may be newer than the checkpoint
                if (latest / "folders" / name).exists():
                    shutil.copytree(latest / "folders" / name, self.run.path / name)
            self.run.truncate_metrics(done - 1)
            print(f"resumed {self.run.path.name} from {latest.name}")
        return done

    def unwrap(self, name: str) -> torch.nn.Module:
        """The model (never DDP-wrapped). Under FSDP2 its parameters stay sharded: call it on every rank."""
        return self.models[name]

    def export_model(self, name: str, path: Path, use_ema: bool = True) -> torch.nn.Module:
        """Write ``name`` in diffusers format to ``path`` (EMA weights if it has an EMA) and return it loaded
        back as a plain single-process model. A collective under FSDP2: every rank must call it."""
        model = self.models[name]
        if use_ema and name in self.emas:
            self.emas[name].copy_to(model.parameters())
        state = full_state_dict(model) if self.sharded else model.state_dict()
        plain_cls = next(c for c in type(model).__mro__ if not c.__name__.startswith("FSDP"))  # FSDP2 subclasses
        if self.is_main:
            plain = plain_cls.from_config(model.config)
            plain.load_state_dict(state)
            plain.save_pretrained(path)
        self.accelerator.wait_for_everyone()
        return plain_cls.from_pretrained(path).to(self.device)

    def end(self) -> None:
        self.accelerator.end_training()
