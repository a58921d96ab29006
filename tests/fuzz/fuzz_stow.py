"""Fuzz PS3.10 files through STOW-RS's check_instance (File Meta Information, then read_instance).

``.venv/bin/python -m tests.fuzz.fuzz_stow -atheris_runs=N`` (see :mod:`tests.fuzz.harness`).
"""

from .harness import fuzz

if __name__ == "__main__":
    fuzz("stow")
