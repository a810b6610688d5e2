"""Chunk-by-chunk generation with the KV cache: the deployment path and the Self-Forcing rollout.

For each chunk (Self-Forcing, Huang et al. 2025; CausVid, Yin et al. 2025):
1. start from noise and take ``len(sigmas) - 1`` few-step updates ("predict x0, re-noise to the next
   level"), attending to the cached context;
2. write the finished chunk into the cache with one more forward at timestep ``context_sigma``
   (0 = clean). A one-step model therefore spends 2 passes per chunk, a 4-step model 5.

I2V: the given first frame(s) are written into the cache first, as the context chunk (a sink).

Training (Stage II/III): ``grad_step`` picks the step whose x0 prediction keeps gradients (Self-Forcing's
random exit step); earlier steps and every cache write run without gradients, and the cache stores
detached keys, so memory grows with one graph per chunk, never with the history.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from . import flow
from .chunking import ChunkLayout
from .models.causal_wan import CausalWanTransformer3DModel
from .models.kv_cache import KVCache

# per-clip conditioning inputs of the model (Wan I2V; the first-frame anchor): both CFG branches get them, as
# diffusers' WanImageToVideoPipeline does (it drops only the text)
CONDITION_KWARGS = ("condition", "encoder_hidden_states_image", "anchor")


def cfg_rows(model_kwargs: dict, copies: int) -> dict:
    """``model_kwargs`` with the per-clip conditioning tensors repeated for ``copies`` stacked batches."""
    if copies == 1:
        return model_kwargs
    return {
        k: torch.cat([v] * copies) if k in CONDITION_KWARGS and v is not None else v for k, v in model_kwargs.items()
    }


@dataclass
class RolloutOutput:
    video: torch.Tensor  # [B, C, F_context + F_generated, H, W] context frames then generated chunks
    passes: int  # model forward passes spent (denoising steps + cache writes)
    kv_cache: KVCache


def guided_velocity(
    model: CausalWanTransformer3DModel,
    x: torch.Tensor,
    sigma: torch.Tensor,
    text: torch.Tensor,
    uncond_text: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    **model_kwargs,
) -> torch.Tensor:
    """Velocity of ``x`` ``[B, C, F, H, W]`` at ``sigma`` (``[B]`` or ``[B, F]``), with classifier-free guidance.

    With guidance the conditional and unconditional branches run as one batch of ``2B`` (so a KV cache
    used here holds ``2B`` rows).
    """
    timestep = flow.sigma_to_timestep(sigma)
    if uncond_text is None or guidance_scale == 1.0:
        return model(x, timestep, text, return_dict=False, **model_kwargs)[0]
    both = model(
        torch.cat([x, x]),
        torch.cat([timestep, timestep]),
        torch.cat([text, uncond_text]),
        return_dict=False,
        **cfg_rows(model_kwargs, 2),
    )[0]
    v_cond, v_uncond = both.chunk(2)
    return flow.classifier_free_guidance(v_cond, v_uncond, guidance_scale)


def stream_generate(
    model: CausalWanTransformer3DModel,
    layout: ChunkLayout,
    text: torch.Tensor,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    context: torch.Tensor | None = None,
    uncond_text: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    context_sigma: float = 0.0,
    grad_step: int | None = None,
    renoise: Callable[[torch.Tensor], torch.Tensor] | None = None,
    forced_frames: torch.Tensor | None = None,
    chunk_callback: Callable[[int, torch.Tensor, KVCache], None] | None = None,
    condition: dict | None = None,
) -> RolloutOutput:
    """Generate ``noise.shape[2] // frames_per_chunk`` chunks autoregressively.

    Args:
        layout: the generator's chunking (context frames, sink, window).
        text: ``[B, L, D]`` prompt embeddings.
        noise: ``[B, C, F_gen, H, W]`` initial noise of every generated frame (fixes the sample).
        sigmas: few-step levels ``[K + 1]`` ending at 0, e.g. ``[1, 0]`` for one step per chunk.
        context: ``[B, C, context_frames, H, W]`` clean I2V conditioning frames (required iff the
            layout has context frames).
        context_sigma: noise level of the cache write (0 = clean output, as in the paper).
        grad_step: index of the step whose x0 keeps gradients (None = no gradients at all).
        renoise: ``x0 -> noise`` for the re-noising between steps (default: fresh ``randn_like``).
        forced_frames: ``[B, C, F_gen, H, W]`` clean frames to write into the cache instead of the generated
            chunks (teacher forcing: CausVid-style training on ground-truth / ODE context).
        chunk_callback: called as ``f(chunk_index, x0_chunk, kv_cache)`` once a chunk is written
            (progress bars, streaming output, benchmarks).
        condition: Wan I2V inputs of the whole clip, ``{"condition": [B, C_cond, F, H, W],
            "encoder_hidden_states_image": [B, T, D]}`` (:mod:`aad1lib.conditioning`); every call (denoising steps and
            cache writes) gets them, the model slices ``condition`` to the chunk's frames.
    """
    batch, _, gen_frames, _, _ = noise.shape
    per_chunk = layout.frames_per_chunk
    if gen_frames % per_chunk:
        raise ValueError(f"{gen_frames} generated frames are not a multiple of frames_per_chunk={per_chunk}")
    if (context is None) != (layout.context_frames == 0):
        raise ValueError(
            f"layout has {layout.context_frames} context frames but context is "
            f"{'missing' if context is None else tuple(context.shape)}"
        )
    if context is not None and context.shape[2] != layout.context_frames:
        raise ValueError(f"context has {context.shape[2]} frames, layout expects {layout.context_frames}")
    if forced_frames is not None and forced_frames.shape != noise.shape:
        raise ValueError(f"forced_frames {tuple(forced_frames.shape)} must match noise {tuple(noise.shape)}")
    if sigmas.ndim != 1 or float(sigmas[-1]) != 0.0:
        raise ValueError(f"sigmas must be a 1-D schedule ending at 0, got {sigmas.tolist()}")
    num_steps = len(sigmas) - 1
    if grad_step is not None and not 0 <= grad_step < num_steps:
        raise ValueError(f"grad_step={grad_step} outside 0..{num_steps - 1}")
    renoise = renoise or torch.randn_like
    cfg = dict(uncond_text=uncond_text, guidance_scale=guidance_scale)
    condition = condition or {}
    cache_rows = 2 if (uncond_text is not None and guidance_scale != 1.0) else 1
    cache = model.new_kv_cache(layout, detach=True)
    passes = 0

    def write(frames: torch.Tensor, offset: int) -> None:
        nonlocal passes
        sigma = torch.full((batch,), context_sigma, device=frames.device, dtype=frames.dtype)
        x = flow.add_noise(frames, renoise(frames), sigma) if context_sigma > 0 else frames
        timestep = flow.sigma_to_timestep(sigma)
        rows = (lambda t: torch.cat([t] * cache_rows)) if cache_rows > 1 else (lambda t: t)
        text_rows = torch.cat([text, uncond_text]) if cache_rows > 1 else text
        with torch.no_grad():
            model(
                rows(x),
                rows(timestep),
                text_rows,
                return_dict=False,
                chunk_layout=layout,
                kv_cache=cache,
                frame_offset=offset,
                update_cache=True,
                **cfg_rows(condition, cache_rows),
            )
        passes += 1

    outputs = []
    if context is not None:
        write(context, 0)
        outputs.append(context)
    offset = layout.context_frames
    for chunk in range(gen_frames // per_chunk):
        x = noise[:, :, chunk * per_chunk : (chunk + 1) * per_chunk]
        for step in range(num_steps):
            sigma = sigmas[step].to(x).expand(batch)
            keep_grad = grad_step is not None and step == grad_step
            with nullcontext() if keep_grad else torch.no_grad():
                v = guided_velocity(
                    model, x, sigma, text, chunk_layout=layout, kv_cache=cache, frame_offset=offset, **cfg, **condition
                )
                x0 = flow.x0_from_velocity(x, v, sigma)
            passes += 1
            if keep_grad or step == num_steps - 1:
                break  # Self-Forcing: the exit step's x0 is the chunk
            x = flow.add_noise(x0, renoise(x0), sigmas[step + 1].to(x).expand(batch))
        sl = slice(chunk * per_chunk, (chunk + 1) * per_chunk)
        write(forced_frames[:, :, sl] if forced_frames is not None else x0.detach(), offset)
        outputs.append(x0)
        if chunk_callback is not None:
            chunk_callback(chunk, x0.detach(), cache)
        offset += per_chunk
    return RolloutOutput(video=torch.cat(outputs, dim=2), passes=passes, kv_cache=cache)


def seeded_renoise(seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``renoise`` for :func:`stream_generate` that draws from its own seeded generator (reproducible samples)."""
    gen = torch.Generator().manual_seed(seed)
    return lambda x: torch.randn(x.shape, generator=gen).to(x)
