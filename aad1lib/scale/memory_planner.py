"""Per-GPU memory plan of an AAD-1 training stage under FSDP2, before launching it.

``plan_memory(cfg, "stage3", num_gpus=64)`` returns a :class:`MemoryPlan`: one row per model of the stage
(parameters, gradients, optimizer state, activations), the KV cache of the rollout, FSDP2's transient
unsharded buffers, the total per GPU against the GPU's size, and the whole-job total.
Units: bytes in the dataclasses; GiB (2**30 bytes) in the tables.

Conventions (what FSDP2 ``fully_shard`` per block + root with
``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` does, see ``aad1lib/train/fsdp.py``):

- trained model, per parameter, sharded over N GPUs: fp32 parameters 4 B (they *are* the master weights: no
  extra master copy) + fp32 gradients 4 B + AdamW's two fp32 moments 8 B = 16 B / N (+ 4 B / N for an EMA copy
  when ``train.ema_decay`` is set). Compute runs in bf16 on all-gathered copies;
- frozen model (teacher, frozen discriminator backbone): parameters only, stored in the compute dtype
  (bf16 with mixed precision, else fp32), sharded: 2 B / N;
- FSDP2 transient buffers (N > 1 only): two blocks' all-gathered parameters in the compute dtype (the running
  block + the prefetched one), one block's unsharded fp32 gradients before reduce-scatter (phases with a
  backward), and the root unit's non-block parameters (patch/condition embedders, output projection,
  discriminator heads), which FSDP2 keeps unsharded from the root's forward to its backward;
- activations are not sharded: each GPU holds the graphs of its own ``batch_per_gpu`` clips (divided by
  ``sequence_parallel`` for Ulysses/ring context parallelism, which the trainer does not implement yet).

Activations: what autograd keeps for backward, per Wan block (diffusers ``WanTransformerBlock``), in tensors
of ``s·b·D`` elements (s query tokens, b clips, D = heads × head_dim, F = ffn_dim), counted from the graph
with ``saved_tensors_hooks`` (tests/test_memory_planner.py checks the formula against that count):

    bytes/block = s·b·D · (4·n_fp32 + c·(n_compute + n_ffn·F/D) + 4·8·[per-token timestep])
                + s_kv·b·D · c·2            (self-attention K, V over the visible keys s_kv = cached + own)
                + L_text·b·D · (4·t_fp32 + c·2)   (cross-attention K, V over the text tokens)

with c the compute dtype's bytes and, for a block whose weights train, n_fp32 = 12 (Wan's fp32 LayerNorm inputs
and outputs, the q/k RMSNorm inputs and outputs), n_compute = 8 (q/k/v projection input, SDPA q and output,
gated attention output, cross-attention projection input, SDPA q and output, FFN input), n_ffn = 2 (FFN hidden
and GELU output), t_fp32 = 2; for a block with frozen weights that only passes gradients to its input
(the discriminator in the generator's update): n_fp32 = 6, n_compute = 4, n_ffn = 1, t_fp32 = 0.
A per-frame/per-token timestep (Diffusion Forcing, DMD's noised clip) makes the six modulation vectors
token-sized: 8 more fp32 tensors per block. This is the Korthikanti et al. (2022) per-layer count
``s·b·h·(34 + 5·a·s/h)`` (bytes, fp16, h = D, 4h FFN) redone for Wan's block: flash/SDPA attention saves
only q, k, v, the output and a log-sum-exp, so the ``5·a·s²·b`` softmax term is gone (a dense-mask math
attention on CPU would bring it back), and Wan's fp32 adaLN norms cost more than GPT's LayerNorms:
with bf16 and F = 4D it is 84·s·b·D bytes per trained block vs GPT's 34·s·b·h.

Gradient checkpointing (diffusers: every block under ``torch.utils.checkpoint``) keeps only each block's input
(``c·s·b·D``) and, for a chunk streamed with a KV cache, the cache snapshot its attention context refers to
(``2·layers·s_cached·b·D·c``), plus one block's full activations while that block is recomputed in backward;
the attention context also holds the KV cache object, so the live cache stays until the generator's backward.
Without checkpointing a backward still needs about one block's worth of gradient temporaries; both are
the "backward working set" below.

Which graphs are alive together: a training step goes through *phases*; the plan takes the one with the largest
activations. Stage II/III: the generator's rollout keeps one graph per chunk (chunk tokens only: Self-Forcing's
detached cache), each attending to the cached context; the critic/discriminator/teacher run on the whole clip.

- stage1: student update (whole clip, block-causal, per-frame timesteps); the teacher is resident, idle.
- stage2: rollout end (generator graphs + live KV cache) | DMD scores (generator graphs + the largest no-grad
  forward of teacher with CFG (2 b) or critic) | critic update (critic graph on the rollout's clip).
- stage3: rollout end | generator loss (generator graphs + discriminator graph with frozen weights on the
  fake clip) | discriminator update (``disc_graphs`` = 2 graphs: real and fake clips; approximate R1/R2 adds
  their perturbed forwards: pass ``disc_graphs=4`` when all four share one backward). With a frozen
  discriminator backbone only its heads keep graphs in the discriminator update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import torch

from ..config import ExperimentConfig, ModelConfig
from ..models.chunking import ChunkLayout
from ..pretrained import check_pretrained_sizes

GIB = 1024**3
STAGES = ("stage1", "stage2", "stage3")
PAPER_STAGE3_PEAK_GIB = 1040.0  # AAD-1 Limitations: "Stage III peak memory reaching about 1040GB" (64 H20)
PAPER_NUM_GPUS = 64
PUBLISHED_PARAMS = {"wan2.1-1.3b": 1.3e9, "wan2.1-14b": 14e9}  # the models' names
DEFAULT_DISC_TAPS = (0.5, 0.75, 1.0)
DEFAULT_DISC_QUERIES = 4
DISC_HEAD_HIDDEN = 256  # VideoDiscriminator(head_hidden=256)
FP32 = 4

Grad = Literal["params", "input", "none"]


# ---- parameter counts ---------------------------------------------------------------------------------
def linear_params(fan_in: int, fan_out: int, bias: bool = True) -> int:
    return fan_in * fan_out + (fan_out if bias else 0)


def wan_block_params(model: ModelConfig) -> int:
    """One ``WanTransformerBlock``: self-attention q, k, v, o (+ RMSNorm q, k over D), cross-attention the same,
    the cross-attention LayerNorm (weight + bias), FFN D→F→D, and the 6·D modulation table:
    ``2·(4·(D² + D) + 2·D) + 2·D + (2·D·F + F + D) + 6·D``."""
    dim, ffn = model.num_attention_heads * model.attention_head_dim, model.ffn_dim
    attention = 4 * linear_params(dim, dim) + 2 * dim
    return 2 * attention + 2 * dim + linear_params(dim, ffn) + linear_params(ffn, dim) + 6 * dim


def wan_root_params(model: ModelConfig) -> int:
    """Everything outside the blocks: patch embedding (Conv3d C_in·p_t·p_h·p_w → D), condition embedder (time MLP
    freq→D→D, time_proj D→6·D, text projection text_dim→D→D), output projection D → C_out·p_t·p_h·p_w and
    its 2·D modulation table."""
    dim = model.num_attention_heads * model.attention_head_dim
    patch = math.prod(model.patch_size)
    patch_embedding = linear_params(model.in_channels * patch, dim)
    time_mlp = linear_params(model.freq_dim, dim) + linear_params(dim, dim)
    time_proj = linear_params(dim, 6 * dim)
    text_projection = linear_params(model.text_dim, dim) + linear_params(dim, dim)
    output = linear_params(dim, model.in_channels * patch) + 2 * dim
    return patch_embedding + time_mlp + time_proj + text_projection + output


def wan_params(model: ModelConfig, num_layers: int | None = None) -> int:
    """Exact parameter count of ``CausalWanTransformer3DModel(**model.wan_kwargs())`` (optionally with fewer blocks)."""
    layers = model.num_layers if num_layers is None else num_layers
    return wan_root_params(model) + layers * wan_block_params(model)


def discriminator_taps(num_layers: int, tap_fractions=DEFAULT_DISC_TAPS) -> tuple[int, ...]:
    """Block indices read by the query heads; same rule as :class:`VideoDiscriminator` (blocks after the last
    tap are dropped, so the backbone keeps ``taps[-1] + 1`` blocks)."""
    return tuple(sorted({min(num_layers, max(1, round(f * num_layers))) - 1 for f in tap_fractions}))


def discriminator_head_params(dim: int, num_taps: int, num_queries: int, hidden: int = DISC_HEAD_HIDDEN) -> int:
    """Query heads (per tap: Q·D queries, LayerNorm 2·D, MultiheadAttention 4·(D² + D)) + the logit MLP
    (taps·Q·D → hidden → 1)."""
    per_tap = num_queries * dim + 2 * dim + 4 * linear_params(dim, dim)
    mlp = linear_params(num_taps * num_queries * dim, hidden) + linear_params(hidden, 1)
    return num_taps * per_tap + mlp


# ---- token geometry -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenGeometry:
    """Tokens the transformer sees: latent frames × (H / codec / p_h) × (W / codec / p_w)."""

    tokens_per_frame: int
    latent_frames: int
    layout: ChunkLayout
    text_tokens: int

    @property
    def clip_tokens(self) -> int:
        return self.latent_frames * self.tokens_per_frame

    @property
    def chunk_tokens(self) -> int:
        return self.layout.frames_per_chunk * self.tokens_per_frame

    @property
    def num_chunks(self) -> int:
        return self.layout.num_chunks(self.latent_frames)

    def chunk_start(self, chunk: int) -> int:
        return self.layout.chunk_start(chunk)

    def visible_past_frames(self, frame: int) -> int:
        """Earlier frames that a chunk starting at ``frame`` attends to (what its KV cache holds)."""
        return int(self.layout.visible(torch.tensor([frame]), torch.arange(frame)).sum())

    def cached_frames_at_end(self) -> int:
        """Frames the cache keeps after the last chunk's write (sink + window): its largest size."""
        return self.visible_past_frames(self.latent_frames)


