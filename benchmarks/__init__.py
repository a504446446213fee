"""Throughput benchmarks (``tox -e bench``); not part of the unit tests."""
