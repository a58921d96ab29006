"""A pytest plugin: a test run whose process cannot exit fails after a minute instead of hanging CI.

A thread that is not a daemon keeps Python from exiting: an aiosqlite connection nobody closed (its worker
thread), a pynetdicom server never shut down. CI would then wait for its 90-minute limit. After the session
the guard waits a minute for the interpreter to exit; if it has not, it names the threads still running
and ends the process with the session's status, or 1 if the session had passed.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

GRACE_SECONDS = float(os.environ.get("TELERAD_TEST_EXIT_GRACE", "60"))
_status = {"exit": 0}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _status["exit"] = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    def guard() -> None:
        time.sleep(GRACE_SECONDS)
        alive = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        sys.stderr.write(f"\nexit_guard: the test process has not exited {GRACE_SECONDS:.0f} s after the session; "
                         f"threads still running: {', '.join(alive) or 'none'}\n")
        sys.stderr.flush()
        os._exit(_status["exit"] or 1)

    threading.Thread(target=guard, name="exit-guard", daemon=True).start()
