"""Benchmarks: scripts that print tables (run with ``python -m bench.<name>``); never tests."""
