"""Fuzzing dicom-ingest's parsing path (issue 4): every input is stored or cleanly rejected, nothing else.

Run one target with atheris (coverage-guided, libFuzzer flags pass through)::

    .venv/bin/python -m tests.fuzz.fuzz_read_instance -atheris_runs=100000
    make fuzz FUZZ_SECONDS=600

The package is imported as ``tests.fuzz`` by ``python -m`` and as ``fuzz`` by pytest (``tests/`` is on
pytest's pythonpath); either way ``tests/`` must be importable for :mod:`support.studies`.
"""

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.append(_TESTS)
