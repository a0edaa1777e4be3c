"""Benchmarks of the connector (run by `tox -e bench`: `python bench/run.py`)."""
