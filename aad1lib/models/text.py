"""Text encoders: prompts -> zero-padded token embeddings ``[B, L, D]`` for the generator's cross-attention.

Two encoders share one interface (:class:`TextEncoder`):

- :class:`TinyTextEncoder` for the CPU presets (``tiny``, ``demo``): no download, a hashed word-level
  tokenizer and a frozen random network fixed by a seed.
- :class:`UMT5TextEncoder` for the Wan presets: the umT5-XXL encoder Wan 2.1 conditions on, read from a
  local folder, with Wan's prompt handling (pad to ``max_length`` = 512, zero the padding positions; see
  diffusers ``WanPipeline._get_t5_prompt_embeds``).

Both are frozen and run under ``torch.no_grad()``: the paper never trains the text encoder.
"""

from __future__ import annotations

import html
import math
import re
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = ["TextEncoder", "TinyTextEncoder", "UMT5TextEncoder", "build_text_encoder"]

TEXT_ENCODER_KINDS = ("tiny", "umt5")


class TextEncoder(nn.Module):
    """Interface: ``encode(prompts) -> (embeddings [B, L, D], mask [B, L] bool)``.

    ``mask`` is True at real tokens; ``embeddings`` are exactly zero where it is False, as in Wan, whose
    transformer attends over all ``L`` positions of the zero-padded context.
    """

    dim: int  # D, the embedding width the transformer's ``text_dim`` must match
    max_length: int  # L, every batch is padded / truncated to this many tokens

    @property
    def device(self) -> torch.device:
        tensor = next(iter(self.buffers()), None)
        if tensor is None:
            tensor = next(iter(self.parameters()))
        return tensor.device

    @property
    def dtype(self) -> torch.dtype:
        tensor = next((t for t in self.buffers() if t.is_floating_point()), None)
        if tensor is None:
            tensor = next(iter(self.parameters()))
        return tensor.dtype

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(prompts)


