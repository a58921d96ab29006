"""`make bench` in quick mode: the ingest benchmark fills Telerad and Orthanc and writes its report.

A smoke test of the harness, not a measurement: it asserts what was stored, never how fast. It runs one
of the ingest benchmark's four cases, small mixed files on four associations (``python -m bench`` with
``bench.ingest.CASES`` narrowed): each case starts both archives afresh, which is most of the time, and
the others differ from it only in the dataset, whose CT kind is generated and read back here too.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pydicom
import pytest

from support.servers import unavailable

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUICK_SIZES = {"ING-CT-1": 20, "ING-CT-4": 20, "ING-SM-1": 40, "ING-SM-4": 40,  # bench.datasets CT_QUICK, SMALL_QUICK
               "ING-SM-1-IDX": 40, "ING-NAGLE": 40, "ING-ASSOC": 40}
CASES = {"ING-SM-4": QUICK_SIZES["ING-SM-4"]}
#: ``python -m bench`` with only the cases named on its command line.
NARROWED = ("import sys; from bench import __main__, ingest; "
            "ingest.CASES = tuple(case for case in ingest.CASES if case.id in sys.argv[1:]); "
            "sys.exit(__main__.main([]))")


def test_the_quick_cases_are_the_seven_ingest_cases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from bench import ingest

    assert {case.id: case.quick_spec.instances for case in ingest.CASES} == QUICK_SIZES
    assert {case.id: (case.quick_spec.kind, case.associations) for case in ingest.CASES} == {
        "ING-CT-1": ("ct", 1), "ING-CT-4": ("ct", 4), "ING-SM-1": ("small", 1), "ING-SM-4": ("small", 4),
        "ING-SM-1-IDX": ("small", 1), "ING-NAGLE": ("small", 1), "ING-ASSOC": ("small", 4)}
    assert {case.id: dict(case.telerad_env) for case in ingest.CASES if case.telerad_env} == {
        "ING-SM-1-IDX": {"DICOM_INGEST_ACKNOWLEDGE_WHEN": "indexed"}}
    assert [case.id for case in ingest.CASES if not case.nodelay] == ["ING-NAGLE"]
    assert [case.id for case in ingest.CASES if case.one_per_association] == ["ING-ASSOC"]


def test_the_quick_ct_dataset_is_generated_once_and_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from bench.datasets import CT_QUICK, ensure_dataset

    dataset = ensure_dataset(CT_QUICK, tmp_path)
    slices = [pydicom.dcmread(path) for path in dataset.files]
    assert len(slices) == QUICK_SIZES["ING-CT-1"] == len({ds.SOPInstanceUID for ds in slices})
    assert {(ds.Modality, ds.Rows, ds.Columns, ds.BitsAllocated) for ds in slices} == {("CT", 512, 512, 16)}
    assert len({ds.StudyInstanceUID for ds in slices}) == len({ds.SeriesInstanceUID for ds in slices}) == 1
    assert dataset.total_bytes == sum(path.stat().st_size for path in dataset.files) > 20 * 512 * 512 * 2
    assert dataset.parts(1) == [list(dataset.files)] and sum(map(len, dataset.parts(4))) == len(dataset.files)
    written = {path: path.stat().st_mtime_ns for path in dataset.files}
    again = ensure_dataset(CT_QUICK, tmp_path)
    assert {path: path.stat().st_mtime_ns for path in again.files} == written  # from the cache, not made again


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
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", NARROWED, *CASES, cwd=REPO, env=env,
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
