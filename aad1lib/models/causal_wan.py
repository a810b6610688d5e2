"""CausalWanTransformer3DModel: diffusers' Wan 2.1 transformer with block-causal attention and a KV cache.

Same module tree and config as ``diffusers.WanTransformer3DModel``, so Wan 2.1 checkpoints load with
``from_pretrained(local_dir)`` and our checkpoints load back into the stock class. Called like the
stock model it *is* the stock model (bidirectional teacher). Extra keyword arguments turn on:

- ``chunk_layout``: block-causal attention over chunks (+ sink frames, sliding window) — Stage I's
  Diffusion-Forcing student and the causal discriminator ablation;
- ``timestep`` of shape ``[B, F]``: one noise level per frame (Diffusion Forcing);
- ``kv_cache`` / ``frame_offset`` / ``update_cache``: streaming, chunk by chunk, with rotary
  positions at the chunk's absolute frame offset (Self-Forcing rollout and deployment).

How it plugs into diffusers (docs/design.md §4): each block's ``attn1`` gets a :class:`CausalWanAttnProcessor`,
and ``rope`` is replaced by :class:`OffsetWanRotaryPosEmbed` (no parameters, so state dicts are
unchanged). The per-call attention context (mask, cached keys) rides along with the rotary
embedding the stock forward hands to every block, so gradient checkpointing recomputes with it.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, _get_qkv_projections

from .. import flow
from ..chunking import ChunkLayout
from .kv_cache import KVCache

_WAN_CLASS_NAMES = ("WanTransformer3DModel", "CausalWanTransformer3DModel")


@dataclass
class BlockCausalState:
    """What self-attention needs for one block-causal / streaming call, held by the processors.

    Processor state, not an argument: the stock blocks pass only ``rotary_emb`` to ``attn1``, and anything
    riding in it is rebuilt by FSDP2's mixed-precision input cast (``type(x)(generator)``) and cast to bf16
    (docs/design.md §7). diffusers' own processors keep per-call state the same way. Gradient
    checkpointing re-installs the state of the call being recomputed (:func:`checkpoint_block`).
    """

    mask: torch.Tensor | None  # bool [Sq, Sk] (True = attend); None = full attention or flex
    frame_mask: torch.Tensor | None  # bool [Fq, Fk] frame-level visibility; None = all visible
    token_frame_pos: tuple[torch.Tensor, torch.Tensor] | None  # row/col of each q/k token in frame_mask
    kv_cache: KVCache | None
    past: list[list[tuple[torch.Tensor, torch.Tensor]]] | None  # per layer: the cache's K/V segments (shared)
    update_cache: bool


def _apply_rotary_emb(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    # Same arithmetic as diffusers' WanAttnProcessor (interleaved pairs), so outputs are bit-identical.
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class CausalWanAttnProcessor:
    """Self-attention of a Wan block with an optional block-causal mask and KV cache.

    With no mask and no cache it computes exactly what ``WanAttnProcessor`` computes. The attention
    backend is per processor (``model.set_attention_backend(name)``), never a process-wide global.
    """

    _attention_backend = None
    _parallel_config = None

    def __init__(self, layer_idx: int):
        self.layer_idx = layer_idx
        self.state: BlockCausalState | None = None  # set by the model for one call; None = stock attention

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        # hidden_states: [B, Sq, dim] -> query/key/value: [B, S, heads, head_dim]
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = _apply_rotary_emb(query, *rotary_emb)
            key = _apply_rotary_emb(key, *rotary_emb)

        ctx = self.state
        if ctx is not None and ctx.kv_cache is not None:
            if ctx.update_cache:
                ctx.kv_cache.stage(self.layer_idx, key, value)  # keys already roped at absolute frames
            past = ctx.past[self.layer_idx]
            if past:  # concatenated here, inside the (recomputed) block: chunks share the cached segments
                key = torch.cat([*(k.to(key.dtype) for k, _ in past), key], dim=1)  # [B, S_cache + Sq, heads, hd]
                value = torch.cat([*(v.to(value.dtype) for _, v in past), value], dim=1)

        hidden_states = self._attend(query, key, value, ctx)
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states

    def _attend(self, query, key, value, ctx):
        backend = self._attention_backend
        backend_name = getattr(backend, "value", backend)
        if ctx is not None and ctx.frame_mask is not None and backend_name == "flex":
            return _flex_block_causal_attention(query, key, value, ctx)
        mask = ctx.mask if ctx is not None else None
        if mask is not None:
            if backend_name not in (None, "native"):
                raise ValueError(
                    f"attention backend {backend_name!r} takes no mask; block-causal attention needs "
                    "'native' (SDPA) or 'flex'"
                )
            # SDPA with a boolean mask: on CPU this costs about the same as no mask (docs/design.md §4),
            # and it has a backward (flex attention has none on CPU).
            query, key, value = (t.transpose(1, 2) for t in (query, key, value))  # [B, heads, S, head_dim]
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
            return out.transpose(1, 2)
        return dispatch_attention_fn(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, backend=backend)


def _flex_block_causal_attention(query, key, value, ctx: BlockCausalState):
    """GPU path: flex attention with a BlockMask built from token->frame ids (no dense [S, S] mask)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    frame_mask = ctx.frame_mask.to(query.device)  # [Fq, Fk]
    q_pos, k_pos = (p.to(query.device) for p in ctx.token_frame_pos)  # [Sq], [Sk]

    def mask_mod(b, h, q_idx, kv_idx):
        return frame_mask[q_pos[q_idx], k_pos[kv_idx]]

    block_mask = create_block_mask(
        mask_mod, None, None, query.shape[1], key.shape[1], device=query.device, _compile=True
    )
    out = flex_attention(*(t.transpose(1, 2) for t in (query, key, value)), block_mask=block_mask)
    return out.transpose(1, 2)


