"""Per-GPU memory plan of an AAD-1 training stage under FSDP2, before launching it.

``plan_memory(cfg, "stage3", num_gpus=64)`` returns a :class:`MemoryPlan`: one row per model the stage holds on
the GPU (the trained and frozen transformers, the text encoder, the VAE: parameters, gradients, optimizer state,
activations), the rollout's KV cache, FSDP2's unsharded buffers, the total per GPU against the GPU's size, and the
whole-job total. Units: bytes in the dataclasses; GiB (2**30 bytes) in the tables.

Conventions: what the trainers do (``aad1lib/train``: ``TrainLoop.add_model`` / ``add_frozen``, FSDP2 helpers in
``aad1lib/train/fsdp.py``), with N GPUs and c the compute dtype's bytes (2 with ``train.mixed_precision=bf16``,
4 with "no"):

- trained model (``add_model``: ``fully_shard`` per block + root, ``MixedPrecisionPolicy(param_dtype=bf16,
  reduce_dtype=fp32)``), per parameter: fp32 parameters 4 B (they *are* the master weights: no extra master
  copy) + fp32 gradients 4 B + AdamW's two fp32 moments 8 B = 16 B / N (+ 4 B / N for an EMA copy when
  ``train.ema_decay`` is set). Its frozen parameters (a frozen discriminator backbone) stay fp32: 4 B / N.
  Compute runs in the compute dtype on all-gathered copies;
- frozen model (``add_frozen``: cast on the CPU to the compute dtype, then sharded by block, parameters only):
  c / N per parameter. That is the Stage I teacher (resident during ODE-pair generation only, deleted before
  the student trains), the Stage II teacher (real score) and the umT5 text encoder of every stage
  (``UMT5Block`` units; its size from ``text_encoder/config.json`` when the path exists here, else umT5-XXL's);
- not sharded (one process, or a model without shard units): the Wan VAE, kept fp32 and replicated (Wan runs
  its VAE in fp32), 4 B per parameter on every GPU; the CPU presets' tiny text encoder (buffers, compute dtype)
  and identity codec (nothing);
- FSDP2 unsharded buffers (N > 1 only): two blocks' all-gathered parameters in the compute dtype (the running
  block + the prefetched one), one block's unsharded fp32 gradients before reduce-scatter (phases with a
  backward), and the roots' non-block parameters (Wan: patch/condition embedders, output projection,
  discriminator heads; umT5: the 256k × 4096 token embedding). FSDP2 does not reshard a root after its forward
  (it expects the backward to need it next): a trained model's root stays gathered from its forward -- a
  no-grad one included -- to its next backward; a frozen model's root, which never runs a backward, stays
  gathered from its first forward on;
- activations are not sharded: each GPU holds the graphs of its own ``batch_per_gpu`` clips (divided by
  ``sequence_parallel`` for Ulysses/ring context parallelism, which the trainer does not implement yet).

Activations: what autograd keeps for backward, per Wan block (diffusers ``WanTransformerBlock``), in tensors
of ``s·b·D`` elements (s query tokens, b clips, D = heads × head_dim, F = ffn_dim), counted from the graph
with ``saved_tensors_hooks`` (tests/test_memory_planner.py checks the formula against that count):

    bytes/block = s·b·D · (4·n_fp32 + c·(n_compute + n_ffn·F/D) + 4·8·[per-token timestep])
                + s_kv·b·D · c·2            (self-attention K, V over the visible keys s_kv = cached + own)
                + L_text·b·D · (4·t_fp32 + c·2)   (cross-attention K, V over the text tokens)

with, for a block whose weights train, n_fp32 = 12 (Wan's fp32 LayerNorm inputs and outputs, the q/k RMSNorm
inputs and outputs), n_compute = 8 (q/k/v projection input, SDPA q and output, gated attention output,
cross-attention projection input, SDPA q and output, FFN input), n_ffn = 2 (FFN hidden and GELU output),
t_fp32 = 2; for a block with frozen weights that only passes gradients to its input (a frozen discriminator
backbone in the generator's update): n_fp32 = 6, n_compute = 4, n_ffn = 1, t_fp32 = 0.
A per-frame/per-token timestep (Diffusion Forcing, DMD's noised clip) makes the six modulation vectors
token-sized: 8 more fp32 tensors per block. This is the Korthikanti et al. (2022) per-layer count
``s·b·h·(34 + 5·a·s/h)`` (bytes, fp16, h = D, 4h FFN) redone for Wan's block: flash/SDPA attention saves
only q, k, v, the output and a log-sum-exp, so the ``5·a·s²·b`` softmax term is gone (a dense-mask math
attention on CPU would bring it back), and Wan's fp32 adaLN norms cost more than GPT's LayerNorms:
with bf16 and F = 4D it is 84·s·b·D bytes per trained block vs GPT's 34·s·b·h.

Outside the blocks a graph keeps the output head's inputs (fp32 norm in/out, projection input), a per-token time
embedding's MLP states, and per discriminator query head ``3·c`` (+ 4 B, the fp32 copy ``FP32LayerNorm`` makes
of a bf16 input) per token·D, the last tap also its block's output.

Gradient checkpointing (diffusers: every block under ``torch.utils.checkpoint``) keeps only each block's input
(``c·s·b·D``; with a per-token timestep also the ``[B, S, 6·D]`` modulation input all blocks share).

Working sets (what comes on top of the graphs for a moment; the largest one of a phase counts):

- backward with checkpointing: one block's full activations while it is recomputed (the formula above), plus,
  with a per-token timestep, the modulation's gradient accumulated over the blocks (``6·c``) and its fp32
  per-block part (``2·4``);
- backward without checkpointing: the saved activations are freed as the backward goes, so only the residual
  stream's gradient in and out of a block (``2·4`` B per token·D, + 4 with a per-token timestep);
- a forward without autograd, or a checkpointed block's forward: fp32 norm in/out, the modulated input, FFN
  hidden and GELU output, K/V over the visible keys (+ a per-token timestep's shared ``6·c`` modulation and
  8 fp32 per-block vectors): the no-grad teacher/critic scores, and the rollout's running block.

Measured on demo sizes (``synthetic_*_step`` in :mod:`.memory_measure`, fp32/bf16, with/without checkpointing)
each term is within ~7 % (saved tensors, allocator); the whole plan within 4 % of each rank's peak of a
2-process FSDP2 run (tests/test_memory_planner.py).

KV cache, held once: :class:`~aad1lib.models.kv_cache.KVCache` keeps one K/V segment per cache write (the
context, then each chunk; eviction drops segments or narrows them to views, which keep the segment's storage),
and attention concatenates the segments inside the block. Under checkpointing each chunk's recompute closure
holds the segments that chunk saw (and the cache object, which holds the live window), so every segment that any
chunk saw stays until the generator's backward -- but once, shared by all chunks:
``2 · layers · b · D · c · (tokens of those segments)``. With the paper's 1 + 7 × 3 latent frames and a 13-frame
window that is every frame the rollout wrote. Without checkpointing the concatenated K/V that each chunk's SDPA
saves are in the block formula (s_kv), and the cache itself lives only until the rollout returns (the live
window, at the rollout's end).

Which graphs are alive together: a training step goes through *phases*; the plan takes the one with the largest
total (resident models' state + activations + KV cache + FSDP2 buffers). Stage II/III: the generator's rollout
keeps one graph per chunk (chunk tokens only: Self-Forcing's detached cache), each attending to the cached
context; the critic/discriminator/teacher run on the whole clip.

- stage1: ODE-pair generation (the frozen teacher's no-grad forwards with CFG, 2 b rows; the student is still
  on the CPU) | student update (whole clip, block-causal, per-frame timesteps; the teacher is freed). The plan
  says which one is larger (for Wan 14B: the student update).
- stage2: rollout end (generator graphs + KV cache) | DMD scores (generator graphs + the largest no-grad
  forward of teacher with CFG (2 b) or critic) | critic update (critic graph on the rollout's clip).
- stage3 (the trainer's order): discriminator update (``disc_graphs`` graphs share one backward: real and fake,
  plus their perturbed forwards for approximate R1/R2 when ``stage3.lam > 0``: 4 by default) | rollout end |
  generator loss (generator graphs + the discriminator's graph on the fake clip: the trainer leaves D's
  weights trainable there, their gradients are dropped at the next D update). With a frozen discriminator
  backbone only its heads keep graphs in the discriminator update.

Not modelled: the umT5 and VAE forwards' own working sets (they run in the batch draw, before the step's graphs
exist), sampling/validation passes, the allocator's fragmentation, and Wan I2V presets' extras (``model.i2v =
wan_i2v``: the frozen CLIP image encoder and the I2V transformer's image cross-attention parameters).
"""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from ..chunking import ChunkLayout
from ..config import ExperimentConfig, ModelConfig, check_pretrained_sizes
from ..models.text import TinyTextEncoder
from ..pretrained import text_encoder_config_file, wan_config_file

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


