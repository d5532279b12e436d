"""Benchmarks for the foundation kernel, measured side by side with references.

Every figure is taken in one run on one machine next to its references (a minimal
actor, raw asyncio, pykka, Thespian) and judged as a ratio; see ``benchmarks/README.md``
and ``python -m benchmarks.compare kernel --help``.
"""
