"""Benchmarks of the store, the encoder, the API and the dashboard.

Each ``bench_*`` module runs from the repository root as
``python -m benchmarks.bench_NAME``; results go to ``benchmarks/results`` through
:func:`benchmarks.common.save_result` and read back with
:func:`benchmarks.common.load_result`.
"""
