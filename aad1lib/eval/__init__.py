"""Evaluation: streaming speed benchmark (metrics arrive with the evaluation issue)."""