def _check_prompts(prompts: list[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("encode() takes a list of prompts, got a single str; wrap it: encode([prompt])")
    prompts = list(prompts)
    for p in prompts:
        if not isinstance(p, str):
            raise TypeError(f"prompts must be str, got {type(p).__name__}")
    return prompts


# ---- tiny (CPU presets) ----------------------------------------------------------------------------------


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Transformer sinusoidal position table ``[length, dim]`` (Vaswani et al. 2017, §3.5)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    freqs = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table.float()


class TinyTextEncoder(TextEncoder):
    """Download-free stand-in for umT5: hashed words -> frozen embeddings + positions -> one attention layer.

    - Tokenizer: lowercase, split on anything that is not a letter or digit; each word goes to bucket
      ``1 + crc32(word) % (vocab_size - 1)`` (id 0 is padding). crc32, unlike Python's salted ``hash()``,
      is the same in every process, so the same prompt gives the same ids everywhere.
    - Network: a seeded embedding table, sinusoidal positions, then one pre-norm transformer layer
      (self-attention over the real tokens + MLP) and a final LayerNorm. The layer makes each token's
      embedding depend on its neighbours, so word order matters beyond the position code.
    - Weights are drawn from a private ``torch.Generator`` seeded with ``seed`` (the global RNG is left
      untouched) and kept as non-persistent buffers: the encoder is fully defined by its constructor
      arguments, has no trainable parameters and adds nothing to checkpoints.

    The empty prompt (CFG's unconditional branch) has no tokens: an all-False mask and all-zero embeddings.
    """

    def __init__(
        self,
        dim: int = 64,  # D; must match the transformer's text_dim
        max_length: int = 32,  # L; longer prompts are truncated
        seed: int = 0,  # fixes every weight; same seed -> same outputs in any process
        vocab_size: int = 4096,  # hash buckets (including the padding id 0)
        num_heads: int = 4,  # heads of the single self-attention layer
    ) -> None:
        super().__init__()
        if dim % num_heads or dim % 2:
            raise ValueError(f"dim ({dim}) must be even and divisible by num_heads ({num_heads})")
        if max_length < 1 or vocab_size < 2:
            raise ValueError(f"need max_length >= 1 and vocab_size >= 2, got {max_length}, {vocab_size}")
        self.dim, self.max_length, self.seed = dim, max_length, seed
        self.vocab_size, self.num_heads = vocab_size, num_heads

        gen = torch.Generator().manual_seed(seed)

        def randn(*shape: int, std: float) -> torch.Tensor:
            return torch.randn(*shape, generator=gen) * std

        hidden = 4 * dim
        weights = {
            "token_embedding": randn(vocab_size, dim, std=1.0),  # (V, D)
            "qkv_weight": randn(3 * dim, dim, std=dim**-0.5),  # (3D, D)
            "out_weight": randn(dim, dim, std=dim**-0.5),  # (D, D)
            "mlp_in_weight": randn(hidden, dim, std=dim**-0.5),  # (4D, D)
            "mlp_out_weight": randn(dim, hidden, std=hidden**-0.5),  # (D, 4D)
            "positions": sinusoidal_positions(max_length, dim),  # (L, D)
        }
        for name, tensor in weights.items():
            self.register_buffer(name, tensor, persistent=False)

    # ---- tokenizer ---------------------------------------------------------------------------------------
    @staticmethod
    def words(prompt: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", prompt.lower())

    def token_id(self, word: str) -> int:
        return 1 + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 1)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ``ids [B, L]`` (long, 0 = padding) and ``mask [B, L]`` (bool), right-padded."""
        prompts = _check_prompts(prompts)
        ids = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for b, prompt in enumerate(prompts):
            row = [self.token_id(w) for w in self.words(prompt)][: self.max_length]
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids, ids != 0

    # ---- network -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenize(prompts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        B, L = ids.shape

        # 1. embeddings + positions
        x = self.token_embedding[ids] + self.positions[None]  # (B, L, D)

        # 2. self-attention over real tokens; each position also sees itself so all-padding rows stay finite
        q, k, v = rearrange(
            F.linear(F.layer_norm(x, (self.dim,)), self.qkv_weight),
            "b l (three h d) -> three b h l d",
            three=3,
            h=self.num_heads,
        )
        eye = torch.eye(L, dtype=torch.bool, device=ids.device)
        attn_mask = mask[:, None, None, :] | eye  # (B, 1, L, L), True = may attend
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + F.linear(rearrange(attn, "b h l d -> b l (h d)"), self.out_weight)

        # 3. MLP, final norm, zero the padding (as Wan does for umT5)
        x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (self.dim,)), self.mlp_in_weight)), self.mlp_out_weight)
        x = F.layer_norm(x, (self.dim,))
        x = x.masked_fill(~mask[..., None], 0.0)
        return x, mask

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_length={self.max_length}, seed={self.seed}, vocab_size={self.vocab_size}"


# ---- umT5 (Wan presets) ----------------------------------------------------------------------------------


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning (diffusers ``prompt_clean``): ftfy when installed, unescape HTML, squash spaces."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")


def _resolve_subfolder(root: Path, subfolder: str, required: tuple[str, ...], what: str) -> Path:
    """``root/subfolder`` when it exists (diffusers pipeline layout), else ``root`` itself."""
    folder = root / subfolder if (root / subfolder).is_dir() else root
    if not any((folder / name).is_file() for name in required):
        raise FileNotFoundError(
            f"no {what} found: expected {' or '.join(required)} in {folder}"
            + ("" if folder != root else f" (or a '{subfolder}/' subfolder of {root})")
        )
    return folder


class UMT5TextEncoder(TextEncoder):
    """Wan 2.1's text encoder: ``transformers.UMT5EncoderModel`` + its tokenizer, frozen.

    Prompt handling follows diffusers ``WanPipeline._get_t5_prompt_embeds``: clean the prompt, tokenize
    with ``padding="max_length"``, truncation and the closing ``</s>``, run the encoder with the attention
    mask, take ``last_hidden_state`` and zero every padding position. Note the empty prompt still has one
    real token (``</s>``), unlike :class:`TinyTextEncoder`.
    """

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 512) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"  # zeroing by mask assumes real tokens come first, as in Wan
        self.max_length = max_length
        self.dim = model.config.d_model

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,  # Wan model root (text_encoder/ + tokenizer/) or a folder holding both
        max_length: int = 512,  # Wan pads the umT5 context to 512 tokens
        dtype: torch.dtype = torch.float32,  # the cluster presets pass torch.bfloat16
        device: str | torch.device | None = None,
    ) -> UMT5TextEncoder:
        from transformers import AutoTokenizer, UMT5EncoderModel

        root = Path(path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"text encoder path does not exist or is not a folder: {root}")
        model_dir = _resolve_subfolder(root, "text_encoder", ("config.json",), "umT5 text encoder config")
        tokenizer_dir = _resolve_subfolder(root, "tokenizer", _TOKENIZER_FILES, "tokenizer")
        model = UMT5EncoderModel.from_pretrained(model_dir, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        encoder = cls(model, tokenizer, max_length=max_length)
        return encoder.to(device) if device is not None else encoder

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = [clean_prompt(p) for p in _check_prompts(prompts)]
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        embeddings = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, D)
        mask = mask.bool()
        return embeddings.masked_fill(~mask[..., None], 0.0), mask

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_length={self.max_length}"


def build_text_encoder(kind: str, **kwargs) -> TextEncoder:
    """``"tiny"`` -> :class:`TinyTextEncoder` (kwargs: dim, max_length, seed, ...);
    ``"umt5"`` -> :meth:`UMT5TextEncoder.from_pretrained` (kwargs: path, max_length, dtype, device)."""
    if kind == "tiny":
        return TinyTextEncoder(**kwargs)
    if kind == "umt5":
        return UMT5TextEncoder.from_pretrained(**kwargs)
    raise ValueError(f"unknown text encoder kind {kind!r}; allowed: {', '.join(map(repr, TEXT_ENCODER_KINDS))}")
