"""Measure the memory of a callable on this machine (CPU), to check :mod:`.memory_planner` against reality.

Four measurements, from the most to the least exact:

- ``measure_peak_memory(fn, method="allocator")``: live tensor bytes, from ``torch.profiler``'s memory events
  (every allocation and free of PyTorch's CPU allocator, in time order; the running sum's maximum). This is the
  CPU analogue of ``torch.cuda.max_memory_allocated()`` and what the planner predicts; it is deterministic,
  so one run is enough. Tensors allocated before ``fn`` and freed inside it count negatively, as they should.
  The profiler records the calling thread's events only: a tensor another thread frees stays "live" (under
  FSDP2 with gloo, the workers free collective buffers: +10..22 MiB of drift per rank on a demo step, varying
  run to run), so it is exact for single-threaded code only. The peak inside each :func:`phase` range that
  ``fn`` opens is reported too (``phase_peaks``).
- ``measure_peak_memory(fn, method="malloc")``: glibc's count of bytes malloc'd and not yet freed
  (``mallinfo2``), sampled every ``interval_s`` (default 1 ms) by a background thread. Every thread's
  allocations and frees count, at byte precision and without the heap's slack; it also counts C++ objects
  (autograd nodes, gloo buffers) and one-time caches (oneDNN), so measure after a warm-up. Demo: within 2 MiB
  of the allocator's peak once warm (single thread); a peak shorter than the interval can be missed.
- ``measure_peak_memory(fn, method="rss")``: the process's resident set size sampled the same way from
  ``/proc/self/statm``, peak minus the value before ``fn``. Honest about everything (Python objects, oneDNN
  scratch, allocator fragmentation) but noisy: glibc keeps freed heap memory, so we first lower its mmap
  threshold (large tensors then go back to the OS when freed) and trim the heap before the baseline. Demo
  Stage-III step (before the step had approximate R1/R2): with glibc's default (dynamic) threshold RSS read
  1.8× the allocator's peak; with 64 KiB, 1.06× (one step) to 1.33× (two steps: small freed blocks stay in the
  heap); the trainer-like step with R1/R2 reads 1.36× in one step. Tiny models read ~15 MiB of fixed overhead.
- ``saved_tensor_bytes(fn)``: bytes of the distinct storages autograd saves for backward while ``fn`` runs
  (``saved_tensors_hooks``), parameters excluded: checks the per-block activation formula term by term.

Two checks of the planner, both with trainer-like synthetic steps (:func:`synthetic_stage3_step`,
:func:`synthetic_stage2_step`: the steps of ``aad1lib/train/stage3.py`` / ``stage2.py`` on random clips and
random weights with a preset's sizes):

- :func:`check_plan_on_cpu`: one process, plain fp32 models built inside the measured call (allocator), against
  ``plan_memory(cfg, "stage3", num_gpus=1, fp32)``;
- :func:`check_fsdp_plan_on_cpu`: ``python -m torch.distributed.run --nproc_per_node 2 -m
  aad1lib.scale.memory_measure`` (gloo): every rank places the models as the trainers do
  (``TrainLoop.add_model`` / ``add_frozen``: FSDP2 by block, frozen models in the compute dtype), takes one
  warm-up step on throwaway models, places fresh ones, and measures two steps with ``malloc``; a rank's peak =
  the bytes its models hold before the steps (sharded parameters and buffers: the CPU analogue of what sits on
  the GPU) + the peak over that baseline during the steps. Compared with ``plan_memory(cfg, stage,
  num_gpus=2)`` rank by rank, and phase by phase.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .. import flow
from ..builders import build_latent_codec, build_text
from ..config import ExperimentConfig, load_preset
from ..models.causal_wan import CausalWanTransformer3DModel
from ..models.discriminator import VideoDiscriminator
from ..processes import run_process_group
from ..train.loop import TrainLoop
from ..train.stage2 import Stage2Step
from ..train.stage3 import Stage3Step, build_discriminator
from .memory_planner import MemoryPlan, plan_memory, token_geometry

Method = Literal["allocator", "rss", "malloc"]
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


# ---- low-level readings ---------------------------------------------------------------------------------
def current_rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``, second field, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): RSS readings stay approximate
        return None


def return_freed_memory_to_os(mmap_threshold: int | None = 64 * 1024) -> None:
    """Collect garbage, make allocations above ``mmap_threshold`` use mmap (freed = returned to the OS), trim
    the heap. Lowering the threshold is process-wide and lasts; it makes RSS follow frees of large tensors."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return
    if mmap_threshold is not None:
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    libc.malloc_trim(0)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]  # fmt: skip


