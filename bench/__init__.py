"""Benchmarks of Telerad against Orthanc, side by side on this machine in one run.

``make bench`` (``python -m bench``) runs every benchmark in :data:`bench.run.BENCHMARKS` and writes
docs/benchmarks.md. Speed targets live here and in that report, never in timed unit tests.
"""
