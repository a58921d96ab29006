"""Run one target under atheris, Google's coverage-guided fuzzer for Python (libFuzzer underneath).

Flags are libFuzzer's (``-atheris_runs=N``, ``-max_total_time=S``, ``-jobs=N`` ...). Without a corpus
argument, new inputs go to ``var/fuzz/<target>/corpus`` and the checked-in seeds of
``tests/fuzz/corpus/<target>`` are read too; a crash is written to ``var/fuzz/<target>/crash-*``.
Given a file instead, only that input runs (to reproduce a crash). A crash found here belongs in
``tests/fuzz/crashes/<target>/`` with its fix: the regression test replays every file there. Bugs in
``targets.KNOWN_OPEN`` (reported, not fixed yet) are passed over.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).parent
VAR = HERE.parents[1] / "var" / "fuzz"
#: What coverage guides the fuzzer: dicom-ingest and the third-party code it hands received bytes to.
INSTRUMENTED = ["dicom_ingest", "pydicom.charset", "aiohttp.multipart", "aiohttp.helpers"]


def fuzz(target: str) -> None:
    """Fuzz ``tests.fuzz.targets.OUTCOMES[target]`` with ``sys.argv`` as libFuzzer's arguments."""
    work = VAR / target
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        args += [str(work / "corpus"), str(HERE / "corpus" / target)]
    defaults = {"-artifact_prefix": f"{work}/", "-timeout": "10", "-rss_limit_mb": "2048", "-max_len": "65536"}
    args[1:1] = [f"{flag}={value}" for flag, value in defaults.items()
                 if not any(a.startswith(flag + "=") for a in args)]
    with atheris.instrument_imports(include=INSTRUMENTED):
        from .targets import KNOWN_OPEN, OUTCOMES
    outcome, known = OUTCOMES[target], KNOWN_OPEN.get(target, lambda error: False)

    def check(data: bytes) -> None:
        try:
            outcome(data)
        except Exception as error:
            if not known(error):
                raise

    atheris.Setup(args, check)
    atheris.Fuzz()