def malloc_in_use_bytes() -> int:
    """Bytes malloc has handed out and not had back, over every thread's arena plus mmapped blocks (glibc
    ``mallinfo2``: ``uordblks + hblkhd``). PyTorch's CPU tensors are malloc'd, so this is the process-wide live
    tensor bytes (+ C++ objects, gloo's buffers), whichever thread allocates or frees."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        raise RuntimeError("method='malloc' needs glibc >= 2.33 (mallinfo2)")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


class PeakSampler:
    """Background thread recording the peak of ``read()`` every ``interval_s`` seconds, overall and inside each
    :func:`phase` (``with PeakSampler(read) as s: ...``)."""

    def __init__(self, read: Callable[[], int] = current_rss_bytes, interval_s: float = 0.001):
        self.read = read
        self.interval_s = interval_s
        self.peak = 0
        self.samples = 0
        self.phase: str | None = None
        self.phase_peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        value = self.read()
        self.peak = max(self.peak, value)
        self.samples += 1
        if self.phase is not None:
            self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, value), value)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self.peak = self.read()
        _SAMPLERS.append(self)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        _SAMPLERS.remove(self)
        self.sample()


class RssSampler(PeakSampler):
    """:class:`PeakSampler` of the resident set size."""

    def __init__(self, interval_s: float = 0.001):
        super().__init__(current_rss_bytes, interval_s)


_SAMPLERS: list[PeakSampler] = []  # the running samplers (phase() tells them where the measured call is)
PHASE_PREFIX = "memory phase: "


@contextlib.contextmanager
def phase(name: str):
    """Label a stretch of a measured call: ``with phase("discriminator update"): ...``; its peak is reported in
    :attr:`MemoryMeasurement.phase_peaks` (allocator: a profiler range; rss/malloc: the sampler's readings)."""
    with torch.profiler.record_function(PHASE_PREFIX + name):
        for sampler in _SAMPLERS:
            sampler.phase = name
            sampler.sample()
        try:
            yield
        finally:
            for sampler in _SAMPLERS:
                sampler.sample()
                sampler.phase = None


@dataclass
class MemoryMeasurement:
    method: str
    baseline_bytes: int  # before fn (allocator: 0 = whatever was live before)
    peak_bytes: int  # the highest reading while fn ran
    seconds: float
    samples: int = 0  # readings taken (rss / malloc methods)
    phase_peaks: dict[str, int] = field(default_factory=dict)  # peak inside each phase() range (same scale)
    final_bytes: int | None = None  # allocator: live bytes when fn returned, over the baseline (a drift check)

    @property
    def delta_bytes(self) -> int:
        """Peak minus baseline: the memory fn needed on top of what existed before."""
        return self.peak_bytes - self.baseline_bytes


def _allocator_peak(fn: Callable[[], Any]) -> tuple[MemoryMeasurement, Any]:
    """Profiler memory events. Only the calling thread's are recorded: a tensor freed by another thread (gloo's
    workers release a collective's buffers) stays live in this count, so use ``malloc`` for multi-threaded code."""
    from torch._C._autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    CPU = DeviceType.CPU

    tic = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    seconds = time.perf_counter() - tic
    all_events = prof.profiler.kineto_results.events()
    events = [e for e in all_events if e.name() == "[memory]" and e.device_type() == CPU]
    events.sort(key=lambda e: e.start_ns())
    ranges = [(e.name()[len(PHASE_PREFIX) :], e.start_ns(), e.end_ns()) for e in all_events
              if e.name().startswith(PHASE_PREFIX)]  # fmt: skip
    live = peak = 0
    phase_peaks: dict[str, int] = {}
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
        for name, start, end in ranges:
            if start <= event.start_ns() <= end:
                phase_peaks[name] = max(phase_peaks.get(name, live), live)
    return MemoryMeasurement("allocator", 0, peak, seconds, phase_peaks=phase_peaks, final_bytes=live), result


def _sampled_peak(fn: Callable[[], Any], method: str, interval_s: float) -> tuple[MemoryMeasurement, Any]:
    read = current_rss_bytes if method == "rss" else malloc_in_use_bytes
    return_freed_memory_to_os()  # rss: freed large tensors go back to the OS; malloc: only collects garbage
    baseline = read()
    tic = time.perf_counter()
    with PeakSampler(read, interval_s) as sampler:
        result = fn()
    seconds = time.perf_counter() - tic
    return MemoryMeasurement(method, baseline, sampler.peak, seconds, sampler.samples, sampler.phase_peaks), result


def measure_peak_memory(
    fn: Callable[[], Any], method: Method = "allocator", interval_s: float = 0.001
) -> tuple[MemoryMeasurement, Any]:
    """Run ``fn()`` in this process and return (its peak memory over the baseline, its result)."""
    if method == "allocator":
        return _allocator_peak(fn)
    if method in ("rss", "malloc"):
        return _sampled_peak(fn, method, interval_s)
    raise ValueError(f"unknown method {method!r}; allowed: 'allocator', 'rss', 'malloc'")


def saved_tensor_bytes(fn: Callable[[], Any], exclude: list[torch.Tensor] = ()) -> tuple[int, Any]:
    """Bytes of the distinct storages autograd saves for backward while ``fn()`` runs, except ``exclude``'s
    storages (pass the parameters: a linear layer saves its weight, which is not an activation)."""
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}
    keep_alive = []  # a freed storage's address could be reused by a later tensor and hide it

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage.nbytes()
        keep_alive.append(tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn()
    return sum(storages.values()), result


# ---- trainer-like synthetic steps ----------------------------------------------------------------------------
@dataclass
class StepModels:
    """The models of a synthetic step and how to update one (plain AdamW here; ``TrainLoop.optimize`` under
    FSDP2). ``models``: generator + discriminator (Stage III) or generator + critic + teacher (Stage II)."""

    models: dict[str, torch.nn.Module]
    text_encoder: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    optimize: Callable[[str, torch.Tensor], Any] | None = None

    def update(self, name: str, loss: torch.Tensor) -> None:
        if self.optimize is not None:
            self.optimize(name, loss)
            return
        loss.backward()
        self.optimizers[name].step()
        self.optimizers[name].zero_grad(set_to_none=True)


def _adamw(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-5, betas=(0.0, 0.99), weight_decay=0.0)


def build_stage3_models(
    cfg: ExperimentConfig, frozen_disc_backbone: bool = False, grad_checkpointing: bool = False
) -> StepModels:
    """Causal generator + discriminator initialised from a teacher copy (the preset's sizes, random weights,
    fp32, one process) and the preset's text encoder."""
    stage3 = getattr(cfg, "stage3", None)
    generator = CausalWanTransformer3DModel(**cfg.wan_kwargs()).train()
    discriminator = VideoDiscriminator.from_teacher(
        generator,
        tap_fractions=tuple(getattr(stage3, "disc_taps", (0.5, 0.75, 1.0))),
        num_queries=getattr(stage3, "disc_queries", 4),
        train_backbone=not frozen_disc_backbone,
    )
    if grad_checkpointing:
        generator.enable_gradient_checkpointing()
        discriminator.backbone.enable_gradient_checkpointing()
    models = dict(generator=generator, discriminator=discriminator)
    text_encoder = build_text(cfg).requires_grad_(False).eval()
    return StepModels(models, text_encoder, {name: _adamw(m.parameters()) for name, m in models.items()})


def _synthetic_batch(cfg: ExperimentConfig, batch: int, gen: torch.Generator, text_encoder) -> dict:
    """Random clean latents (the codec's latent shape), this batch's prompt embeddings and the rollout noise."""
    geo = token_geometry(cfg)
    m = cfg.model
    spatial = cfg.spatial_factor
    h, w = cfg.data.height // spatial, cfg.data.width // spatial
    ctx = cfg.chunking.context_frames
    with torch.no_grad():
        text = text_encoder.encode([f"clip {i} of a synthetic batch" for i in range(batch)])[0]
    device = text.device
    return dict(
        real=torch.randn((batch, m.in_channels, geo.latent_frames, h, w), generator=gen).to(device),
        text=text,
        noise=torch.randn((batch, m.in_channels, geo.latent_frames - ctx, h, w), generator=gen).to(device),
        sigma=torch.rand((batch,), generator=gen).to(device),
        eps=torch.randn((4, batch, m.in_channels, geo.latent_frames, h, w), generator=gen).to(device),
    )


def synthetic_stage3_step(models: StepModels, cfg: ExperimentConfig, batch: int, seed: int = 0) -> dict:
    """One Stage III step as ``aad1lib/train/stage3.py`` takes it (its objectives, the same functions), on random clips.

    (a) discriminator: a no-grad one-step rollout gives the fake clip; real and fake noised to the same level;
    D on both (+ their perturbed forwards for approximate R1/R2 when ``stage3.lam > 0``), one backward, AdamW.
    (b) generator: Self-Forcing rollout, one step per chunk, gradients through every chunk's forward (detached
    cache); D on the noised fake clip with its weights left trainable (as the trainer does); logistic loss,
    one backward, AdamW. Each part is a :func:`phase` named like the planner's phases.
    """
    gen = torch.Generator().manual_seed(seed)
    s3 = getattr(cfg, "stage3", None)
    b = _synthetic_batch(cfg, batch, gen, models.text_encoder)
    step = Stage3Step(models.models["generator"], models.models["discriminator"], cfg.chunk_layout(),
                      cfg.chunking.context_frames, torch.tensor([1.0, 0.0]).to(b["real"]), getattr(s3, "lam", 0.0),
                      getattr(s3, "r1_sigma", 0.01))  # fmt: skip
    b = dict(b, d_noise=b["eps"])
    with phase("discriminator update"):
        loss_d, _ = step.discriminator_loss(b)
        models.update("discriminator", loss_d)
    with phase("rollout end"):
        video = step.rollout(b, grad=True)
    with phase("generator loss (D on the fake clip) + backward"):
        loss_g = step.generator_loss(b, fake=video)
        models.update("generator", loss_g)
    return {"loss_g": loss_g.item(), "loss_d": loss_d.item()}


def synthetic_stage2_step(models: StepModels, cfg: ExperimentConfig, batch: int, seed: int = 0) -> dict:
    """One Stage II step as ``aad1lib/train/stage2.py`` takes it (its objectives; one critic update instead of
    ``stage2.critic_steps``: they are alike), on random clips.

    (a) critic: a no-grad rollout, the clip noised per frame, flow matching, AdamW. (b) generator: the rollout
    with gradients, the no-grad real score (teacher with CFG) and fake score (critic), DMD loss, AdamW.
    """
    gen = torch.Generator().manual_seed(seed)
    s2 = getattr(cfg, "stage2", None)
    ctx, frames = cfg.chunking.context_frames, cfg.latent_frames
    b = _synthetic_batch(cfg, batch, gen, models.text_encoder)
    with torch.no_grad():
        empty = models.text_encoder.encode([""])[0]
    step = Stage2Step(*(models.models[k] for k in ("generator", "critic", "teacher")), cfg.chunk_layout(), ctx,
                      torch.tensor([1.0, 0.0]).to(b["real"]), torch.arange(frames) >= ctx,
                      getattr(s2, "guidance_scale", None) or cfg.sampling.guidance_scale, empty)  # fmt: skip
    b = dict(b, sigma=flow.per_frame_sigma(b["sigma"], frames, ctx))  # [B, F], the context frames clean
    with phase("critic update"):
        loss_c = step.critic_loss(dict(b, clip_noise=b["eps"][0]))
        models.update("critic", loss_c)
    with phase("rollout end"):
        x = step.rollout(b, grad_step=0)
    with phase("DMD scores + generator backward"):
        loss_g, _ = step.generator_loss(dict(b, clip_noise=b["eps"][1]), x=x)
        models.update("generator", loss_g)
    return {"loss_g": loss_g.item(), "loss_c": loss_c.item()}


STEPS = {"stage2": synthetic_stage2_step, "stage3": synthetic_stage3_step}


@dataclass
class CpuCheck:
    """Planner (num_gpus=1, fp32, no EMA) vs the measured synthetic Stage-III step."""

    preset: str
    batch: int
    method: str
    predicted_bytes: float
    measured_bytes: int  # the largest of the repeats
    measurements: list[MemoryMeasurement]
    plan: MemoryPlan

    @property
    def ratio(self) -> float:
        """predicted / measured."""
        return self.predicted_bytes / self.measured_bytes

    def summary(self) -> str:
        mib = 1024**2
        runs = ", ".join(f"{m.delta_bytes / mib:.1f}" for m in self.measurements)
        return (
            f"{self.preset} (batch {self.batch}), {self.method}: measured {self.measured_bytes / mib:.1f} MiB "
            f"(max of runs: {runs}), predicted {self.predicted_bytes / mib:.1f} MiB, "
            f"predicted/measured = {self.ratio:.2f}"
        )


def check_plan_on_cpu(
    cfg: ExperimentConfig,
    batch: int | None = None,
    method: Method = "allocator",
    repeats: int = 1,
    steps: int = 2,
    grad_checkpointing: bool = False,
    threads: int | None = 1,
) -> CpuCheck:
    """Measure ``steps`` synthetic Stage-III steps from scratch (models and optimizers built inside the measured
    call, so parameters, gradients, AdamW state and activations all count), ``repeats`` times; keep the max.

    The first step allocates AdamW's state, the second runs with it in place, as every later step does.
    ``threads``: intra-op threads while measuring (1 by default: on a shared 2-core machine OpenMP's barriers made
    the demo step 10× slower with 2 threads; memory is the same up to per-thread attention scratch).
    """
    batch = batch or cfg.train.batch_size
    torch.manual_seed(cfg.seed)

    def run() -> None:
        models = build_stage3_models(cfg, grad_checkpointing=grad_checkpointing)
        for step in range(steps):
            synthetic_stage3_step(models, cfg, batch, seed=step)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        measurements = [measure_peak_memory(run, method)[0] for _ in range(repeats)]  # allocator: identical repeats
    finally:
        torch.set_num_threads(previous_threads)
    plan = plan_memory(
        cfg,
        "stage3",
        num_gpus=1,
        batch_per_gpu=batch,
        grad_checkpointing=grad_checkpointing,
        mixed_precision="no",
        frozen_disc_backbone=False,
        ema=False,
    )
    return CpuCheck(
        preset=cfg.name,
        batch=batch,
        method=method,
        predicted_bytes=plan.per_gpu_bytes,
        measured_bytes=max(m.delta_bytes for m in measurements),
        measurements=measurements,
        plan=plan,
    )


# ---- 2-process FSDP2 -----------------------------------------------------------------------------------------
def held_bytes(*modules: torch.nn.Module, optimizers: tuple[torch.optim.Optimizer, ...] = ()) -> int:
    """Bytes of the distinct storages that ``modules``' parameters, buffers and gradients and ``optimizers``'
    state hold on this rank (a sharded parameter's local shard, not the full tensor)."""
    seen: dict[int, int] = {}

    def add(tensor) -> None:
        if not isinstance(tensor, torch.Tensor):
            return
        tensor = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()

    for module in modules:
        for p in module.parameters():
            add(p)
            add(p.grad)
        for buffer in module.buffers():
            add(buffer)
    for optimizer in optimizers:
        for state in optimizer.state.values():
            for value in state.values():
                add(value)
    return sum(seen.values())


def place_like_the_trainer(loop, cfg: ExperimentConfig, stage: str) -> StepModels:
    """The stage's models placed as its trainer places them (``TrainLoop.add_model`` / ``add_frozen``), from
    random weights: trained models sharded by block on the CPU and loaded from rank 0, the teacher and the text
    encoder in the compute dtype and sharded (when they have shard units), the codec in fp32 replicated."""
    import copy

    text_encoder = loop.add_frozen(build_text(cfg, loop.compute_dtype))
    codec = loop.add_frozen(build_latent_codec(cfg), dtype=torch.float32)  # noqa: F841 (held, as in the trainer)
    teacher = CausalWanTransformer3DModel(**cfg.wan_kwargs())  # fp32 on the CPU, as load_run_model gives it
    if stage == "stage3":
        disc = build_discriminator(cfg, teacher)
        del teacher
        models = dict(
            generator=loop.add_model("generator", CausalWanTransformer3DModel(**cfg.wan_kwargs()), _adamw),
            discriminator=loop.add_model("discriminator", disc, _adamw),
        )
    else:
        critic = copy.deepcopy(teacher).requires_grad_(True)
        teacher = loop.add_frozen(teacher)
        models = dict(
            generator=loop.add_model("generator", CausalWanTransformer3DModel(**cfg.wan_kwargs()), _adamw),
            critic=loop.add_model("critic", critic, _adamw),
            teacher=teacher,
        )
    return StepModels(models, text_encoder, loop.optimizers, optimize=loop.optimize)


def _fsdp_worker(args) -> None:
    """One rank of :func:`check_fsdp_plan_on_cpu` (run by ``torch.distributed.run``)."""
    import json
    from pathlib import Path

    torch.set_num_threads(1)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    overrides = {
        "train.parallel": "fsdp2",
        "train.mixed_precision": args.mixed_precision,
        "train.gradient_checkpointing": args.grad_checkpointing,
        "train.batch_size": args.batch_per_rank * world,
        "train.tracker": "none",
        "train.ema_decay": None,  # not supported with FSDP2
    }
    cfg = load_preset(args.preset, overrides)
    torch.manual_seed(cfg.seed)
    loop = TrainLoop(args.stage, cfg.name, cfg.to_dict(), cfg.train, cfg.seed, run_name="memory",
                     runs_root=Path(args.runs_root))  # fmt: skip
    step = STEPS[args.stage]
    if args.warmup:  # one step on throwaway models: one-time caches (oneDNN, thread scratch) are not the plan's
        models = place_like_the_trainer(loop, cfg, args.stage)
        with loop.accelerator.autocast():
            step(models, cfg, args.batch_per_rank, seed=-1 - loop.accelerator.process_index)
        del models
        for registry in (loop.models, loop.optimizers, loop.schedulers, loop.emas):
            registry.clear()
    torch.manual_seed(cfg.seed)
    models = place_like_the_trainer(loop, cfg, args.stage)
    return_freed_memory_to_os()
    resident = {name: held_bytes(m) for name, m in models.models.items()}
    resident["text encoder"] = held_bytes(models.text_encoder)
    start_bytes = held_bytes(*models.models.values(), models.text_encoder)

    def run() -> None:
        for i in range(args.steps):
            with loop.accelerator.autocast():  # as TrainLoop.fit runs a step
                step(models, cfg, args.batch_per_rank, seed=1000 * loop.accelerator.process_index + i)

    measurement, _ = measure_peak_memory(run, args.method)
    end = {name: held_bytes(m, optimizers=tuple(o for k, o in loop.optimizers.items() if k == name))
           for name, m in models.models.items()}  # fmt: skip
    record = dict(
        rank=loop.accelerator.process_index,
        world=world,
        start_bytes=start_bytes,
        peak_delta_bytes=measurement.delta_bytes,
        peak_bytes=start_bytes + measurement.delta_bytes,
        phase_peaks={k: start_bytes + v - measurement.baseline_bytes for k, v in measurement.phase_peaks.items()},
        method=args.method,
        samples=measurement.samples,
        resident_at_start=resident,
        held_at_end=end,  # parameters + gradients + optimizer state after the steps
        seconds=measurement.seconds,
    )
    records = [None] * world
    torch.distributed.all_gather_object(records, record)
    if loop.is_main:
        Path(args.out).write_text(json.dumps(records, indent=2))
    loop.accelerator.wait_for_everyone()


@dataclass
class FsdpCheck:
    """Planner (``num_gpus=nproc``) vs each rank's measured peak of the synthetic step under FSDP2."""

    preset: str
    stage: str
    batch_per_rank: int
    ranks: list[dict]  # what each rank measured (bytes)
    plan: MemoryPlan

    @property
    def measured_bytes(self) -> int:
        return max(r["peak_bytes"] for r in self.ranks)

    @property
    def ratio(self) -> float:
        """plan / measured (the largest rank)."""
        return self.plan.per_gpu_bytes / self.measured_bytes

    def phase_ratios(self) -> dict[str, float]:
        """Per phase: planned total / the largest rank's measured peak in that phase."""
        return {
            name: planned / max(r["phase_peaks"][name] for r in self.ranks)
            for name, planned in self.plan.phase_bytes.items()
            if all(name in r["phase_peaks"] for r in self.ranks)
        }

    def summary(self) -> str:
        mib = 1024**2
        ranks = ", ".join(f"rank {r['rank']} {r['peak_bytes'] / mib:.1f}" for r in self.ranks)
        phases = ", ".join(f"{k} {v:.2f}" for k, v in self.phase_ratios().items())
        return (
            f"{self.preset} {self.stage} ({len(self.ranks)} processes, FSDP2, {self.batch_per_rank} clip(s) per rank, "
            f"{self.plan.compute_dtype}, checkpointing {'on' if self.plan.grad_checkpointing else 'off'}): measured "
            f"{ranks} MiB; planned {self.plan.per_gpu_bytes / mib:.1f} MiB ({self.plan.peak_phase}); "
            f"plan/measured = {self.ratio:.3f}; per phase: {phases}"
        )


def check_fsdp_plan_on_cpu(
    preset: str,
    stage: str = "stage3",
    batch_per_rank: int = 2,
    nproc: int = 2,
    steps: int = 2,
    grad_checkpointing: bool = False,
    mixed_precision: str = "no",
    method: Method = "malloc",
    timeout: float = 600,
) -> FsdpCheck:
    """Run the synthetic ``stage`` step (``stage2`` / ``stage3``) in ``nproc`` gloo processes under FSDP2, placed
    as the trainers place models, and compare each rank's measured peak with ``plan_memory(..., num_gpus=nproc)``.
    Past ``timeout`` seconds every process is killed (a collective that never completes) and it raises."""
    import json
    import sys
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranks.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(_free_port()), "-m", "aad1lib.scale.memory_measure", "--preset", preset,
               "--stage", stage, "--batch-per-rank", str(batch_per_rank), "--steps", str(steps),
               "--mixed-precision", mixed_precision, "--method", method, "--runs-root", tmp,
               "--out", str(out)]  # fmt: skip
        if grad_checkpointing:
            cmd.append("--grad-checkpointing")
        # the package imports this module before runpy runs it as __main__: harmless, silenced
        quiet = "ignore:'aad1lib.scale.memory_measure' found in sys.modules:RuntimeWarning"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS=quiet)
        returncode, stderr = run_process_group(cmd, timeout, env=env)
        if returncode != 0 or not out.exists():
            raise RuntimeError(f"{' '.join(cmd)} exited {returncode}\n{stderr[-4000:]}")
        ranks = json.loads(out.read_text())
    cfg = load_preset(preset)
    plan = plan_memory(cfg, stage, num_gpus=nproc, batch_per_gpu=batch_per_rank, grad_checkpointing=grad_checkpointing,
                       mixed_precision=mixed_precision, ema=False)  # fmt: skip
    return FsdpCheck(preset, stage, batch_per_rank, ranks, plan)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    """Entry point of one rank (``python -m torch.distributed.run ... -m aad1lib.scale.memory_measure``)."""
    import argparse

    parser = argparse.ArgumentParser(description="one rank of check_fsdp_plan_on_cpu")
    parser.add_argument("--preset", required=True)
    parser.add_argument("--stage", choices=sorted(STEPS), default="stage3")
    parser.add_argument("--batch-per-rank", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16"])
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false", help="measure from the first step")
    parser.add_argument("--method", default="malloc", choices=["malloc", "allocator", "rss"])
    parser.add_argument("--runs-root", required=True)
    parser.add_argument("--out", required=True)
    _fsdp_worker(parser.parse_args(argv))


if __name__ == "__main__":
    main()
