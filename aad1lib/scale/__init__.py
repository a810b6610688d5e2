"""Scaling tools: plan per-GPU memory of a training stage under FSDP2, and measure memory on this machine."""

from .memory_measure import (
    MemoryMeasurement,
    check_fsdp_plan_on_cpu,
    check_plan_on_cpu,
    measure_peak_memory,
    saved_tensor_bytes,
)
from .memory_planner import MemoryPlan, ModelMemory, plan_memory, wan_params

__all__ = [
    "MemoryMeasurement",
    "MemoryPlan",
    "ModelMemory",
    "check_fsdp_plan_on_cpu",
    "check_plan_on_cpu",
    "measure_peak_memory",
    "plan_memory",
    "saved_tensor_bytes",
    "wan_params",
]