def wan_block_params(model: ModelConfig, image_dim: int = 0) -> int:
    """One ``WanTransformerBlock``: self-attention q, k, v, o (+ RMSNorm q, k over D), cross-attention the same,
    the cross-attention LayerNorm (weight + bias), FFN D→F→D, and the 6·D modulation table:
    ``2·(4·(D² + D) + 2·D) + 2·D + (2·D·F + F + D) + 6·D``; Wan I2V (``image_dim``) adds the image tokens' key and
    value projections (``added_kv_proj_dim`` = D → D) and their RMSNorm: ``2·(D² + D) + D``."""
    dim, ffn = model.num_attention_heads * model.attention_head_dim, model.ffn_dim
    attention = 4 * linear_params(dim, dim) + 2 * dim
    image_kv = 2 * linear_params(dim, dim) + dim if image_dim else 0
    return 2 * attention + 2 * dim + linear_params(dim, ffn) + linear_params(ffn, dim) + 6 * dim + image_kv


def wan_root_params(model: ModelConfig, condition_channels: int = 0, image_dim: int = 0) -> int:
    """Everything outside the blocks: patch embedding (Conv3d C_in·p_t·p_h·p_w → D, C_in including Wan I2V's
    condition channels), condition embedder (time MLP freq→D→D, time_proj D→6·D, text projection text_dim→D→D;
    Wan I2V: the image embedder LayerNorm(I), I→I→D MLP, LayerNorm(D)), output projection D → C_out·p_t·p_h·p_w
    and its 2·D modulation table."""
    dim = model.num_attention_heads * model.attention_head_dim
    patch = math.prod(model.patch_size)
    patch_embedding = linear_params((model.in_channels + condition_channels) * patch, dim)
    image = 2 * image_dim + linear_params(image_dim, image_dim) + linear_params(image_dim, dim) + 2 * dim
    patch_embedding += image if image_dim else 0
    time_mlp = linear_params(model.freq_dim, dim) + linear_params(dim, dim)
    time_proj = linear_params(dim, 6 * dim)
    text_projection = linear_params(model.text_dim, dim) + linear_params(dim, dim)
    output = linear_params(dim, model.in_channels * patch) + 2 * dim
    return patch_embedding + time_mlp + time_proj + text_projection + output