class OffsetWanRotaryPosEmbed(WanRotaryPosEmbed):
    """Wan's 3-D rope with the temporal axis starting at an absolute frame offset.

    At offset 0 it returns the stock embedding.
    """

    def __init__(self, attention_head_dim, patch_size, max_seq_len, theta: float = 10000.0):
        super().__init__(attention_head_dim, patch_size, max_seq_len, theta)
        self.frame_offset = 0

    def forward(self, hidden_states: torch.Tensor):
        if self.frame_offset == 0:
            return super().forward(hidden_states)
        return self._offset_freqs(hidden_states, self.frame_offset)

    def _offset_freqs(self, hidden_states, offset):
        _, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        ppf, pph, ppw = num_frames // p_t, height // p_h, width // p_w
        if offset + ppf > self.max_seq_len:
            raise ValueError(f"frames up to {offset + ppf} exceed rope_max_seq_len={self.max_seq_len} of this model")
        split_sizes = [self.t_dim, self.h_dim, self.w_dim]
        cos_f, cos_h, cos_w = self.freqs_cos.split(split_sizes, dim=1)
        sin_f, sin_h, sin_w = self.freqs_sin.split(split_sizes, dim=1)

        def grid(f, h, w):  # -> [1, ppf*pph*ppw, 1, head_dim]
            f = f[offset : offset + ppf].view(ppf, 1, 1, -1).expand(ppf, pph, ppw, -1)
            h = h[:pph].view(1, pph, 1, -1).expand(ppf, pph, ppw, -1)
            w = w[:ppw].view(1, 1, ppw, -1).expand(ppf, pph, ppw, -1)
            return torch.cat([f, h, w], dim=-1).reshape(1, ppf * pph * ppw, 1, -1)

        return grid(cos_f, cos_h, cos_w), grid(sin_f, sin_h, sin_w)


