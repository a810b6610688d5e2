"""Networks of AAD-1: the causal Wan generator and the bidirectional video discriminator."""

from .causal_wan import CausalWanTransformer3DModel
from .chunking import ChunkLayout
from .kv_cache import KVCache

__all__ = ["CausalWanTransformer3DModel", "ChunkLayout", "KVCache"]
