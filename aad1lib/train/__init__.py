"""Staged trainers on one shared loop (accelerate, run folders, tracking, EMA, exact resume)."""

from .fsdp import UnsafeCheckpointError
from .loop import DivergenceError, TrainLoop
from .run_folder import RunExistsError, RunFolder

__all__ = ["DivergenceError", "RunExistsError", "RunFolder", "TrainLoop", "UnsafeCheckpointError"]
