"""`make bench` in quick mode: the ingest benchmark fills Telerad and Orthanc and writes its report.

A smoke test of the harness, not a measurement: it asserts what was stored, never how fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from support.servers import unavailable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CASES = {"ING-CT-1": 20, "ING-CT-4": 20, "ING-SM-1": 40, "ING-SM-4": 40}  # bench.datasets CT_QUICK, SMALL_QUICK


async def test_the_quick_ingest_bench_stores_every_instance_in_both_archives(
        tmp_path: Path, amqp_url: str, postgres_url: str) -> None:
    for tool, package in (("Orthanc", "orthanc"), ("storescu", "dcmtk")):
        if shutil.which(tool) is None:
            unavailable(f"{tool} (make tools installs Debian's {package})")
    report, results = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    env = {**os.environ, "BENCH_QUICK": "1", "BENCH_ONLY": "ingest", "BENCH_OUTPUT": str(report),
           "BENCH_JSON_OUTPUT": str(results), "BENCH_CACHE_DIR": str(tmp_path / "cache"),
           "BENCH_AMQP_URL": amqp_url, "BENCH_POSTGRES_URL": postgres_url}
    env.pop("BENCH_RUNS", None)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench", cwd=REPO, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, output.decode(errors="replace")[-4000:]

    data = json.loads(results.read_text())
    assert data["quick"] is True and [b["error"] for b in data["benchmarks"]] == [""]
    rows = {r["case"]: r for r in data["results"] if r["benchmark"] == "ingest"}
    assert set(rows) == set(CASES)
    for case, sent in CASES.items():
        values = rows[case]["values"]
        assert rows[case]["failures"] == []
        assert (values["stored Telerad"], values["stored Orthanc"]) == (f"{sent}/{sent}", f"{sent}/{sent}")
        for column in ("Telerad inst/s", "Orthanc inst/s", "Telerad MB/s", "Orthanc MB/s", "Telerad / Orthanc"):
            assert values[column]["n"] == 1 and values[column]["median"] > 0, (case, column, values[column])
    assert "Orthanc 1." in data["machine"]["Orthanc"]

    text = report.read_text()
    for case, sent in CASES.items():
        [row] = [line for line in text.splitlines() if line.startswith(f"| {case} |")]
        assert f"| {sent}/{sent} | {sent}/{sent} |" in row
        assert re.search(r"\| \d[\d,]* \| \d[\d,]* \| \d[\d,.]* \| \d[\d,.]* \| \d\.\d\dx \|", row), row
    assert "## Machine" in text and "TCP_NODELAY=1" in text
    assert not list((tmp_path / "cache" / "runs").glob("*/*")), "run directories are removed afterwards"