def token_geometry(cfg: ExperimentConfig) -> TokenGeometry:
    """Wan VAE: 8× spatial (and 1 + (F−1)/4 latent frames); identity codec: pixels."""
    spatial = 8 if cfg.codec.kind == "wan_vae" else 1
    _, p_h, p_w = cfg.model.patch_size
    per_frame = (cfg.data.height // spatial // p_h) * (cfg.data.width // spatial // p_w)
    return TokenGeometry(per_frame, cfg.latent_frames, cfg.chunk_layout(), cfg.text.max_length)


# ---- activations ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SavedPerBlock:
    """How many tensors of each size autograd keeps per Wan block (see the module docstring)."""

    fp32: int  # s·b·D fp32 tensors
    compute: int  # s·b·D tensors in the compute dtype
    ffn: int  # s·b·F tensors in the compute dtype
    kv: int  # s_kv·b·D tensors (self-attention K, V incl. the cached context) in the compute dtype
    text_fp32: int  # L_text·b·D fp32 tensors (cross-attention key RMSNorm)
    text_compute: int  # L_text·b·D tensors (cross-attention K, V)


SAVED_PER_BLOCK = {
    "params": SavedPerBlock(fp32=12, compute=8, ffn=2, kv=2, text_fp32=2, text_compute=2),
    "input": SavedPerBlock(fp32=6, compute=4, ffn=1, kv=2, text_fp32=0, text_compute=2),
}
PER_TOKEN_TIMESTEP_FP32 = 8  # the [B, S, 6, D] fp32 modulation (kept through the gate views) + 2 × (1 + scale)
NO_GRAD_WORKING_SET = SavedPerBlock(fp32=2, compute=1, ffn=2, kv=0, text_fp32=0, text_compute=0)
HEAD_TAP_FP32 = 4  # discriminator query head per tap: fp32 norm input, LayerNorm output, key and value projections


@dataclass(frozen=True)
class WanShape:
    dim: int
    ffn_dim: int
    freq_dim: int
    num_layers: int
    block_params: int
    root_params: int

    @classmethod
    def of(cls, model: ModelConfig, num_layers: int | None = None, extra_root_params: int = 0) -> WanShape:
        return cls(
            dim=model.num_attention_heads * model.attention_head_dim,
            ffn_dim=model.ffn_dim,
            freq_dim=model.freq_dim,
            num_layers=model.num_layers if num_layers is None else num_layers,
            block_params=wan_block_params(model),
            root_params=wan_root_params(model) + extra_root_params,
        )


@dataclass(frozen=True)
class GraphForward:
    """One forward pass whose autograd graph is alive in a phase."""

    model: str  # the row it is charged to
    shape: WanShape
    tokens: int  # query tokens per clip
    batch: int
    grad: Grad  # "params": weights train; "input": frozen weights, gradients flow to the input; "none": no graph
    cached_tokens: int = 0  # keys/values from a KV cache that self-attention also reads
    text_tokens: int = 0
    per_token_timestep: bool = False  # timestep [B, F] or [B, S] (Diffusion Forcing, per-frame noise)
    output_used: bool = True  # the discriminator drops the backbone's output projection
    head_taps: int = 0  # discriminator query heads reading this forward's blocks


def block_bytes(fwd: GraphForward, counts: SavedPerBlock, compute_bytes: int) -> float:
    """Saved bytes of one block of ``fwd`` (module docstring formula)."""
    dim, s, b = fwd.shape.dim, fwd.tokens, fwd.batch
    per_token = FP32 * counts.fp32 + compute_bytes * (counts.compute + counts.ffn * fwd.shape.ffn_dim / dim)
    if fwd.per_token_timestep:
        per_token += FP32 * PER_TOKEN_TIMESTEP_FP32
    keys = (s + fwd.cached_tokens) * compute_bytes * counts.kv
    text = fwd.text_tokens * (FP32 * counts.text_fp32 + compute_bytes * counts.text_compute)
    return b * dim * (s * per_token + keys + text)


def outside_blocks_bytes(fwd: GraphForward, compute_bytes: int) -> float:
    """Tensors kept outside the blocks: output head (norm_out input and output, proj_out input), the per-token
    time embedding (MLP hidden states) and the discriminator's query heads."""
    dim, s, b = fwd.shape.dim, fwd.tokens, fwd.batch
    per_token = 0.0
    if fwd.output_used:
        per_token += FP32 * 2 + compute_bytes if fwd.grad == "params" else FP32
    if fwd.per_token_timestep:
        per_token += FP32 + (compute_bytes * (4 + fwd.shape.freq_dim / dim) if fwd.grad == "params" else 0)
    per_token += FP32 * HEAD_TAP_FP32 * fwd.head_taps
    return b * dim * s * per_token


def graph_bytes(fwd: GraphForward, compute_bytes: int, checkpointing: bool) -> float:
    """Activations ``fwd`` keeps until its backward."""
    if fwd.grad == "none":  # only the heads (frozen backbone, discriminator update) keep tensors
        return outside_blocks_bytes(replace(fwd, output_used=False, per_token_timestep=False), compute_bytes)
    if checkpointing:
        block_inputs = fwd.shape.num_layers * fwd.batch * fwd.tokens * fwd.shape.dim * compute_bytes
        blocks = block_inputs + cached_context_bytes(fwd, compute_bytes)
    else:
        blocks = fwd.shape.num_layers * block_bytes(fwd, SAVED_PER_BLOCK[fwd.grad], compute_bytes)
    return blocks + outside_blocks_bytes(fwd, compute_bytes)


def cached_context_bytes(fwd: GraphForward, compute_bytes: int) -> float:
    """Of :func:`graph_bytes`, the part that is the KV-cached context's keys/values (the same with or without
    checkpointing: SDPA saves them, or the recompute closure holds the cache snapshot)."""
    return 2 * fwd.shape.num_layers * fwd.batch * fwd.cached_tokens * fwd.shape.dim * compute_bytes


def backward_working_set_bytes(fwd: GraphForward, compute_bytes: int) -> float:
    """One block's full activations: recomputed under checkpointing, gradient temporaries without."""
    if fwd.grad == "none":
        return 0.0
    return block_bytes(fwd, SAVED_PER_BLOCK[fwd.grad], compute_bytes)


def no_grad_working_set_bytes(fwd: GraphForward, compute_bytes: int) -> float:
    """Peak inside one block of a forward without autograd: fp32 residual and norm, modulated input, FFN hidden
    and GELU output."""
    return block_bytes(fwd, NO_GRAD_WORKING_SET, compute_bytes)


# ---- models and phases of each stage ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model of the stage and how its parameters are held."""

    name: str
    role: str  # shown in the table
    shape: WanShape
    num_params: int
    trained_params: int
    ema: bool = False


@dataclass
class Phase:
    """A moment of the training step: the graphs alive together, plus no-grad forwards and the KV cache."""

    name: str
    graphs: list[GraphForward] = field(default_factory=list)
    no_grad: list[GraphForward] = field(default_factory=list)  # run one after another: only the largest counts
    kv_cache_bytes: float = 0.0
    backward: bool = True


@dataclass(frozen=True)
class PlanOptions:
    num_gpus: int
    batch_per_gpu: int
    grad_checkpointing: bool
    compute_bytes: int
    sequence_parallel: int = 1
    frozen_disc_backbone: bool = False
    disc_graphs: int = 2
    disc_taps: tuple[float, ...] = DEFAULT_DISC_TAPS
    disc_queries: int = DEFAULT_DISC_QUERIES
    ema: bool = False


def stage_models(cfg: ExperimentConfig, stage: str, opts: PlanOptions) -> list[ModelSpec]:
    """The models a stage holds in memory, in table order."""
    model = cfg.model
    full = WanShape.of(model)
    total = wan_params(model)
    ema = opts.ema
    if stage == "stage1":
        return [
            ModelSpec("student", "trained", full, total, total, ema),
            ModelSpec("teacher", "frozen", full, total, 0),
        ]
    if stage == "stage2":
        return [
            ModelSpec("generator", "trained", full, total, total, ema),
            ModelSpec("critic", "trained", full, total, total),
            ModelSpec("teacher", "frozen", full, total, 0),
        ]
    taps = discriminator_taps(model.num_layers, opts.disc_taps)
    heads = discriminator_head_params(full.dim, len(taps), opts.disc_queries)
    disc_shape = WanShape.of(model, num_layers=taps[-1] + 1, extra_root_params=heads)
    disc_total = wan_params(model, taps[-1] + 1) + heads
    frozen = opts.frozen_disc_backbone
    return [
        ModelSpec("generator", "trained", full, total, total, ema),
        ModelSpec(
            "discriminator",
            "frozen backbone + heads" if frozen else "trained",
            disc_shape,
            disc_total,
            heads if frozen else disc_total,
        ),
    ]


def rollout_graphs(name: str, shape: WanShape, geo: TokenGeometry, batch: int) -> list[GraphForward]:
    """Self-Forcing rollout: one graph per generated chunk (its exit step), attending to the cached context."""
    return [
        GraphForward(
            name,
            shape,
            geo.chunk_tokens,
            batch,
            "params",
            cached_tokens=geo.visible_past_frames(geo.chunk_start(chunk)) * geo.tokens_per_frame,
            text_tokens=geo.text_tokens,
        )
        for chunk in range(geo.num_chunks)
    ]


def kv_cache_bytes(shape: WanShape, geo: TokenGeometry, batch: int, compute_bytes: int) -> float:
    """Live KV cache at the end of the rollout: ``2 · layers · tokens_in_window · D · bytes`` per clip."""
    tokens = geo.cached_frames_at_end() * geo.tokens_per_frame
    return 2 * shape.num_layers * tokens * shape.dim * compute_bytes * batch


def stage_phases(cfg: ExperimentConfig, stage: str, models: list[ModelSpec], opts: PlanOptions) -> list[Phase]:
    """The phases of one training step (module docstring)."""
    geo = token_geometry(cfg)
    b, clip, text = opts.batch_per_gpu, geo.clip_tokens, geo.text_tokens
    shapes = {m.name: m.shape for m in models}
    if stage == "stage1":
        student = GraphForward(
            "student", shapes["student"], clip, b, "params", text_tokens=text, per_token_timestep=True
        )
        return [Phase("student update", graphs=[student])]

    gen = rollout_graphs("generator", shapes["generator"], geo, b)
    cache = kv_cache_bytes(shapes["generator"], geo, b, opts.compute_bytes)
    rollout_end = Phase("rollout end", graphs=gen, kv_cache_bytes=cache, backward=False)
    # Under checkpointing each chunk's recompute closure holds the attention context, which holds the KV cache
    # object: the cache then lives until the generator's backward (measured on CPU).
    cache_in_backward = cache if opts.grad_checkpointing else 0.0
    if stage == "stage2":
        teacher = GraphForward(
            "teacher", shapes["teacher"], clip, 2 * b, "none", text_tokens=text, per_token_timestep=True
        )  # CFG: conditional + unconditional rows
        critic = GraphForward("critic", shapes["critic"], clip, b, "params", text_tokens=text, per_token_timestep=True)
        return [
            rollout_end,
            Phase(
                "DMD scores + generator backward",
                graphs=gen,
                no_grad=[teacher, replace(critic, grad="none")],
                kv_cache_bytes=cache_in_backward,
            ),
            Phase("critic update", graphs=[critic]),
        ]

    disc = GraphForward(
        "discriminator",
        shapes["discriminator"],
        clip,
        b,
        "params",
        text_tokens=text,
        output_used=False,
        head_taps=len(discriminator_taps(cfg.model.num_layers, opts.disc_taps)),
    )
    disc_update = replace(disc, grad="none") if opts.frozen_disc_backbone else disc
    return [
        rollout_end,
        Phase(
            "generator loss (D on the fake clip) + backward",
            graphs=[*gen, replace(disc, grad="input")],
            kv_cache_bytes=cache_in_backward,
        ),
        Phase("discriminator update", graphs=[disc_update] * opts.disc_graphs),
    ]


# ---- the plan --------------------------------------------------------------------------------------------
@dataclass
class ModelMemory:
    """One row of the plan, bytes per GPU."""

    name: str
    role: str
    num_params: int
    trained_params: int
    params_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activation_bytes: float  # in the peak phase

    @property
    def total_bytes(self) -> float:
        return self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.activation_bytes


@dataclass
class MemoryPlan:
    preset: str
    stage: str
    num_gpus: int
    batch_per_gpu: int
    grad_checkpointing: bool
    compute_dtype: str
    sequence_parallel: int
    gpu_bytes: float
    rows: list[ModelMemory]
    kv_cache_bytes: float  # in the peak phase
    buffer_bytes: float  # FSDP2 unsharded buffers in the peak phase
    peak_phase: str
    phase_bytes: dict[str, float]  # activations + KV cache + buffers of every phase
    tokens: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def state_bytes(self) -> float:
        """Parameters, gradients and optimizer state of all models (sharded)."""
        return sum(r.params_bytes + r.grads_bytes + r.optimizer_bytes for r in self.rows)

    @property
    def activation_bytes(self) -> float:
        return sum(r.activation_bytes for r in self.rows) + self.kv_cache_bytes

    @property
    def per_gpu_bytes(self) -> float:
        return self.state_bytes + self.activation_bytes + self.buffer_bytes

    @property
    def job_bytes(self) -> float:
        return self.per_gpu_bytes * self.num_gpus

    @property
    def fits(self) -> bool:
        return self.per_gpu_bytes <= self.gpu_bytes

    def to_markdown(self) -> str:
        """The table per model, the KV cache and FSDP2 buffer lines, the total, and the verdict."""
        unit, scale = ("GiB", GIB) if self.per_gpu_bytes >= GIB else ("MiB", 1024**2)

        def fmt(x: float) -> str:
            return f"{x / scale:,.2f}"

        def column(name: str) -> str:
            return fmt(sum(getattr(r, name) for r in self.rows))

        rows, total = self.rows, self.per_gpu_bytes
        lines = [
            f"**{self.preset} {self.stage}** on {self.num_gpus} GPU(s), {self.batch_per_gpu} clip(s) per GPU, "
            f"compute {self.compute_dtype}, gradient checkpointing {'on' if self.grad_checkpointing else 'off'}"
            + (f", sequence parallel {self.sequence_parallel}" if self.sequence_parallel > 1 else "")
            + f"; tokens: {self.tokens['clip']} per clip, {self.tokens['chunk']} per chunk, "
            f"{self.tokens['kv_cache']} in the KV cache window",
            "",
            f"| model ({unit} per GPU) | role | parameters | params | grads | optimizer | activations | total |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r.name} | {r.role} | {_count(r.num_params)} | {fmt(r.params_bytes)} | {fmt(r.grads_bytes)} "
                f"| {fmt(r.optimizer_bytes)} | {fmt(r.activation_bytes)} | {fmt(r.total_bytes)} |"
            )
        lines += [
            f"| KV cache (rollout) | | | | | | {fmt(self.kv_cache_bytes)} | {fmt(self.kv_cache_bytes)} |",
            f"| FSDP2 unsharded buffers | | | | | | | {fmt(self.buffer_bytes)} |",
            f"| **total per GPU** | | | {column('params_bytes')} | {column('grads_bytes')} "
            f"| {column('optimizer_bytes')} | {fmt(self.activation_bytes)} | **{fmt(total)}** |",
            "",
            f"- per GPU: {fmt(total)} {unit} of a {self.gpu_bytes / GIB:g} GiB GPU "
            f"({100 * total / self.gpu_bytes:.0f} %): " + ("fits" if self.fits else "does NOT fit"),
            f"- peak phase: {self.peak_phase}; every phase's activations + KV cache + buffers ({unit}): "
            + ", ".join(f"{name} {fmt(v)}" for name, v in self.phase_bytes.items()),
            f"- whole job: {self.num_gpus} × {fmt(total)} = {fmt(self.job_bytes)} {unit}",
            *(f"- {note}" for note in self.notes),
        ]
        if self.stage == "stage3":
            lines.append(
                f"- paper reference (AAD-1, Limitations): Stage III peak about {PAPER_STAGE3_PEAK_GIB:.0f} GB on "
                f"{PAPER_NUM_GPUS} H20 GPUs (≈ {PAPER_STAGE3_PEAK_GIB / PAPER_NUM_GPUS:.1f} GB per GPU); "
                f"this plan's whole job is {self.job_bytes / GIB / PAPER_STAGE3_PEAK_GIB:.2f}× that"
            )
        return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e9:.3f} B" if n >= 1e8 else f"{n / 1e6:.3f} M"


