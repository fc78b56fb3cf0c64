"""Benchmarks; a package so that tests can import their helpers."""
