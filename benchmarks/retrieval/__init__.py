"""Retrieval benchmark: ground-truth variants, baselines and metrics."""