def wan_params(
    model: ModelConfig, num_layers: int | None = None, condition_channels: int = 0, image_dim: int = 0
) -> int:
    """Exact parameter count of ``CausalWanTransformer3DModel(**model.wan_kwargs(condition_channels))`` (optionally
    with fewer blocks; ``image_dim``: Wan I2V's image embedder and per-block image K/V)."""
    layers = model.num_layers if num_layers is None else num_layers
    return wan_root_params(model, condition_channels, image_dim) + layers * wan_block_params(model, image_dim)


# Wan 2.1 I2V's image encoder: open-clip ViT-H/14 as transformers' CLIPVisionModel (Wan2.1-I2V-14B-480P-Diffusers/
# image_encoder/config.json), used when that file is not on this machine; counted on the meta device, not typed in
CLIP_VIT_H14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                    image_size=224, patch_size=14)  # fmt: skip


def wan_i2v_parts(cfg: ExperimentConfig) -> tuple[int, int, dict | None, str]:
    """Wan I2V's extra input channels, the transformer's ``image_dim`` (0: no image tokens), the CLIP vision config
    and where they came from: the checkpoint's ``transformer/`` and ``image_encoder/`` config.json when they exist
    here, else Wan 2.1 I2V 14B's (image_dim 1280, ViT-H/14)."""
    if getattr(cfg.model, "i2v", "context_frame") != "wan_i2v":
        return 0, 0, None, ""
    channels = cfg.condition_channels
    root = Path(cfg.model.pretrained).expanduser() if cfg.model.pretrained else None
    file = wan_config_file(root) if root is not None else None
    if file is None or not file.exists():
        if root is None:  # a randomly initialised wan_i2v model (CPU presets): no image encoder
            return channels, 0, None, "random init, no image encoder"
        return channels, 1280, dict(CLIP_VIT_H14), "Wan 2.1 I2V 14B's sizes (no checkpoint config here)"
    image_dim = json.loads(file.read_text()).get("image_dim") or 0
    wan_root = file.parent.parent if file.parent.name == "transformer" else file.parent
    clip_file = wan_root / "image_encoder" / "config.json"
    if not image_dim:
        return channels, 0, None, str(file)
    clip = json.loads(clip_file.read_text()) if clip_file.exists() else dict(CLIP_VIT_H14)
    return channels, image_dim, clip, str(clip_file if clip_file.exists() else file)


