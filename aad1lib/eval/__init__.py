"""Evaluation: VBench-I2V-style metrics (metrics/), run evaluation (evaluate.py and its parts), speed benchmarks."""
