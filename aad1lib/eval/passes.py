"""Model passes: a forward-hook counter, and the NFE arithmetic of a run's counted passes (per chunk, per
training-length clip, KV-cache writes apart)."""

from __future__ import annotations

import torch

from ..config import ExperimentConfig
from .plan import GenerationPlan


class PassCounter:
    """Counts a model's forward passes per sample while active (a forward pre-hook, so nothing is assumed).

    ``nfe``: denoising evaluations (a call on ``k × batch`` rows, e.g. CFG's conditional + unconditional
    batch, counts ``k``); ``cache_writes``: calls with ``update_cache=True`` (a causal model writing a
    finished chunk, or the context frame, into its KV cache).
    """

    def __init__(self, model: torch.nn.Module, batch: int):
        self.model, self.batch = model, batch
        self.nfe = 0.0
        self.cache_writes = 0.0
        self._handle = None

    def _hook(self, module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]  # [k × batch, ...]
        rows = x.shape[0] / self.batch
        if kwargs.get("update_cache"):
            self.cache_writes += rows
        else:
            self.nfe += rows

    def __enter__(self) -> PassCounter:
        self._handle = self.model.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def nfe_summary(cfg: ExperimentConfig, plan: GenerationPlan, counter: PassCounter, generated_frames: int) -> dict:
    """Passes per chunk / per training-length clip from the counted passes of ``generated_frames`` frames."""
    per_chunk_frames, ctx = cfg.chunking.frames_per_chunk, cfg.chunking.context_frames
    clip_chunks = (cfg.latent_frames - ctx) // per_chunk_frames
    if plan.kind == "teacher":
        nfe = counter.nfe
        return dict(nfe_per_chunk=None, nfe_per_clip=_int(nfe), cache_writes_per_chunk=0, passes_per_chunk=None,
                    passes_per_clip=_int(nfe), chunks_per_clip=clip_chunks,
                    note="bidirectional: the whole clip per pass; NFE = sampler steps × 2 with CFG")  # fmt: skip
    chunks = generated_frames // per_chunk_frames
    context_writes = 1 if ctx else 0
    nfe_chunk = counter.nfe / chunks
    writes_chunk = (counter.cache_writes - context_writes) / chunks
    return dict(
        nfe_per_chunk=_int(nfe_chunk), nfe_per_clip=_int(nfe_chunk * clip_chunks),
        cache_writes_per_chunk=_int(writes_chunk), passes_per_chunk=_int(nfe_chunk + writes_chunk),
        passes_per_clip=_int(context_writes + (nfe_chunk + writes_chunk) * clip_chunks), chunks_per_clip=clip_chunks,
        note="causal: few-step denoising per chunk + 1 pass writing the finished chunk into the KV cache "
             "(+1 for the context frame per clip)",
    )  # fmt: skip


def _int(x: float) -> int | float:
    return int(round(x)) if abs(x - round(x)) < 1e-6 else x
