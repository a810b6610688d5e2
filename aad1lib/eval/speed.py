"""Speed of 1 NFE vs 4 NFE vs the teacher: latency, frames/s, peak memory and growth with video length.

In ONE process on one machine, every model generates the same number of chunks from the same inputs:
- a causal student streams chunk by chunk (:func:`aad1lib.rollout.stream_generate`): per chunk its few
  denoising passes + one pass writing the finished chunk into the KV cache. 1 NFE = 2 passes per chunk,
  4 NFE = 5, so 5 / 2 = 2.5× is the pass-count limit of the 4-NFE / 1-NFE latency ratio (the paper:
  14.33 vs 5.71 FPS ≈ 2.51×). The measured ratio sits below the limit where fixed per-chunk costs
  (cache bookkeeping, text cross-attention, Python) weigh in.
- the bidirectional teacher samples the whole clip at once with its full step count (× 2 with CFG):
  nothing is shown before the whole clip is done, so its first-chunk latency is the clip's latency.

Lengths are multiples of the training length (1×, 4×, 16×). A causal model's cost per chunk stays flat
once its sliding window is full; the teacher's clip grows quadratically in attention. Rope tables bound
absolute frames (``rope_max_seq_len``): a length past them is reported as skipped, not run.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` above the level at start; on CPU the peak resident set
above the level at start, sampled from ``/proc/self/statm`` in a thread by :mod:`aad1lib.scale.memory_measure`'s
sampler (after lowering glibc's mmap threshold and trimming the heap, so memory freed by an earlier run neither
stays resident nor hides growth). Timings are medians of ``repeats`` runs after one warm-up
run (which is the one whose memory is measured). Nothing here asserts a timing.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..builders import load_run_model
from ..chunking import ChunkLayout
from ..config import ExperimentConfig
from ..flow import causal_sigmas
from ..rollout import stream_generate
from ..run_folder import RunFolder, atomic_write_json
from ..sampling import sample_i2v
from ..scale.memory_measure import RssSampler, current_rss_bytes, return_freed_memory_to_os
from .passes import PassCounter

PAPER_FPS = {"AAD-1 (1 NFE)": 14.33, "4-step baselines": 5.71}  # paper, Table (speed); 14.33 / 5.71 = 2.51×
FAST_ATTENTION = ("_flash_3", "flash", "_native_flash", "_native_cudnn", "_native_efficient", "native")


@dataclass
class SpeedRow:
    name: str
    kind: str  # "causal" | "teacher"
    dtype: str
    attention: str
    length: int  # multiple of the training length
    frames: int  # generated latent frames
    chunks: int
    nfe_per_chunk: int | None  # causal: denoising steps per chunk
    passes_per_chunk: int | None  # causal: NFE + 1 cache write
    passes_per_clip: int | None  # all passes (teacher: steps × 2 with CFG; causal: + the context write)
    first_chunk_ms: float | None = None  # latency to the first chunk (teacher: the whole clip)
    per_chunk_ms: float | None = None  # total / chunks
    fps: float | None = None  # generated latent frames per second (batch included)
    ratio_to_student: float | None = None  # per-chunk latency / the 1-NFE student's, same length and dtype
    pass_ratio_to_student: float | None = None  # passes per chunk / the student's (causal): the ratio's limit
    growth: float | None = None  # per-chunk latency / this model's at the shortest length
    peak_memory_mb: float | None = None
    kv_cache_mb: float | None = None
    image_encoder_ms: float | None = None  # Wan I2V: the CLIP image encoder, once per clip (inside the timings)
    skipped: str | None = None  # why this row was not run


class PeakMemory:
    """Peak memory above the level at entry (MB): CUDA allocator peak, or CPU RSS sampled in a thread."""

    def __init__(self, device: torch.device, interval_s: float = 0.001):
        self.device, self.interval_s = device, interval_s
        self.peak_mb: float | None = None
        self.method = "cuda max_memory_allocated" if device.type == "cuda" else "RSS /proc/self/statm, sampled"

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        return_freed_memory_to_os()  # RSS follows frees of large tensors (memory_measure: 1.8x -> 1.06x)
        try:
            self._base = current_rss_bytes()
        except OSError:  # no /proc (not Linux): no honest delta, report none
            self._sampler = None
            return self
        self._sampler = RssSampler(self.interval_s).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            return
        if self._sampler is not None:
            self._sampler.__exit__(*exc)
            self.peak_mb = (self._sampler.peak - self._base) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest_attention_backend(model, device: torch.device, dtype: torch.dtype) -> str:
    """The first of :data:`FAST_ATTENTION` that this machine runs (probed on a small attention call)."""
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    heads = model.config.num_attention_heads
    q = torch.randn(1, 64, heads, model.config.attention_head_dim, device=device, dtype=dtype)
    for name in FAST_ATTENTION:
        try:
            model.set_attention_backend(name)
            dispatch_attention_fn(q, q, q, backend=AttentionBackendName(name))
            return name
        except Exception:  # noqa: BLE001 - a missing kernel/library shows up as any error; try the next
            continue
    return "native"


def speed_benchmark(
    cfg: ExperimentConfig,
    models: dict[str, tuple],
    lengths: tuple[int, ...] = (1, 4, 16),
    batch: int = 1,
    repeats: int = 3,
    dtypes: tuple[str, ...] | None = None,
    reference: str | None = None,
    teacher_max_length: int | None = None,
    seed: int = 0,
    image_encoder=None,
) -> dict:
    """Benchmark ``{name: (model, kind, sigmas_or_steps)}`` at each length (× the training length).

    ``kind``: ``"causal"`` with a sigma schedule ending at 0 or a step count, or ``"teacher"`` with its sampler
    steps (CFG from ``cfg.sampling.guidance_scale``). ``dtypes``: default ``("float32",)`` on CPU and
    ``("float32", "bfloat16")`` on CUDA; bf16 runs use the fastest attention backend found
    (streamed chunks and the teacher's full clip need no mask, so flash kernels apply). Models are cast in
    place and end in the last dtype. ``reference``: the 1-NFE student (default: the first causal model with
    1 step). Wan I2V models (more input than output channels) get a condition for the clip; with
    ``image_encoder`` (:class:`~aad1lib.models.i2v.CLIPImageEncoder`) the image tokens are encoded once per clip
    inside the timed generation (``image_encoder_ms`` says its share). Returns a JSON-ready dict;
    :func:`format_speed_table` renders it.
    """
    if not models:
        raise ValueError("speed_benchmark needs at least one model")
    ctx, per_chunk = cfg.chunking.context_frames, cfg.chunking.frames_per_chunk
    layout, s = cfg.chunk_layout(), cfg.sampling
    train_frames = cfg.latent_frames - ctx
    first_model = next(iter(models.values()))[0]
    device = next(first_model.parameters()).device
    dtypes = dtypes or (("float32", "bfloat16") if device.type == "cuda" else ("float32",))
    plans = {}
    for name, (_model, kind, steps) in models.items():
        if kind == "causal":
            plans[name] = causal_sigmas(steps, s.shift)
        elif kind == "teacher":
            if not isinstance(steps, int):
                raise ValueError(f"{name}: a teacher takes its sampler step count, got {steps!r}")
            plans[name] = steps
        else:
            raise ValueError(f"{name}: kind must be 'causal' or 'teacher', got {kind!r}")
    if reference is None:
        reference = next((n for n, (_, k, _) in models.items() if k == "causal" and len(plans[n]) == 2), None)

    setup = _Setup(cfg, layout, train_frames, ctx, per_chunk, device, batch, seed, teacher_max_length, image_encoder)
    rows: list[SpeedRow] = []
    memory_method = None
    try:
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for index, (name, (model, kind, _)) in enumerate(models.items()):
                if next(model.parameters()).dtype != dtype:
                    model.to(dtype)
                model.eval()
                attention = "native"
                if device.type == "cuda" and dtype != torch.float32:
                    attention = fastest_attention_backend(model, device, dtype)
                candidate = _Candidate(name, model, kind, plans[name], dtype, attention)
                if index == 0:  # one discarded run: one-time process costs (thread pools, kernels) hit no row
                    _measure(setup, candidate, lengths[0], repeats=1)
                for length in lengths:
                    row = _measure(setup, candidate, length, repeats)
                    memory_method = row.pop("memory_method", None) or memory_method
                    rows.append(SpeedRow(**row))
                if device.type == "cuda":
                    model.reset_attention_backend()
    finally:
        _restore_global_attention_backend()

    # ratios to the 1-NFE student and growth with length
    by_key = {(r.name, r.dtype, r.length): r for r in rows}
    for r in rows:
        if r.per_chunk_ms is None:
            continue
        ref = by_key.get((reference, r.dtype, r.length))
        if ref is not None and ref.per_chunk_ms:
            r.ratio_to_student = r.per_chunk_ms / ref.per_chunk_ms
            if r.kind == "causal":
                r.pass_ratio_to_student = r.passes_per_chunk / ref.passes_per_chunk
        base = next((by_key[(r.name, r.dtype, n)] for n in lengths if by_key[(r.name, r.dtype, n)].per_chunk_ms), None)
        r.growth = r.per_chunk_ms / base.per_chunk_ms
    return dict(
        preset=cfg.name, device=str(device), device_name=_device_name(device), torch=torch.__version__,
        threads=torch.get_num_threads(), batch=batch, repeats=repeats, lengths=list(lengths), reference=reference,
        training_frames=train_frames, frames_per_chunk=per_chunk, training_chunks=train_frames // per_chunk,
        tokens_per_frame=_tokens_per_frame(cfg), teacher_steps=s.teacher_steps, guidance_scale=s.guidance_scale,
        memory_method=memory_method, paper_fps=PAPER_FPS, rows=[asdict(r) for r in rows],
    )  # fmt: skip


@dataclass(frozen=True)
class _Setup:
    """What every measurement of one benchmark shares (from the preset and the call)."""

    cfg: ExperimentConfig
    layout: ChunkLayout
    train_frames: int  # generated latent frames of a training clip
    ctx: int  # clean context frames
    per_chunk: int  # latent frames per chunk
    device: torch.device
    batch: int
    seed: int
    teacher_max_length: int | None
    image_encoder: object | None  # CLIPImageEncoder of a Wan I2V checkpoint, timed inside each clip


@dataclass(frozen=True)
class _Candidate:
    """One model as measured: its name, kind (causal | teacher), plan (sigmas | sampler steps), dtype, backend."""

    name: str
    model: torch.nn.Module
    kind: str
    plan: torch.Tensor | int
    dtype: torch.dtype
    attention: str


def _measure(setup: _Setup, candidate: _Candidate, length: int, repeats: int) -> dict:
    """One row: ``candidate`` generating ``length`` × the training clip, median of ``repeats`` timed runs."""
    cfg, layout, ctx, per_chunk, device, batch = (setup.cfg, setup.layout, setup.ctx, setup.per_chunk, setup.device,
                                                  setup.batch)  # fmt: skip
    name, model, kind, plan, dtype, attention = (candidate.name, candidate.model, candidate.kind, candidate.plan,
                                                 candidate.dtype, candidate.attention)  # fmt: skip
    teacher_max_length, seed, image_encoder = setup.teacher_max_length, setup.seed, setup.image_encoder
    frames = setup.train_frames * length
    chunks = frames // per_chunk
    steps_per_chunk = len(plan) - 1 if kind == "causal" else None
    cfg_factor = 2 if cfg.sampling.guidance_scale != 1.0 else 1
    row = dict(name=name, kind=kind, dtype=str(dtype).removeprefix("torch."), attention=attention, length=length,
               frames=frames, chunks=chunks, nfe_per_chunk=steps_per_chunk,
               passes_per_chunk=steps_per_chunk + 1 if kind == "causal" else None,
               passes_per_clip=None)  # fmt: skip
    max_frames = model.config.rope_max_seq_len
    if ctx + frames > max_frames:
        row["skipped"] = f"{ctx + frames} frames > rope_max_seq_len={max_frames} (absolute positions)"
        return row
    if kind == "teacher" and teacher_max_length is not None and length > teacher_max_length:
        row["skipped"] = f"teacher_max_length={teacher_max_length}"
        return row

    # inputs (same for every model at this length)
    gen = torch.Generator().manual_seed(seed)
    channels, (height, width) = model.config.out_channels or model.config.in_channels, _latent_hw(cfg)
    noise = torch.randn(batch, channels, frames, height, width, generator=gen).to(device, dtype)
    context = torch.randn(batch, channels, ctx, height, width, generator=gen).to(device, dtype) if ctx else None
    text = torch.randn(batch, cfg.text.max_length, model.config.text_dim, generator=gen).to(device, dtype)
    empty = torch.randn(text.shape, generator=gen).to(device, dtype)
    condition, first_frame = {}, None
    if model.config.in_channels > channels:  # Wan I2V: [mask, first-frame latents] for the whole clip
        cond_shape = (batch, model.config.in_channels - channels, ctx + frames, height, width)
        condition["condition"] = torch.randn(cond_shape, generator=gen).to(device, dtype)
        if model.config.image_dim:
            first_frame = torch.rand(batch, 3, cfg.data.height, cfg.data.width, generator=gen) * 2 - 1
    if cfg.model.residual_to_first_frame:  # the first-frame residual parameterisation shifts by the context frame
        condition["anchor"] = context
    encoder_s: list[float] = []

    def run() -> tuple[float, float, float | None]:
        """(first-chunk s, total s, KV cache MB) of one generation."""
        stamps: list[float] = []
        _sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            if first_frame is not None:  # the image tokens: once per clip, part of the clip's latency
                if image_encoder is not None:
                    condition["encoder_hidden_states_image"] = image_encoder.encode(first_frame).to(device, dtype)
                else:  # no encoder given: stand-in tokens of the checkpoint's width (not timed as an encoder)
                    condition["encoder_hidden_states_image"] = torch.randn(batch, 257, model.config.image_dim,
                                                                           generator=gen).to(device, dtype)  # fmt: skip
                _sync(device)
                encoder_s.append(time.perf_counter() - start)
            if kind == "causal":

                def on_chunk(_chunk, _x0, _cache):
                    _sync(device)  # a streamed chunk counts once it is ready
                    stamps.append(time.perf_counter())

                out = stream_generate(model, layout, text, noise, plan.to(device, dtype), context=context,
                                      chunk_callback=on_chunk, condition=condition)  # fmt: skip
                return stamps[0] - start, stamps[-1] - start, out.kv_cache.nbytes() / 2**20
            sample_i2v(model, context, text, ctx + frames, plan, cfg.sampling.shift, uncond_text=empty,
                       guidance_scale=cfg.sampling.guidance_scale, sampler=cfg.sampling.teacher_sampler,
                       noise=noise, condition=condition)  # fmt: skip
            _sync(device)
            total = time.perf_counter() - start
            return total, total, None

    try:
        with PeakMemory(device) as memory, PassCounter(model, batch) as count:  # warm-up run: memory + passes
            run()
        timings = [run() for _ in range(repeats)]
    except torch.cuda.OutOfMemoryError:
        row["skipped"] = "out of memory"
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return row
    first = statistics.median(t[0] for t in timings)
    total = statistics.median(t[1] for t in timings)
    passes = count.nfe + count.cache_writes
    if kind == "causal":
        expected = (1 if ctx else 0) + chunks * (steps_per_chunk + 1)
        if round(passes) != expected:
            raise RuntimeError(f"{name}: counted {passes} passes, expected {expected}")
    else:
        expected = plan * cfg_factor
        if round(passes) != expected:
            raise RuntimeError(f"{name}: counted {passes} passes, expected {expected}")
    row.update(
        passes_per_clip=int(round(passes)), first_chunk_ms=1e3 * first, per_chunk_ms=1e3 * total / chunks,
        fps=frames * batch / total, peak_memory_mb=memory.peak_mb, kv_cache_mb=timings[-1][2],
        memory_method=memory.method,
        image_encoder_ms=1e3 * statistics.median(encoder_s[1:]) if image_encoder is not None and encoder_s else None,
    )  # fmt: skip
    return row


def _latent_hw(cfg: ExperimentConfig) -> tuple[int, int]:
    return cfg.data.height // cfg.spatial_factor, cfg.data.width // cfg.spatial_factor


def _tokens_per_frame(cfg: ExperimentConfig) -> int:
    height, width = _latent_hw(cfg)
    _, p_h, p_w = cfg.model.patch_size
    return (height // p_h) * (width // p_w)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads)"


def _restore_global_attention_backend() -> None:
    """diffusers' ``set_attention_backend`` also sets a process-wide default; put back SDPA (docs/design.md §4)."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    _AttentionBackendRegistry.set_active_backend(AttentionBackendName.NATIVE)


# ---- output --------------------------------------------------------------------------------------------
def format_speed_table(result: dict) -> str:
    """Markdown table of :func:`speed_benchmark`'s result, with the pass-count limit next to the measured ratio."""

    def num(value, fmt):
        return "–" if value is None else format(value, fmt)

    header = (
        f"{result['device_name']}, torch {result['torch']}, batch {result['batch']}, median of {result['repeats']} "
        f"after a warm-up; {result['training_chunks']} chunks × {result['frames_per_chunk']} latent frames = 1× "
        f"(training length), {result['tokens_per_frame']} tokens/frame; teacher: {result['teacher_steps']} steps"
        f"{' × CFG' if result['guidance_scale'] != 1.0 else ''}; memory: {result['memory_method']}"
    )
    lines = [
        header,
        "",
        "| model | dtype / attention | length | chunks | NFE / chunk | passes / chunk | passes / clip "
        "| first chunk (ms) | per chunk (ms) | frames/s | × 1-NFE (measured) | × 1-NFE (pass limit) | growth vs 1× "
        "| peak mem (MB) | KV cache (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["skipped"]:
            lines.append(f"| {r['name']} | {r['dtype']} / {r['attention']} | {r['length']}× | {r['chunks']} | "
                         f"skipped: {r['skipped']} |" + " |" * 10)  # fmt: skip
            continue
        lines.append(
            f"| {r['name']} | {r['dtype']} / {r['attention']} | {r['length']}× | {r['chunks']} | "
            f"{num(r['nfe_per_chunk'], 'd')} | {num(r['passes_per_chunk'], 'd')} | {r['passes_per_clip']} | "
            f"{r['first_chunk_ms']:.1f} | {r['per_chunk_ms']:.2f} | {r['fps']:.1f} | "
            f"{num(r['ratio_to_student'], '.2f')} | {num(r['pass_ratio_to_student'], '.2f')} | "
            f"{num(r['growth'], '.2f')} | {num(r['peak_memory_mb'], '.1f')} | {num(r['kv_cache_mb'], '.2f')} |"
        )
    lines += ["", *ratio_lines(result)]
    return "\n".join(lines)


def ratio_lines(result: dict) -> list[str]:
    """One line per causal multi-step model: measured latency ratio to the 1-NFE student vs the pass limit."""
    out = []
    paper = PAPER_FPS["AAD-1 (1 NFE)"] / PAPER_FPS["4-step baselines"]
    for r in result["rows"]:
        multi_step = r["pass_ratio_to_student"] is not None and r["pass_ratio_to_student"] > 1
        if r["kind"] == "causal" and multi_step and r["ratio_to_student"] is not None:
            out.append(
                f"- {r['name']} / {result['reference']} ({r['dtype']}, {r['length']}×): measured "
                f"{r['ratio_to_student']:.2f}×, pass-count limit {r['passes_per_chunk']}/"
                f"{r['passes_per_chunk'] / r['pass_ratio_to_student']:.0f} = {r['pass_ratio_to_student']:.2f}× "
                f"(paper: {PAPER_FPS['AAD-1 (1 NFE)']} vs {PAPER_FPS['4-step baselines']} FPS = {paper:.2f}×)"
            )
    return out


def write_speed_json(result: dict, path: str | Path, overwrite: bool = False) -> Path:
    """Write the benchmark as JSON (e.g. ``<run>/speed.json``); an existing file is replaced only with ``overwrite``."""
    path = Path(path)
    atomic_write_json(path, result, overwrite)
    return path


def models_for_runs(
    results: dict[str, dict],
    device: str | torch.device = "cpu",
    four_step_proxy: bool = True,
    one_per_step_count: bool = True,
) -> dict[str, tuple]:
    """``{method: (model, kind, sigmas_or_steps)}`` for :func:`speed_benchmark` from :func:`evaluate_runs`'s results.

    Timing depends on the architecture and the passes, not on the weights, so with ``one_per_step_count`` only
    the last causal run of each step count is timed (e.g. Stage III, not also Stage II). Without a multi-step
    causal run, ``four_step_proxy`` adds the 1-step student's weights run with 4 steps per chunk: the latency
    of a 4-NFE model of the same architecture.
    """
    summaries = list(results.items())
    if one_per_step_count:
        last = {}
        for run_name, s in summaries:
            last[("teacher", run_name) if s["kind"] == "teacher" else ("causal", len(s["sigmas"]))] = run_name
        summaries = [(n, s) for n, s in summaries if n in last.values()]
    models = {}
    for run_name, summary in summaries:
        model = load_run_model(RunFolder.open(summary["run_path"]), device).eval()
        name = summary["method"] if summary["method"] not in models else f"{summary['method']} [{run_name}]"
        if summary["kind"] == "teacher":
            models[name] = (model, "teacher", summary["teacher_steps"])
        else:
            models[name] = (model, "causal", torch.tensor(summary["sigmas"]))
    causal = {n: m for n, m in models.items() if m[1] == "causal"}
    if four_step_proxy and causal and not any(len(m[2]) > 2 for m in causal.values()):
        model = next(m[0] for m in causal.values() if len(m[2]) == 2)
        models["4-NFE causal (timing proxy)"] = (model, "causal", 4)
    return models


def load_speed_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
