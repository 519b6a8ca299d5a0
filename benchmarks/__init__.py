"""Benchmarks: the fused supernet against the reference, and Flower's cost against a plain loop.

Run ``python -m benchmarks [supernet|federation|scaling|all] [--device cuda] [--quick]``;
tables go to stdout, figures to ``benchmarks/results/<kind>-<time>.json``.
"""
