"""Helpers that the tests and the benchmarks share (not part of the vae-lite package).

``support.browser``: Voila and JupyterLab servers on loopback and headless Chromium, for the
browser tests (``tests/``) and the widget round-trip timings (``benchmarks/bench_explorer.py``).
Neither folder imports from the other; both import from here (the repository root is on
``sys.path`` under pytest, and the benchmark puts it there).
"""
