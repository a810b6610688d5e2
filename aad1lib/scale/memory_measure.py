"""Measure the memory of a callable on this machine (CPU), to check :mod:`.memory_planner` against reality.

Three measurements, from the most to the least exact:

- ``measure_peak_memory(fn, method="allocator")``: live tensor bytes, from ``torch.profiler``'s memory events
  (every allocation and free of PyTorch's CPU allocator, in time order; the running sum's maximum). This is the
  CPU analogue of ``torch.cuda.max_memory_allocated()`` and what the planner predicts; it is deterministic,
  so one run is enough. Tensors allocated before ``fn`` and freed inside it count negatively, as they should.
- ``measure_peak_memory(fn, method="rss")``: the process's resident set size sampled by a background thread
  every ``interval_s`` (default 1 ms) from ``/proc/self/statm``, peak minus the value before ``fn``. Honest
  about everything (Python objects, oneDNN scratch, allocator fragmentation) but noisy: glibc keeps freed
  heap memory, so we first lower its mmap threshold (large tensors then go back to the OS when freed) and
  trim the heap before the baseline; sampling can miss a peak shorter than the interval. Demo Stage-III step:
  with glibc's default (dynamic) threshold RSS read 1.8× the allocator's peak; with 64 KiB, 1.06× (one step)
  to 1.33× (two steps: small freed blocks stay in the heap). Tiny models read ~15 MiB of fixed overhead.
- ``saved_tensor_bytes(fn)``: bytes of the distinct storages autograd saves for backward while ``fn`` runs
  (``saved_tensors_hooks``), parameters excluded: checks the per-block activation formula term by term.

:func:`check_plan_on_cpu` runs a synthetic Stage-III-like step (Self-Forcing rollout of the causal generator
with gradients through each chunk, the video discriminator on the whole clip, both AdamW updates) built from
:class:`CausalWanTransformer3DModel` and :meth:`VideoDiscriminator.from_teacher` with a preset's sizes, and
compares the measured peak with ``plan_memory(cfg, "stage3", num_gpus=1, fp32, no checkpointing)``.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..config import ExperimentConfig
from .memory_planner import MemoryPlan, plan_memory, token_geometry

Method = Literal["allocator", "rss"]
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


class RssSampler:
    """Background thread recording the peak RSS every ``interval_s`` seconds (``with RssSampler() as s: ...``)."""

    def __init__(self, interval_s: float = 0.001):
        self.interval_s = interval_s
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss_bytes())
            self.samples += 1
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak = current_rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss_bytes())


@dataclass
class MemoryMeasurement:
    method: str
    baseline_bytes: int  # before fn (allocator: 0 = whatever was live before)
    peak_bytes: int  # the highest reading while fn ran
    seconds: float
    samples: int = 0  # RSS readings taken (rss method)

    @property
    def delta_bytes(self) -> int:
        """Peak minus baseline: the memory fn needed on top of what existed before."""
        return self.peak_bytes - self.baseline_bytes


def _allocator_peak(fn: Callable[[], Any]) -> tuple[MemoryMeasurement, Any]:
    from torch._C._autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    CPU = DeviceType.CPU

    tic = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    seconds = time.perf_counter() - tic
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == CPU]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return MemoryMeasurement("allocator", 0, peak, seconds), result


def _rss_peak(fn: Callable[[], Any], interval_s: float) -> tuple[MemoryMeasurement, Any]:
    return_freed_memory_to_os()
    baseline = current_rss_bytes()
    tic = time.perf_counter()
    with RssSampler(interval_s) as sampler:
        result = fn()
    return MemoryMeasurement("rss", baseline, sampler.peak, time.perf_counter() - tic, sampler.samples), result


def measure_peak_memory(
    fn: Callable[[], Any], method: Method = "allocator", interval_s: float = 0.001
) -> tuple[MemoryMeasurement, Any]:
    """Run ``fn()`` in this process and return (its peak memory over the baseline, its result)."""
    if method == "allocator":
        return _allocator_peak(fn)
    if method == "rss":
        return _rss_peak(fn, interval_s)
    raise ValueError(f"unknown method {method!r}; allowed: 'allocator', 'rss'")


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


# ---- the synthetic Stage-III-like step ---------------------------------------------------------------------
@dataclass
class Stage3Models:
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_generator: torch.optim.Optimizer
    opt_discriminator: torch.optim.Optimizer


def build_stage3_models(
    cfg: ExperimentConfig, frozen_disc_backbone: bool = False, grad_checkpointing: bool = False
) -> Stage3Models:
    """Causal generator + discriminator initialised from it (the preset's sizes, random weights, fp32)."""
    from ..models.causal_wan import CausalWanTransformer3DModel
    from ..models.discriminator import VideoDiscriminator

    stage3 = getattr(cfg, "stage3", None)
    generator = CausalWanTransformer3DModel(**cfg.model.wan_kwargs()).train()
    discriminator = VideoDiscriminator.from_teacher(
        generator,
        tap_fractions=tuple(getattr(stage3, "disc_taps", (0.5, 0.75, 1.0))),
        num_queries=getattr(stage3, "disc_queries", 4),
        train_backbone=not frozen_disc_backbone,
    )
    if grad_checkpointing:
        generator.enable_gradient_checkpointing()
        discriminator.backbone.enable_gradient_checkpointing()
    trainable = [p for p in discriminator.parameters() if p.requires_grad]
    return Stage3Models(
        generator,
        discriminator,
        torch.optim.AdamW(generator.parameters(), lr=1e-5, betas=(0.0, 0.99)),
        torch.optim.AdamW(trainable, lr=1e-5, betas=(0.0, 0.99)),
    )


def synthetic_stage3_step(models: Stage3Models, cfg: ExperimentConfig, batch: int, seed: int = 0) -> dict:
    """One generator update and one discriminator update, as Stage III does them.

    Generator: Self-Forcing rollout, one step per chunk, gradients through every chunk's forward (detached
    cache), the clip noised and scored by the discriminator (weights frozen for this update), logistic loss,
    AdamW. Discriminator: real and fake clips noised to the same level, one backward through both, AdamW.
    """
    from .. import flow
    from ..losses import discriminator_loss, generator_adversarial_loss
    from ..rollout import stream_generate

    gen = torch.Generator().manual_seed(seed)
    geo = token_geometry(cfg)
    m = cfg.model
    _, p_h, p_w = m.patch_size
    spatial = 8 if cfg.codec.kind == "wan_vae" else 1
    h, w = cfg.data.height // spatial, cfg.data.width // spatial
    ctx = cfg.chunking.context_frames
    real = torch.randn((batch, m.in_channels, geo.latent_frames, h, w), generator=gen)
    text = torch.randn((batch, cfg.text.max_length, m.text_dim), generator=gen)
    noise = torch.randn((batch, m.in_channels, geo.latent_frames - ctx, h, w), generator=gen)
    sigma = torch.rand((batch,), generator=gen)
    timestep = flow.sigma_to_timestep(sigma)

    def noised(x):
        return flow.add_noise(x, torch.randn(x.shape, generator=gen), sigma)

    disc, trainable = models.discriminator, [p for p in models.discriminator.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    video = stream_generate(
        models.generator,
        cfg.chunk_layout(),
        text,
        noise,
        torch.tensor([1.0, 0.0]),
        context=real[:, :, :ctx],
        grad_step=0,
    ).video
    loss_g = generator_adversarial_loss(disc(noised(video), timestep, text))
    loss_g.backward()
    models.opt_generator.step()
    models.opt_generator.zero_grad(set_to_none=True)
    for p in trainable:
        p.requires_grad_(True)

    fake = video.detach()
    del video
    loss_d = discriminator_loss(disc(noised(real), timestep, text), disc(noised(fake), timestep, text))
    loss_d.backward()
    models.opt_discriminator.step()
    models.opt_discriminator.zero_grad(set_to_none=True)
    return {"loss_g": loss_g.item(), "loss_d": loss_d.item()}


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
