"""Fuzz STOW-RS request bodies through receive_parts, then every part through check_instance.

``.venv/bin/python -m tests.fuzz.fuzz_multipart -atheris_runs=N`` (see :mod:`tests.fuzz.harness`).
"""

from .harness import fuzz

if __name__ == "__main__":
    fuzz("multipart")
