"""Benchmarks for ``make bench``: not tests, and not part of the installed package."""
