"""Benchmarks: each part writes benchmarks/results/<part>.md; ``python -m benchmarks``
runs the parts and assembles BENCHMARKS.md from those files."""
