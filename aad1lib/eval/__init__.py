"""Evaluation: VBench-I2V-style metrics (metrics/), run evaluation (evaluate.py), speed benchmarks."""