def model_state_row(spec: ModelSpec, opts: PlanOptions) -> ModelMemory:
    """Sharded parameters / gradients / optimizer state of one model (module docstring conventions)."""
    n = opts.num_gpus
    frozen = spec.num_params - spec.trained_params
    optimizer_per_param = 2 * FP32 + (FP32 if spec.ema else 0)
    return ModelMemory(
        name=spec.name,
        role=spec.role + (" (+EMA)" if spec.ema else ""),
        num_params=spec.num_params,
        trained_params=spec.trained_params,
        params_bytes=(spec.trained_params * FP32 + frozen * opts.compute_bytes) / n,
        grads_bytes=spec.trained_params * FP32 / n,
        optimizer_bytes=spec.trained_params * optimizer_per_param / n,
        activation_bytes=0.0,
    )


def phase_activations(phase: Phase, opts: PlanOptions) -> dict[str, float]:
    """Activation bytes per model in ``phase`` (graphs + the backward / no-grad working set)."""
    c, ckpt = opts.compute_bytes, opts.grad_checkpointing
    per_model: dict[str, float] = {}
    for fwd in phase.graphs:
        per_model[fwd.model] = per_model.get(fwd.model, 0.0) + graph_bytes(fwd, c, ckpt)
    extras = [(f.model, backward_working_set_bytes(f, c)) for f in phase.graphs if phase.backward]
    extras += [(f.model, no_grad_working_set_bytes(f, c)) for f in phase.no_grad]
    if extras:  # one block at a time: only the largest working set adds to the graphs
        name, value = max(extras, key=lambda item: item[1])
        per_model[name] = per_model.get(name, 0.0) + value
    return {name: value / opts.sequence_parallel for name, value in per_model.items()}


