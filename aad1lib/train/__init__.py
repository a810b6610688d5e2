"""Staged trainers on one shared loop (accelerate, run folders, tracking, EMA, exact resume).

Run folders (:class:`aad1lib.run_folder.RunFolder`) live in the base layer: evaluation and reports read them too.
"""

from .fsdp import UnsafeCheckpointError
from .loop import DivergenceError, TrainLoop

__all__ = ["DivergenceError", "TrainLoop", "UnsafeCheckpointError"]