class CausalWanTransformer3DModel(WanTransformer3DModel):
    """Wan 2.1 transformer that can run bidirectional (stock), block-causal, or streaming with a KV cache."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.rope = OffsetWanRotaryPosEmbed(cfg.attention_head_dim, cfg.patch_size, cfg.rope_max_seq_len)
        for i, block in enumerate(self.blocks):
            block.attn1.set_processor(CausalWanAttnProcessor(layer_idx=i))

    # diffusers builds models from config by reading the __init__ signature: keep the stock one.
    __init__.__signature__ = inspect.signature(WanTransformer3DModel.__init__)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a (Causal)WanTransformer3DModel checkpoint from a local folder; refuse other architectures."""
        _check_wan_checkpoint(pretrained_model_name_or_path, kwargs.get("subfolder"))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def set_attention_backend(self, backend: str) -> None:
        """Attention backend of THIS model's processors (e.g. ``"flex"``, ``"flash"``, ``"native"``).

        diffusers' version also makes the backend the process-wide default, which leaks into every other model
        (a teacher, a discriminator, a stock Wan); we restore that default.
        """
        from diffusers.models.attention_dispatch import _AttentionBackendRegistry

        default = _AttentionBackendRegistry._active_backend
        try:
            super().set_attention_backend(backend)
        finally:
            _AttentionBackendRegistry.set_active_backend(default)

    def new_kv_cache(self, layout: ChunkLayout, detach: bool = True) -> KVCache:
        return KVCache(len(self.blocks), layout, detach=detach)

    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict | None = None,
        *,
        chunk_layout: ChunkLayout | None = None,
        kv_cache: KVCache | None = None,
        frame_offset: int = 0,
        update_cache: bool = False,
        condition: torch.Tensor | None = None,
        anchor: torch.Tensor | None = None,
    ):
        """Stock Wan forward plus block-causal attention, per-frame timesteps, streaming and Wan I2V conditioning.

        Args:
            hidden_states: ``[B, C, F, H, W]`` noisy latents (or pixels) of this call's frames.
            timestep: ``[B]`` (one level per clip), ``[B, F]`` (per frame) or ``[B, S]`` (per token),
                in Wan's 0..1000 scale.
            encoder_hidden_states: ``[B, L, text_dim]`` text embeddings.
            chunk_layout: block-causal layout; None = bidirectional.
            kv_cache: streaming cache of earlier chunks (requires ``chunk_layout``).
            frame_offset: absolute index of this call's first frame (rope position, cache order).
            update_cache: write this call's keys/values into ``kv_cache`` (the clean cache write).
            condition: ``[B, C_cond, F_clip, H, W]`` Wan 2.1 I2V condition of the WHOLE clip (mask + first-frame
                latents, :func:`aad1lib.models.i2v.wan_i2v_condition`); this call's frames
                ``[frame_offset, frame_offset + F)`` are concatenated after ``hidden_states`` on channels.
            anchor: ``[B, C, Fc, H, W]`` the clip's clean context latents (``model.residual_to_first_frame``):
                every frame from index ``Fc`` on is modelled as its difference to the last of them
                (:class:`FirstFrameResidual`); the output stays the velocity of the frames themselves.
        """
        # 0. Wan I2V: this call's slice of the clip's condition, on channels (the cache write gets it too)
        if condition is not None:
            frames = hidden_states.shape[2]
            if condition.ndim != 5 or condition.shape[2] < frame_offset + frames:
                raise ValueError(
                    f"condition {tuple(condition.shape)} must be [B, C, F_clip, H, W] covering frames "
                    f"{frame_offset}..{frame_offset + frames - 1}"
                )
            sliced = condition[:, :, frame_offset : frame_offset + frames].to(hidden_states.dtype)
            hidden_states = torch.cat([hidden_states, sliced], dim=1)
        # 1. Validate inputs before any computation
        batch, channels, num_frames, height, width = self._check_inputs(hidden_states, timestep, encoder_hidden_states)
        p_t, p_h, p_w = self.config.patch_size
        tokens_per_frame = (height // p_h) * (width // p_w)
        if kv_cache is not None:
            if chunk_layout is None:
                raise ValueError("kv_cache requires chunk_layout (the cache evicts by the layout's window)")
            if kv_cache.num_layers != len(self.blocks):
                raise ValueError(f"kv_cache has {kv_cache.num_layers} layers, model has {len(self.blocks)}")
            if frame_offset != kv_cache.next_frame:
                raise ValueError(
                    f"frame_offset={frame_offset} but the cache holds frames up to {kv_cache.next_frame - 1}: "
                    "chunks must be streamed in order"
                )
        if chunk_layout is not None:
            if p_t != 1:
                raise ValueError("block-causal attention needs a temporal patch size of 1")
            if kv_cache is None and frame_offset == 0:
                chunk_layout.check_num_frames(num_frames)
            else:
                chunk_layout.check_span(frame_offset, num_frames)

        # 1b. First-frame residual parameterisation: shift the input now, the output after the forward
        residual = None
        if anchor is not None:
            residual = FirstFrameResidual(anchor, timestep, frame_offset, num_frames, tokens_per_frame)
            hidden_states = residual.model_input(hidden_states)

        # 2. Per-frame timesteps [B, F] -> per-token [B, F * tokens_per_frame] (Diffusion Forcing)
        if timestep.ndim == 2 and timestep.shape[1] == num_frames // p_t:
            timestep = timestep.repeat_interleave(tokens_per_frame, dim=1)

        # 3. Attention context for this call: block mask and cached keys/values
        rope: OffsetWanRotaryPosEmbed = self.rope
        rope.frame_offset = frame_offset
        state = None
        if chunk_layout is not None:
            query_frames = torch.arange(frame_offset, frame_offset + num_frames // p_t)
            cached = kv_cache.token_frames if kv_cache is not None else torch.empty(0, dtype=torch.long)
            key_frames = torch.cat([torch.unique_consecutive(cached), query_frames])
            frame_mask = chunk_layout.visible(query_frames, key_frames)  # [Fq, Fk]
            mask = token_pos = None
            if bool(frame_mask.all()):
                frame_mask = None  # a streamed chunk sees its whole cache: no mask, any backend
            else:
                key_counts = torch.cat(
                    [
                        torch.unique_consecutive(cached, return_counts=True)[1],
                        torch.full_like(query_frames, tokens_per_frame),
                    ]
                )
                q_pos = torch.arange(len(query_frames)).repeat_interleave(tokens_per_frame)
                k_pos = torch.arange(len(key_frames)).repeat_interleave(key_counts)
                token_pos = (q_pos, k_pos)
                if self._attention_backend_name() != "flex":  # flex builds a sparse BlockMask instead
                    mask = frame_mask[q_pos][:, k_pos].to(hidden_states.device)  # [Sq, Sk]
            state = BlockCausalState(
                mask=mask,
                frame_mask=frame_mask,
                token_frame_pos=token_pos,
                kv_cache=kv_cache,
                past=[kv_cache.past(i) for i in range(len(self.blocks))] if kv_cache is not None else None,
                update_cache=update_cache and kv_cache is not None,
            )
        self._set_block_causal_state(state)

        # 4. The stock Wan forward (patchify, conditioning, blocks, unpatchify)
        try:
            out = super().forward(
                hidden_states,
                timestep,
                encoder_hidden_states,
                encoder_hidden_states_image=encoder_hidden_states_image,
                return_dict=return_dict,
                attention_kwargs=attention_kwargs,
            )
        except BaseException:
            if kv_cache is not None:
                kv_cache.discard_staged()
            raise
        finally:
            rope.frame_offset = 0
            self._set_block_causal_state(None)

        if residual is not None:  # the network predicted r0: the velocity of the frames themselves
            if return_dict:
                out.sample = residual.velocity(out.sample)
            else:
                out = (residual.velocity(out[0]), *out[1:])

        # 5. Commit the written chunk and evict what the next chunk can't see
        if kv_cache is not None and update_cache:
            kv_cache.commit(torch.arange(frame_offset, frame_offset + num_frames // p_t), tokens_per_frame)
        return out

    def _set_block_causal_state(self, state: BlockCausalState | None) -> None:
        for block in self.blocks:
            block.attn1.processor.state = state

    def enable_gradient_checkpointing(self, gradient_checkpointing_func=None) -> None:
        """diffusers' gradient checkpointing, with each block recomputed under the attention state of the call
        that ran it (the processors' state has moved on by the time backward recomputes)."""
        super().enable_gradient_checkpointing(gradient_checkpointing_func)
        inner = self._gradient_checkpointing_func
        self._gradient_checkpointing_func = lambda block, *args: checkpoint_block(inner, block, *args)

    def _attention_backend_name(self) -> str | None:
        backend = self.blocks[0].attn1.processor._attention_backend
        return getattr(backend, "value", backend)

    def _check_inputs(self, hidden_states, timestep, encoder_hidden_states):
        cfg = self.config
        if hidden_states.ndim != 5:
            raise ValueError(f"hidden_states must be [B, C, F, H, W], got shape {tuple(hidden_states.shape)}")
        batch, channels, num_frames, height, width = hidden_states.shape
        if channels != cfg.in_channels:
            hint = (
                " (a Wan I2V model: pass condition=wan_i2v_condition(...), model.i2v=wan_i2v)"
                if cfg.in_channels > (cfg.out_channels or cfg.in_channels)
                else ""
            )
            raise ValueError(
                f"hidden_states has {channels} channels, model expects in_channels={cfg.in_channels}{hint}"
            )
        p_t, p_h, p_w = cfg.patch_size
        if num_frames % p_t or height % p_h or width % p_w:
            raise ValueError(
                f"video F×H×W = {num_frames}×{height}×{width} is not divisible by patch_size {tuple(cfg.patch_size)}"
            )
        seq_len = (num_frames // p_t) * (height // p_h) * (width // p_w)
        if not (
            (timestep.ndim == 1 and timestep.shape[0] == batch)
            or (timestep.ndim == 2 and timestep.shape[0] == batch and timestep.shape[1] in (num_frames // p_t, seq_len))
        ):
            raise ValueError(
                f"timestep must be [B]={batch}, [B, F]=[{batch}, {num_frames // p_t}] or [B, S]=[{batch}, {seq_len}], "
                f"got shape {tuple(timestep.shape)}"
            )
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != batch:
            raise ValueError(
                f"text embeddings must be [B={batch}, L, {cfg.text_dim}], got {tuple(encoder_hidden_states.shape)}"
            )
        if encoder_hidden_states.shape[-1] != cfg.text_dim:
            raise ValueError(
                f"text embeddings have dim {encoder_hidden_states.shape[-1]}, model expects text_dim={cfg.text_dim}"
            )
        return batch, channels, num_frames, height, width


class FirstFrameResidual:
    """The first-frame residual parameterisation (``model.residual_to_first_frame``, docs/design.md §9).

    Frames at absolute index >= ``Fc`` (after the anchor's, a = the last anchor frame) are modelled as
    r = x - a: the network sees r_t = x_t - (1 - σ) a = (1 - σ) r0 + σε and predicts r0; the velocity the rest
    of the pipeline uses is v = ε - x0 = (r_t - r0_hat) / σ - a. A network that outputs 0 (zero-initialised
    output layer) samples copies of the first frame: learning starts at the copy baseline, not at noise.
    Context frames pass through unchanged (their output is ignored everywhere).
    """

    SIGMA_MIN = 1e-3  # the division by σ at clean frames (cache writes): their velocity is never used

    def __init__(self, anchor: torch.Tensor, timestep: torch.Tensor, frame_offset: int, num_frames: int,
                 tokens_per_frame: int):  # fmt: skip
        if anchor.ndim != 5:
            raise ValueError(f"anchor must be [B, C, Fc, H, W] context latents, got {tuple(anchor.shape)}")
        batch = anchor.shape[0]
        if timestep.ndim == 1:  # [B]
            timestep = timestep[:, None].expand(batch, num_frames)
        elif timestep.shape[1] != num_frames:  # [B, F * tokens_per_frame]
            timestep = timestep.reshape(batch, num_frames, tokens_per_frame)[:, :, 0]
        self.sigma = flow.timestep_to_sigma(timestep.float()).to(anchor.device)[:, None, :, None, None]  # [B,1,F,1,1]
        frames = torch.arange(frame_offset, frame_offset + num_frames, device=anchor.device)
        self.mask = (frames >= anchor.shape[2]).float()[None, None, :, None, None]  # [1, 1, F, 1, 1]
        self.anchor = anchor[:, :, -1:].float() * self.mask  # [B, C, F, H, W] on shifted frames, else 0

    def model_input(self, x_t: torch.Tensor) -> torch.Tensor:
        """x_t -> r_t = x_t - (1 - σ) a on the shifted frames."""
        self.r_t = x_t.float() - (1.0 - self.sigma) * self.anchor
        return self.r_t.to(x_t.dtype)

    def velocity(self, r0_hat: torch.Tensor) -> torch.Tensor:
        """The network's r0 prediction -> v = (r_t - r0_hat) / σ - a (shifted frames; others unchanged)."""
        v = (self.r_t - r0_hat.float()) / self.sigma.clamp_min(self.SIGMA_MIN) - self.anchor
        return torch.where(self.mask.bool(), v, r0_hat.float()).to(r0_hat.dtype)


def checkpoint_block(checkpoint_fn, block, *args):
    """Run ``checkpoint_fn(run, *args)`` (diffusers' checkpointing function) so that ``block`` runs — now and when
    backward recomputes it — with the block-causal state its processor holds now."""
    processor = block.attn1.processor
    state = processor.state

    def run(*inputs):
        saved, processor.state = processor.state, state
        try:
            return block(*inputs)
        finally:
            processor.state = saved

    return checkpoint_fn(run, *args)


def _check_wan_checkpoint(path, subfolder: str | None) -> None:
    """Refuse a local checkpoint of another architecture with a message that names it."""
    folder = Path(path) / (subfolder or "")
    config_file = folder / "config.json"
    if not folder.exists():
        raise FileNotFoundError(f"no checkpoint folder at {folder}")
    if not config_file.exists():
        raise FileNotFoundError(f"{folder} has no config.json: is it a diffusers model folder?")
    class_name = json.loads(config_file.read_text()).get("_class_name")
    if class_name not in _WAN_CLASS_NAMES:
        raise ValueError(
            f"{folder} holds a {class_name!r} checkpoint, not a Wan transformer ({' / '.join(_WAN_CLASS_NAMES)})"
        )