def clip_vision_params(config: dict) -> tuple[int, int]:
    """(all parameters, one ``CLIPEncoderLayer``) of ``CLIPVisionModel(CLIPVisionConfig(**config))``, built on meta."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    skip = ("architectures", "transformers_version")
    keys = {k: v for k, v in config.items() if not k.startswith("_") and k not in skip}
    with torch.device("meta"):
        model = CLIPVisionModel(CLIPVisionConfig(**keys))
    layer = next(
        sum(p.numel() for p in m.parameters()) for m in model.modules() if type(m).__name__ == "CLIPEncoderLayer"
    )
    return sum(p.numel() for p in model.parameters()), layer


# umT5-XXL encoder (Wan 2.1's text encoder, google/umt5-xxl), used when ``text.path`` is not on this machine
UMT5_XXL_ENCODER = dict(
    d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64, vocab_size=256384,
    relative_attention_num_buckets=32, feed_forward_proj="gated-gelu",
)  # fmt: skip
# Wan 2.1 VAE (AutoencoderKLWan: base_dim 96, z_dim 16, dim_mult [1, 2, 4, 4], 2 res blocks): diffusers'
# AutoencoderKLWan() defaults are this VAE's config, and 126,892,531 is the parameter count of
# AutoencoderKLWan() built on the meta device (tests/test_memory_planner.py rebuilds it); Wan2.1_VAE.pth is the
# same ~127M parameters in fp32 (~508 MB). Used when ``codec.path`` is not on this machine.
WAN21_VAE_PARAMS = 126_892_531


def umt5_block_params(config: dict) -> int:
    """One ``UMT5Block`` of the encoder: self-attention q, k, v, o (no biases) + its own relative-position
    bias table (buckets × heads), the gated (or plain) FFN, and two RMSNorm weights."""
    d, inner, ff = config["d_model"], config["num_heads"] * config["d_kv"], config["d_ff"]
    gated = str(config.get("feed_forward_proj", "gated-gelu")).startswith("gated-")
    attention = 4 * d * inner + config["relative_attention_num_buckets"] * config["num_heads"]
    return attention + (3 if gated else 2) * d * ff + 2 * d


def umt5_root_params(config: dict) -> int:
    """Outside the blocks: the shared token embedding (vocab × d_model) and the final RMSNorm."""
    return config["vocab_size"] * config["d_model"] + config["d_model"]


def umt5_encoder_params(config: dict) -> int:
    """Exact parameter count of ``transformers.UMT5EncoderModel(UMT5Config(**config))`` (5,680,910,336 for
    umT5-XXL; tests/test_memory_planner.py builds the model on meta)."""
    return umt5_root_params(config) + config["num_layers"] * umt5_block_params(config)


def umt5_config(cfg: ExperimentConfig) -> tuple[dict, str]:
    """The text encoder's config and where it came from: ``text_encoder/config.json`` of ``text.path`` when it
    exists here (missing keys take ``UMT5Config``'s defaults, as ``from_pretrained`` would), else umT5-XXL's."""
    path = getattr(cfg.text, "path", None)
    file = text_encoder_config_file(path) if path else None
    if file is not None and file.exists():
        from transformers import UMT5Config

        config = UMT5Config(**json.loads(file.read_text())).to_dict()
        return {key: config[key] for key in UMT5_XXL_ENCODER}, str(file)
    return dict(UMT5_XXL_ENCODER), "umT5-XXL's sizes (no text_encoder/config.json here)"


def tiny_text_encoder_params(dim: int, max_length: int) -> int:
    """:class:`~aad1lib.models.text.TinyTextEncoder`'s buffers (it has no parameters): token table vocab × D,
    q/k/v and output projections 4·D², MLP 8·D², position table L × D."""
    vocab = inspect.signature(TinyTextEncoder).parameters["vocab_size"].default
    return vocab * dim + 12 * dim * dim + max_length * dim


def wan_vae_params(cfg: ExperimentConfig) -> tuple[int, str]:
    """The Wan VAE's parameter count and its source: ``AutoencoderKLWan`` built on meta from ``vae/config.json``
    of ``codec.path`` when it exists here, else :data:`WAN21_VAE_PARAMS`."""
    path = getattr(cfg.codec, "path", None)
    if path:
        root = Path(path).expanduser()
        file = (root / "vae" if (root / "vae").is_dir() else root) / "config.json"
        if file.exists():
            from diffusers import AutoencoderKLWan

            config = {k: v for k, v in json.loads(file.read_text()).items() if not k.startswith("_")}
            with torch.device("meta"):
                vae = AutoencoderKLWan.from_config(config)
            return sum(p.numel() for p in vae.parameters()), str(file)
    return WAN21_VAE_PARAMS, "the Wan 2.1 VAE's size (no vae/config.json here)"


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

    def cache_segments(self) -> list[tuple[int, int]]:
        """``(first frame, frames)`` of each cache write of a rollout: the context, then every chunk."""
        context = [(0, self.layout.context_frames)] if self.layout.context_frames else []
        return context + [(self.chunk_start(c), self.layout.frames_per_chunk) for c in range(self.num_chunks)]

    def held_cache_frames(self, checkpointing: bool) -> int:
        """Frames of the cache segments alive at the end of the rollout. A segment is one storage (eviction
        keeps views), alive while anything refers to part of it: the live cache (what a chunk starting after
        the clip would see) and, under checkpointing, every chunk's recompute closure (what that chunk saw)."""

        def seen_from(frame: int) -> set[int]:
            visible = self.layout.visible(torch.tensor([frame]), torch.arange(frame))[0]
            return set(torch.nonzero(visible).flatten().tolist())

        seen = seen_from(self.latent_frames)
        if checkpointing:
            for chunk in range(self.num_chunks):
                seen |= seen_from(self.chunk_start(chunk))
        return sum(n for start, n in self.cache_segments() if seen & set(range(start, start + n)))


def token_geometry(cfg: ExperimentConfig) -> TokenGeometry:
    """Wan VAE: 8× spatial (and 1 + (F−1)/4 latent frames); identity codec: pixels."""
    spatial = cfg.spatial_factor
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
# one block of a forward without autograd: fp32 norm in/out, modulated input, FFN hidden + GELU output, K/V
NO_GRAD_WORKING_SET = SavedPerBlock(fp32=2, compute=1, ffn=2, kv=2, text_fp32=0, text_compute=0)
TIMESTEP_PROJ = 6  # a per-token timestep's [B, S, 6·D] modulation input, shared by every block (compute dtype)
BACKWARD_RESIDUAL_FP32 = 2  # without checkpointing: the residual stream's gradient, in and out of a block
HEAD_TAP_COMPUTE = 3  # discriminator query head per tap: LayerNorm output (the K/V projection's input), K and V


def head_tap_bytes(compute_bytes: int) -> int:
    """Bytes per token·D a query head keeps for its tap: :data:`HEAD_TAP_COMPUTE` tensors in the compute dtype,
    + the fp32 copy its ``FP32LayerNorm`` makes of a bf16 input (measured with ``saved_tensors_hooks``: 12 B
    in fp32, 10 B with bf16 weights under autocast). The tapped block's output is the next block's input, kept
    anyway; only the last tap's is not (its block is the last one D keeps): one more compute tensor."""
    return HEAD_TAP_COMPUTE * compute_bytes + (FP32 if compute_bytes < FP32 else 0)


@dataclass(frozen=True)
class WanShape:
    dim: int
    ffn_dim: int
    freq_dim: int
    num_layers: int
    block_params: int
    root_params: int

    @classmethod
    def of(cls, model: ModelConfig, num_layers: int | None = None, extra_root_params: int = 0,
           condition_channels: int = 0, image_dim: int = 0) -> WanShape:  # fmt: skip
        return cls(
            dim=model.num_attention_heads * model.attention_head_dim,
            ffn_dim=model.ffn_dim,
            freq_dim=model.freq_dim,
            num_layers=model.num_layers if num_layers is None else num_layers,
            block_params=wan_block_params(model, image_dim),
            root_params=wan_root_params(model, condition_channels, image_dim) + extra_root_params,
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
    if fwd.head_taps:
        per_token += head_tap_bytes(compute_bytes) * fwd.head_taps + compute_bytes
    return b * dim * s * per_token


def graph_bytes(fwd: GraphForward, compute_bytes: int, checkpointing: bool) -> float:
    """Activations ``fwd`` keeps until its backward."""
    if fwd.grad == "none":  # only the heads (frozen backbone, discriminator update) keep tensors
        return outside_blocks_bytes(replace(fwd, output_used=False, per_token_timestep=False), compute_bytes)
    if checkpointing:  # each block's inputs; the cached context is the KV cache's, held once (kv_cache_bytes)
        per_token = fwd.shape.num_layers + (TIMESTEP_PROJ if fwd.per_token_timestep else 0)
        blocks = per_token * fwd.batch * fwd.tokens * fwd.shape.dim * compute_bytes
    else:
        blocks = fwd.shape.num_layers * block_bytes(fwd, SAVED_PER_BLOCK[fwd.grad], compute_bytes)
    return blocks + outside_blocks_bytes(fwd, compute_bytes)


def backward_working_set_bytes(fwd: GraphForward, compute_bytes: int, checkpointing: bool = True) -> float:
    """Memory a backward needs on top of the graph (module docstring): under checkpointing one block's full
    activations, recomputed (+ a per-token timestep's modulation gradient, accumulated over the blocks, and its
    fp32 per-block part); without, the saved activations are freed as the backward goes, and the residual
    stream's gradient in and out of the block (+ the modulation's) is what comes on top."""
    if fwd.grad == "none":
        return 0.0
    units = fwd.batch * fwd.tokens * fwd.shape.dim
    if not checkpointing:
        return FP32 * (BACKWARD_RESIDUAL_FP32 + (1 if fwd.per_token_timestep else 0)) * units
    extra = (TIMESTEP_PROJ * compute_bytes + 2 * FP32) * units if fwd.per_token_timestep else 0.0
    return block_bytes(fwd, SAVED_PER_BLOCK[fwd.grad], compute_bytes) + extra


def no_grad_working_set_bytes(fwd: GraphForward, compute_bytes: int) -> float:
    """Peak inside one block of a forward without autograd (also a checkpointed block's forward): fp32 norm input
    and output, modulated input, FFN hidden and GELU output, K/V over the visible keys (+ a per-token timestep's
    shared modulation input)."""
    shared = TIMESTEP_PROJ * compute_bytes * fwd.batch * fwd.tokens * fwd.shape.dim if fwd.per_token_timestep else 0
    return block_bytes(fwd, NO_GRAD_WORKING_SET, compute_bytes) + shared


# ---- models and phases of each stage ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model of the stage and how its parameters are held (module docstring conventions)."""

    name: str
    role: str  # shown in the table
    shape: WanShape | None  # a Wan transformer's shape (graphs); None for the text encoder and the VAE
    num_params: int
    trained_params: int
    ema: bool = False
    frozen_bytes: int = FP32  # bytes per frozen parameter: compute dtype (add_frozen), fp32 (VAE, add_model)
    sharded: bool = True  # FSDP2 shards it when N > 1 (the VAE and the tiny text encoder are replicated)
    block_params: int = 0  # largest FSDP unit, and the root's own parameters (from ``shape`` for Wan models)
    root_params: int = 0

    @property
    def fsdp_block_params(self) -> int:
        return self.shape.block_params if self.shape is not None else self.block_params

    @property
    def fsdp_root_params(self) -> int:
        return self.shape.root_params if self.shape is not None else self.root_params


@dataclass
class Phase:
    """A moment of the training step: the models held, the graphs alive together, no-grad forwards, the KV cache,
    and which trained models' FSDP roots are gathered (frozen models' roots always are: module docstring)."""

    name: str
    graphs: list[GraphForward] = field(default_factory=list)
    no_grad: list[GraphForward] = field(default_factory=list)  # run one after another: only the largest counts
    kv_cache_bytes: float = 0.0
    backward: bool = True
    resident: tuple[str, ...] | None = None  # models on the GPU in this phase (None = all of the stage)
    roots: tuple[str, ...] = ()  # trained models whose root ran a forward and not yet its backward

    def holds(self, name: str) -> bool:
        return self.resident is None or name in self.resident


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


def text_encoder_spec(cfg: ExperimentConfig, opts: PlanOptions) -> ModelSpec:
    """umT5 (frozen, compute dtype, sharded by ``UMT5Block``) or the CPU presets' tiny encoder (buffers,
    replicated: no shard units)."""
    c = opts.compute_bytes
    if cfg.text.kind == "umt5":
        config, source = umt5_config(cfg)
        return ModelSpec(
            "text encoder",
            f"frozen umT5, {_dtype_name(c)}, sharded by block ({source})",
            None,
            umt5_encoder_params(config),
            0,
            frozen_bytes=c,
            block_params=umt5_block_params(config),
            root_params=umt5_root_params(config),
        )
    num = tiny_text_encoder_params(cfg.text.dim, cfg.text.max_length)
    return ModelSpec("text encoder", f"frozen tiny (buffers), {_dtype_name(c)}, replicated", None, num, 0,
                     frozen_bytes=c, sharded=False)  # fmt: skip


def vae_spec(cfg: ExperimentConfig) -> ModelSpec | None:
    """The Wan VAE: frozen, fp32 (Wan runs its VAE in fp32), replicated (no shard units); identity codec: none."""
    if cfg.codec.kind != "wan_vae":
        return None
    num, source = wan_vae_params(cfg)
    return ModelSpec("VAE", f"frozen Wan VAE, fp32, replicated ({source})", None, num, 0, sharded=False)


def stage_models(cfg: ExperimentConfig, stage: str, opts: PlanOptions) -> list[ModelSpec]:
    """The models a stage holds on the GPU, in table order (the Stage I teacher only during ODE-pair generation)."""
    model, c = cfg.model, opts.compute_bytes
    channels, image_dim, clip, clip_source = wan_i2v_parts(cfg)
    full = WanShape.of(model, condition_channels=channels, image_dim=image_dim)
    total = wan_params(model, condition_channels=channels, image_dim=image_dim)
    ema = opts.ema
    frozen = f"frozen, {_dtype_name(c)}, sharded by block"
    if stage == "stage1":
        wan = [
            ModelSpec("student", "trained", full, total, total, ema),
            ModelSpec("teacher", frozen + "; ODE-pair generation only", full, total, 0, frozen_bytes=c),
        ]
    elif stage == "stage2":
        wan = [
            ModelSpec("generator", "trained", full, total, total, ema),
            ModelSpec("critic", "trained", full, total, total),
            ModelSpec("teacher", frozen + " (real score)", full, total, 0, frozen_bytes=c),
        ]
    else:
        taps = discriminator_taps(model.num_layers, opts.disc_taps)
        heads = discriminator_head_params(full.dim, len(taps), opts.disc_queries)
        # D from the T2V backbone (stage3.disc_pretrained) has no I2V parts; from the teacher it has the teacher's
        d_channels, d_image = (0, 0) if getattr(cfg.stage3, "disc_pretrained", None) else (channels, image_dim)
        disc_shape = WanShape.of(model, taps[-1] + 1, heads, d_channels, d_image)
        disc_total = wan_params(model, taps[-1] + 1, d_channels, d_image) + heads
        frozen_backbone = opts.frozen_disc_backbone
        wan = [
            ModelSpec("generator", "trained", full, total, total, ema),
            ModelSpec(
                "discriminator",
                "frozen fp32 backbone + trained heads" if frozen_backbone else "trained",
                disc_shape,
                disc_total,
                heads if frozen_backbone else disc_total,
            ),
        ]
    vae = vae_spec(cfg)
    image_encoder = []
    if clip is not None:  # Wan I2V: the CLIP image encoder, frozen like umT5 (add_frozen shards CLIPEncoderLayer)
        num, layer = clip_vision_params(clip)
        image_encoder = [ModelSpec("image encoder", f"frozen CLIP vision, {_dtype_name(c)}, sharded by layer "
                                   f"({clip_source})", None, num, 0, frozen_bytes=c, block_params=layer,
                                   root_params=num - clip["num_hidden_layers"] * layer)]  # fmt: skip
    return [*wan, text_encoder_spec(cfg, opts), *image_encoder, *([vae] if vae is not None else [])]


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


def kv_cache_bytes(shape: WanShape, geo: TokenGeometry, batch: int, compute_bytes: int, checkpointing: bool) -> float:
    """KV cache alive at the end of the rollout, held once: ``2 · layers · b · D · c · tokens`` of the segments
    still referred to (:meth:`TokenGeometry.held_cache_frames`)."""
    tokens = geo.held_cache_frames(checkpointing) * geo.tokens_per_frame
    return 2 * shape.num_layers * tokens * shape.dim * compute_bytes * batch


def guided_rows(batch: int, guidance_scale: float) -> int:
    """Rows of one teacher call: conditional + unconditional with CFG, the conditional alone at scale 1
    (rollout.guided_velocity skips the unconditional pass there)."""
    return batch if guidance_scale == 1.0 else 2 * batch


def stage_phases(cfg: ExperimentConfig, stage: str, models: list[ModelSpec], opts: PlanOptions) -> list[Phase]:
    """The phases of one training step (module docstring)."""
    geo = token_geometry(cfg)
    b, clip, text = opts.batch_per_gpu, geo.clip_tokens, geo.text_tokens
    shapes = {m.name: m.shape for m in models}
    others = tuple(m.name for m in models if m.shape is None)  # text encoder, VAE: resident in every phase
    if stage == "stage1":
        student = GraphForward(
            "student", shapes["student"], clip, b, "params", text_tokens=text, per_token_timestep=True
        )
        teacher = GraphForward(
            "teacher",
            shapes["teacher"],
            clip,
            guided_rows(b, cfg.sampling.guidance_scale),
            "none",
            text_tokens=text,
            per_token_timestep=True,
        )  # per-frame timesteps (context frames at 0)
        return [
            Phase("ODE-pair generation", no_grad=[teacher], backward=False, resident=("teacher", *others)),
            Phase("student update", graphs=[student], resident=("student", *others), roots=("student",)),
        ]

    gen = rollout_graphs("generator", shapes["generator"], geo, b)
    # Under checkpointing the chunks' recompute closures hold the cache's segments until the generator's backward;
    # without, the cache is dropped when the rollout returns (SDPA saved its own K/V copies: block formula).
    held = kv_cache_bytes(shapes["generator"], geo, b, opts.compute_bytes, opts.grad_checkpointing)
    cache_in_backward = held if opts.grad_checkpointing else 0.0
    # the last chunk's block running in forward: a checkpointed block frees its activations as a no-grad one does
    running = [replace(gen[-1], grad="none")] if opts.grad_checkpointing else []
    if stage == "stage2":
        teacher = GraphForward(
            "teacher",
            shapes["teacher"],
            clip,
            guided_rows(b, cfg.stage2.guidance_scale),
            "none",
            text_tokens=text,
            per_token_timestep=True,
        )
        critic = GraphForward("critic", shapes["critic"], clip, b, "params", text_tokens=text, per_token_timestep=True)
        return [
            # (a) critic: a no-grad rollout (the generator's root stays gathered), then the critic's update
            Phase("critic update", graphs=[critic], roots=("generator", "critic")),
            # (b) generator: the rollout with gradients, the no-grad scores, the generator's backward
            Phase(
                "rollout end", graphs=gen, no_grad=running, kv_cache_bytes=held, backward=False, roots=("generator",)
            ),  # fmt: skip
            Phase(
                "DMD scores + generator backward",
                graphs=gen,
                no_grad=[teacher, replace(critic, grad="none")],
                kv_cache_bytes=cache_in_backward,
                roots=("generator", "critic"),
            ),
        ]

    # the trainer leaves D's weights trainable in the generator's update (their gradients are dropped later)
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
    disc_in_g = replace(disc, grad="input") if opts.frozen_disc_backbone else disc
    both = ("generator", "discriminator")
    return [
        # (a) D: a no-grad rollout for the fake clip (the generator's root stays gathered), D's graphs, backward
        Phase("discriminator update", graphs=[disc_update] * opts.disc_graphs, roots=both),
        # (b) G: the rollout with gradients, D on the fake clip, one backward through both
        Phase("rollout end", graphs=gen, no_grad=running, kv_cache_bytes=held, backward=False, roots=("generator",)),
        Phase(
            "generator loss (D on the fake clip) + backward",
            graphs=[*gen, disc_in_g],
            kv_cache_bytes=cache_in_backward,
            roots=both,
        ),
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
    rows: list[ModelMemory]  # every model of the stage; one not held in the peak phase has zero bytes
    kv_cache_bytes: float  # in the peak phase
    buffer_bytes: float  # FSDP2 unsharded buffers in the peak phase (the sum of ``buffer_parts``)
    peak_phase: str
    phase_bytes: dict[str, float]  # total per GPU of every phase (resident state + activations + KV + buffers)
    tokens: dict[str, int]
    notes: list[str] = field(default_factory=list)
    buffer_parts: dict[str, float] = field(default_factory=dict)  # gathered blocks + gradient block, roots

    @property
    def state_bytes(self) -> float:
        """Parameters, gradients and optimizer state of the models held in the peak phase (sharded)."""
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

    def row(self, name: str) -> ModelMemory:
        return next(r for r in self.rows if r.name == name)

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
            f"{self.tokens['kv_cache']} in the KV cache window, {self.tokens['kv_held']} in the KV cache held",
            "",
            f"| model ({unit} per GPU) | role | parameters | params | grads | optimizer | activations | total |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r.name} | {r.role} | {_count(r.num_params)} | {fmt(r.params_bytes)} | {fmt(r.grads_bytes)} "
                f"| {fmt(r.optimizer_bytes)} | {fmt(r.activation_bytes)} | {fmt(r.total_bytes)} |"
            )
        parts = self.buffer_parts or {"": self.buffer_bytes}
        lines += [
            f"| KV cache (rollout, held once) | | | | | | {fmt(self.kv_cache_bytes)} | {fmt(self.kv_cache_bytes)} |",
            *(f"| FSDP2 unsharded: {name} | | | | | | | {fmt(value)} |" for name, value in parts.items()),
            f"| **total per GPU** | | | {column('params_bytes')} | {column('grads_bytes')} "
            f"| {column('optimizer_bytes')} | {fmt(self.activation_bytes)} | **{fmt(total)}** |",
            "",
            f"- per GPU: {fmt(total)} {unit} of a {self.gpu_bytes / GIB:g} GiB GPU "
            f"({100 * total / self.gpu_bytes:.0f} %): " + ("fits" if self.fits else "does NOT fit"),
            f"- peak phase: {self.peak_phase}; every phase's total per GPU ({unit}): "
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


def _dtype_name(nbytes: int) -> str:
    return "fp32" if nbytes == FP32 else "bf16"


def model_state_row(spec: ModelSpec, opts: PlanOptions) -> ModelMemory:
    """Parameters / gradients / optimizer state of one model, sharded or not (module docstring conventions)."""
    n = opts.num_gpus if spec.sharded else 1
    frozen = spec.num_params - spec.trained_params
    optimizer_per_param = 2 * FP32 + (FP32 if spec.ema else 0)
    return ModelMemory(
        name=spec.name,
        role=spec.role + (" (+EMA)" if spec.ema else ""),
        num_params=spec.num_params,
        trained_params=spec.trained_params,
        params_bytes=(spec.trained_params * FP32 + frozen * spec.frozen_bytes) / n,
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
    extras = [(f.model, backward_working_set_bytes(f, c, ckpt)) for f in phase.graphs if phase.backward]
    extras += [(f.model, no_grad_working_set_bytes(f, c)) for f in phase.no_grad]
    if extras:  # one block at a time: only the largest working set adds to the graphs
        name, value = max(extras, key=lambda item: item[1])
        per_model[name] = per_model.get(name, 0.0) + value
    return {name: value / opts.sequence_parallel for name, value in per_model.items()}


def fsdp_buffer_parts(phase: Phase, models: list[ModelSpec], opts: PlanOptions) -> dict[str, float]:
    """Unsharded FSDP2 buffers in ``phase`` (none on one GPU: nothing is sharded): the running and prefetched
    blocks (+ one block's fp32 gradients in a backward), and the gathered roots (module docstring)."""
    if opts.num_gpus == 1:
        return {"blocks": 0.0, "roots": 0.0}
    c = opts.compute_bytes
    sharded = [m for m in models if m.sharded and phase.holds(m.name)]
    active = {f.model for f in phase.graphs + phase.no_grad}
    running = [m for m in sharded if m.name in active]
    block = max((m.fsdp_block_params for m in running), default=0)
    trains = phase.backward and any(m.trained_params for m in running)
    blocks = 2 * block * c + (block * FP32 if trains else 0)
    gathered = [m for m in sharded if m.trained_params == 0 or m.name in phase.roots]
    roots = sum(m.fsdp_root_params * (m.frozen_bytes if m.trained_params == 0 else c) for m in gathered)
    return {"blocks": float(blocks), "roots": float(roots)}


def fsdp_buffer_bytes(phase: Phase, models: list[ModelSpec], opts: PlanOptions) -> float:
    return sum(fsdp_buffer_parts(phase, models, opts).values())


def plan_memory(
    cfg: ExperimentConfig,
    stage: str,
    num_gpus: int,
    batch_per_gpu: int | None = None,
    grad_checkpointing: bool | None = None,
    gpu_gb: float = 80.0,
    frozen_disc_backbone: bool | None = None,
    disc_graphs: int | None = None,
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
        disc_graphs: discriminator graphs alive together in its update; default as the trainer does: 4 (real,
            fake and their approximate-R1/R2 perturbed forwards) when ``stage3.lam > 0``, else 2.
        sequence_parallel: context-parallel degree (each GPU holds 1/k of every sequence's activations).
        mixed_precision: override ``train.mixed_precision`` ("no" = fp32 compute, "bf16"/"fp16" = 2-byte compute).
        ema: keep an fp32 EMA copy of the generator/student; default ``train.ema_decay is not None``.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed: {STAGES}")
    check_pretrained_sizes(cfg)  # the sizes planned with must be the checkpoint's (when its path exists here)
    stage3 = getattr(cfg, "stage3", None)
    if disc_graphs is None:
        disc_graphs = 4 if getattr(stage3, "lam", 0.0) > 0 else 2
    if num_gpus < 1 or sequence_parallel < 1 or disc_graphs < 1:
        raise ValueError(
            f"need num_gpus, sequence_parallel, disc_graphs >= 1, got {num_gpus}, {sequence_parallel}, {disc_graphs}"
        )
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
    states = {m.name: model_state_row(m, opts) for m in models}

    def state_of(phase: Phase) -> float:
        return sum(r.params_bytes + r.grads_bytes + r.optimizer_bytes for r in states.values() if phase.holds(r.name))

    totals = {}
    for phase in phases:
        acts = phase_activations(phase, opts)
        totals[phase.name] = (
            state_of(phase)
            + sum(acts.values())
            + phase.kv_cache_bytes / opts.sequence_parallel
            + fsdp_buffer_bytes(phase, models, opts)
        )
    peak = max(phases, key=lambda p: totals[p.name])
    peak_acts = phase_activations(peak, opts)
    rows = []
    for name, row in states.items():
        if not peak.holds(name):  # e.g. the Stage I teacher while the student trains: freed
            row = replace(row, role=row.role + " (not held in the peak phase)", params_bytes=0.0, grads_bytes=0.0,
                          optimizer_bytes=0.0)  # fmt: skip
        row.activation_bytes = peak_acts.get(name, 0.0)
        rows.append(row)
    geo = token_geometry(cfg)
    held_frames = geo.held_cache_frames(opts.grad_checkpointing)
    notes = []
    if stage == "stage1":
        other = max((p for p in phases if p is not peak), key=lambda p: totals[p.name])
        notes.append(
            f"Stage I plans the larger of its two phases: {peak.name} ({totals[peak.name] / GIB:,.2f} GiB) over "
            f"{other.name} ({totals[other.name] / GIB:,.2f} GiB); the teacher is on the GPU only while it "
            "generates the ODE pairs (the student stays on the CPU until then)"
        )
    if peak.kv_cache_bytes:
        why = (
            "every segment a chunk saw, kept by the chunks' recompute closures until the backward"
            if opts.grad_checkpointing
            else "the live window at the rollout's end"
        )
        notes.append(
            f"KV cache held once: {held_frames} of {geo.latent_frames} latent frames' K/V ({why}; "
            "2·layers·b·D·bytes per token)"
        )
    buffers = fsdp_buffer_parts(peak, models, opts)
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
        buffer_bytes=sum(buffers.values()),
        peak_phase=peak.name,
        phase_bytes=totals,
        tokens=dict(
            clip=geo.clip_tokens,
            chunk=geo.chunk_tokens,
            kv_cache=geo.cached_frames_at_end() * geo.tokens_per_frame,
            kv_held=held_frames * geo.tokens_per_frame,
        ),
        notes=notes,
        buffer_parts={
            "two all-gathered blocks (+ a gradient block in a backward)": buffers["blocks"],
            "roots kept gathered (frozen: since their first forward; trained: forward to backward)": buffers["roots"],
        },
    )
