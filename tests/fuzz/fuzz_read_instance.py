"""Fuzz C-STORE data sets through read_instance (entrypoints/scp.py), as tests.fuzz.inputs describes them.

``.venv/bin/python -m tests.fuzz.fuzz_read_instance -atheris_runs=N`` (see :mod:`tests.fuzz.harness`).
"""

from .harness import fuzz

if __name__ == "__main__":
    fuzz("read_instance")
