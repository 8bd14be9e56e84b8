"""Benchmarks: each prints figures (JSON and a table) and asserts nothing.

Run from the repository root as modules, e.g. ``.venv/bin/python -m benchmarks.bench_serving``
(``make bench`` runs ``benchmarks.bench_pipeline``). They import the installed project and
its developer tools (``planets_mlops.app.dev``), never the tests.
"""