def fsdp_buffer_bytes(phase: Phase, models: list[ModelSpec], opts: PlanOptions) -> float:
    """Transient unsharded FSDP2 buffers in ``phase`` (none on one GPU: nothing is sharded)."""
    if opts.num_gpus == 1:
        return 0.0
    active = {f.model for f in phase.graphs + phase.no_grad}
    specs = [m for m in models if m.name in active]
    if not specs:
        return 0.0
    block = max(m.shape.block_params for m in specs)
    gathered_blocks = 2 * block * opts.compute_bytes
    grad_block = block * FP32 if phase.backward and any(m.trained_params for m in specs) else 0
    roots = sum(m.shape.root_params for m in specs if any(f.model == m.name for f in phase.graphs))
    return gathered_blocks + grad_block + roots * opts.compute_bytes


def plan_memory(
    cfg: ExperimentConfig,
    stage: str,
    num_gpus: int,
    batch_per_gpu: int | None = None,
    grad_checkpointing: bool | None = None,
    gpu_gb: float = 80.0,
    frozen_disc_backbone: bool | None = None,
    disc_graphs: int = 2,
    sequence_parallel: int = 1,
    mixed_precision: str | None = None,
    ema: bool | None = None,
) -> MemoryPlan:
    """Per-GPU memory of ``stage`` (``stage1`` / ``stage2`` / ``stage3``) trained with FSDP2 on ``num_gpus`` GPUs.

    Args:
        batch_per_gpu: clips per GPU; default ``ceil(train.batch_size / num_gpus)``.
        grad_checkpointing: default ``train.gradient_checkpointing`` of the config (off if it has none).
        gpu_gb: GPU memory in GiB (H100/A100 80 GB).
        frozen_disc_backbone: Stage III with the discriminator's backbone frozen (heads only); default
            ``not stage3.train_disc_backbone``.
        disc_graphs: discriminator graphs alive together in its update (2 = real + fake; 4 with R1/R2 forwards).
        sequence_parallel: context-parallel degree (each GPU holds 1/k of every sequence's activations).
        mixed_precision: override ``train.mixed_precision`` ("no" = fp32 compute, "bf16"/"fp16" = 2-byte compute).
        ema: keep an fp32 EMA copy of the generator/student; default ``train.ema_decay is not None``.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed: {STAGES}")
    check_pretrained_sizes(cfg)  # the sizes planned with must be the checkpoint's (when its path exists here)
    if num_gpus < 1 or sequence_parallel < 1 or disc_graphs < 1:
        raise ValueError(
            f"need num_gpus, sequence_parallel, disc_graphs >= 1, got {num_gpus}, {sequence_parallel}, {disc_graphs}"
        )
    stage3 = getattr(cfg, "stage3", None)
    precision = mixed_precision or cfg.train.mixed_precision
    opts = PlanOptions(
        num_gpus=num_gpus,
        batch_per_gpu=batch_per_gpu or max(1, math.ceil(cfg.train.batch_size / num_gpus)),
        grad_checkpointing=(
            getattr(cfg.train, "gradient_checkpointing", False) if grad_checkpointing is None else grad_checkpointing
        ),
        compute_bytes=FP32 if precision == "no" else 2,
        sequence_parallel=sequence_parallel,
        frozen_disc_backbone=(
            not getattr(stage3, "train_disc_backbone", True) if frozen_disc_backbone is None else frozen_disc_backbone
        ),
        disc_graphs=disc_graphs,
        disc_taps=tuple(getattr(stage3, "disc_taps", DEFAULT_DISC_TAPS)),
        disc_queries=getattr(stage3, "disc_queries", DEFAULT_DISC_QUERIES),
        ema=cfg.train.ema_decay is not None if ema is None else ema,
    )
    models = stage_models(cfg, stage, opts)
    phases = stage_phases(cfg, stage, models, opts)
    totals = {}
    for phase in phases:
        acts = phase_activations(phase, opts)
        totals[phase.name] = (
            sum(acts.values()) + phase.kv_cache_bytes / opts.sequence_parallel + fsdp_buffer_bytes(phase, models, opts)
        )
    peak = max(phases, key=lambda p: totals[p.name])
    peak_acts = phase_activations(peak, opts)
    rows = [model_state_row(m, opts) for m in models]
    for row in rows:
        row.activation_bytes = peak_acts.get(row.name, 0.0)
    geo = token_geometry(cfg)
    context = sum(cached_context_bytes(f, opts.compute_bytes) for f in peak.graphs) / opts.sequence_parallel
    notes = []
    if context:
        notes.append(
            f"{context / GIB:,.2f} GiB of the generator's activations are the cached context's keys/values that "
            "each chunk's backward needs (Σ over chunks of 2·layers·s_cached·b·D·bytes)"
        )
    return MemoryPlan(
        preset=cfg.name,
        stage=stage,
        num_gpus=num_gpus,
        batch_per_gpu=opts.batch_per_gpu,
        grad_checkpointing=opts.grad_checkpointing,
        compute_dtype="fp32" if opts.compute_bytes == FP32 else precision,
        sequence_parallel=sequence_parallel,
        gpu_bytes=gpu_gb * GIB,
        rows=rows,
        kv_cache_bytes=peak.kv_cache_bytes / opts.sequence_parallel,
        buffer_bytes=fsdp_buffer_bytes(peak, models, opts),
        peak_phase=peak.name,
        phase_bytes=totals,
        tokens=dict(
            clip=geo.clip_tokens,
            chunk=geo.chunk_tokens,
            kv_cache=geo.cached_frames_at_end() * geo.tokens_per_frame,
        ),
        notes=notes,
    )
