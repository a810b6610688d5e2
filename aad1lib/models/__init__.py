"""Networks of AAD-1: the causal Wan generator, the bidirectional video discriminator, and I2V conditioning.

``ChunkLayout`` lives in the base layer (:mod:`aad1lib.chunking`: presets build it); it is re-exported here as the
models' ``chunk_layout`` argument.
"""

from ..chunking import ChunkLayout
from .causal_wan import CausalWanTransformer3DModel
from .discriminator import VideoDiscriminator
from .i2v import CLIPImageEncoder, wan_i2v_condition
from .kv_cache import KVCache

__all__ = [
    "CLIPImageEncoder",
    "CausalWanTransformer3DModel",
    "ChunkLayout",
    "KVCache",
    "VideoDiscriminator",
    "wan_i2v_condition",
]
