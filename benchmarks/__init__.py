"""The benchmark suite of the platform core: each figure beside its floor, measured in one run.

``python benchmarks/run.py --help``; the figures and how they are taken are in
``docs/benchmarks.md``.
"""
