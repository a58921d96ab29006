"""Issue 4 over the wire: mutated files sent with dcmtk's storescu, as a broken modality would send them.

Every file storescu manages to send gets a C-STORE response, success or a failure status, on the one
association; a rejected instance leaves no file and no index row; C-ECHO and a good study still work
afterwards. Embedded (SQLite) and on PostgreSQL, which refuses some text SQLite takes (a NUL).
"""

from __future__ import annotations

import asyncio
import copy
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from fuzz.mutation import mutants
from fuzz.seeds import Seed, seeds
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from sqlmodel import select

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow
from support.platform import KINDS, platform_of
from support.studies import ORG_ROOT, storescu, write_ct_study
from telerad.platform import Platform

pytestmark = [pytest.mark.integration, pytest.mark.dcmtk,
              pytest.mark.filterwarnings("ignore::UserWarning:pydicom")]  # about the values the test makes wrong

MUTANTS_PER_SEED = 24
#: storescu converts every file to the transfer syntax it proposes first: three of them, a third of the files each.
PROPOSALS = ("-xe", "-xi", "-xd")
RESPONSE = re.compile(r"Received Store Response \((.*)\)")


@pytest_asyncio.fixture(params=KINDS)
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    if shutil.which("storescu") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs dcmtk's storescu (make tools)")
        pytest.skip("dcmtk's storescu is not installed")
    async with platform_of(request.param, tmp_path / "platform") as running:
        yield running


def hostile_values() -> list[Seed]:
    """Well-formed files whose values are not: what survives storescu's own parsing and re-encoding."""
    [ct] = [s for s in seeds() if s.name == "ct_ExplicitVRLittleEndian"]
    changes: dict[str, dict[str, object]] = {
        "nul_in_description": {"StudyDescription": b"CT CHE\0\0/O CONTRAST"},
        "python_codec_charset": {"SpecificCharacterSet": "unicode_escape", "PatientName": b"Doe\\ud800^Jane"},
        "escape_flood": {"SpecificCharacterSet": "ISO 2022 IR 87", "PatientName": b"\x1bX" * 30_000},
        "study_uid_not_a_uid": {"StudyInstanceUID": "1.2.x"},
        "series_uid_too_long": {"SeriesInstanceUID": "1." + "2" * 64},
        "unknown_charsets": {"SpecificCharacterSet": "\\".join(f"BOGUS {n}" for n in range(40))},
    }
    hostile = []
    for n, (name, values) in enumerate(changes.items()):
        ds = copy.deepcopy(ct.dataset)  # a patient, study and series of its own: their rows take its values
        ds.SOPInstanceUID, ds.PatientID = f"{ORG_ROOT}4.8.{n}", f"HOSTILE{n}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{ORG_ROOT}4.8.{n}.1", f"{ORG_ROOT}4.8.{n}.2"
        with config.disable_value_validation():
            for keyword, value in values.items():
                vr = ds[keyword].VR if keyword in ds else "LO"
                ds[keyword] = DataElement(ds[keyword].tag, vr, value)
        hostile.append(Seed(name, ct.transfer_syntax, ds))
    deep = copy.deepcopy(ct.dataset)
    deep.SOPInstanceUID = f"{ORG_ROOT}4.8.{len(changes)}"
    item = Dataset()
    for _ in range(40):
        parent = Dataset()
        parent.ContentSequence = Sequence([item])
        item = parent
    deep.ContentSequence = item.ContentSequence
    hostile.append(Seed("sequences_nested_40_deep", ct.transfer_syntax, deep))
    return hostile


def write_files(folder: Path) -> list[Path]:
    """Byte mutants of the uncompressed seeds (File Meta Information left intact: storescu must read it,
    each with a SOP Instance UID of its own), and the hostile values."""
    folder.mkdir()
    files = []
    for n, seed in enumerate(s for s in seeds() if not s.transfer_syntax.is_encapsulated):
        ds = copy.deepcopy(seed.dataset)
        ds.SOPInstanceUID = f"{ORG_ROOT}4.7.{n}"
        original = Seed(seed.name, seed.transfer_syntax, ds)
        data = original.part10()
        meta = len(data) - len(original.data_set())
        for m, mutant in enumerate(mutants([data], MUTANTS_PER_SEED, seed=n, keep=meta)):
            files.append(folder / f"{seed.name}_{m:02d}.dcm")
            files[-1].write_bytes(mutant)
    for seed in hostile_values():
        files.append(folder / f"{seed.name}.dcm")
        files[-1].write_bytes(seed.part10())
    return files


async def send(port: int, proposal: str, files: list[Path]) -> dict[Path, str]:
    """storescu's response status for each file it sent (over one association, not halting on failures)."""
    process = await asyncio.create_subprocess_exec(
        "storescu", "-v", "-nh", proposal, "-aec", "TELERAD", "127.0.0.1", str(port), *map(str, files),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await asyncio.wait_for(process.communicate(), 300))[0].decode(errors="replace")
    assert process.returncode == 0, output
    assert "Association Accepted" in output and "Releasing Association" in output, output
    assert "Abort" not in output and "Store Failed" not in output, output  # every request got its response
    statuses: dict[Path, str] = {}
    current: Path | None = None
    for line in output.splitlines():
        if line.startswith("I: Sending file: "):
            current = Path(line.removeprefix("I: Sending file: "))
        elif (match := RESPONSE.search(line)) and current is not None:
            statuses[current] = match.group(1)
    assert output.count("Sending Store Request") == len(statuses), output
    return statuses


async def sop_instance_uid(path: Path) -> str:
    """The SOP Instance UID as storescu read the file (dcmtk reads leniently and sends what it read)."""
    process = await asyncio.create_subprocess_exec("dcmdump", "-q", "+P", "0008,0018", str(path),
                                                   stdout=asyncio.subprocess.PIPE)
    output = (await process.communicate())[0].decode(errors="replace")
    match = re.search(r"UI \[(.*?)\]", output)
    assert match, output
    return match.group(1).strip()


async def index_rows(platform: Platform) -> list[InstanceRow]:
    async with platform.services["dicom-ingest"].db.session() as session:  # type: ignore[union-attr]
        return list((await session.execute(select(InstanceRow))).scalars())


async def test_mutated_files_from_storescu_are_stored_or_refused_and_the_scp_carries_on(
        platform: Platform, tmp_path: Path) -> None:
    files = write_files(tmp_path / "mutants")
    port = platform.dicom_port

    statuses: dict[Path, str] = {}
    for n, proposal in enumerate(PROPOSALS):
        statuses |= await send(port, proposal, files[n::len(PROPOSALS)])

    stored = {path for path, status in statuses.items() if status == "Success"}
    refused = set(statuses) - stored
    # storescu parses each file and re-encodes what it read: most byte mutants it cannot read (247 files, 67 sent)
    assert len(statuses) > len(files) // 5 and len(stored) > 20 and len(refused) > 5, statuses
    assert {status for path, status in statuses.items() if path in refused} <= {
        "Error: CannotUnderstand", "Error: DataSetDoesNotMatchSOPClass"}  # never A700: the index took them all
    by_name = {path.stem: status for path, status in statuses.items()}
    assert by_name["nul_in_description"] == by_name["python_codec_charset"] == by_name["escape_flood"] == "Success"
    assert by_name["unknown_charsets"] == "Success"
    assert by_name["study_uid_not_a_uid"] == by_name["series_uid_too_long"] == "Error: DataSetDoesNotMatchSOPClass"
    assert by_name["sequences_nested_40_deep"] == "Error: CannotUnderstand"

    rows = await index_rows(platform)
    storage: FileStorage = platform.services["dicom-ingest"].storage  # type: ignore[attr-defined]
    assert {row.sop_instance_uid for row in rows} == set(await asyncio.gather(*map(sop_instance_uid, stored)))
    assert len(rows) == len(storage.files())  # nothing stored for a refused instance, not even a temporary

    echo = await asyncio.create_subprocess_exec("echoscu", "-aet", "ECHOSCU", "-aec", "TELERAD", "127.0.0.1",
                                                str(port), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    assert await echo.wait() == 0, (await echo.communicate())[0]
    study = write_ct_study(tmp_path / f"good-{uuid.uuid4().hex}", series=1, instances_per_series=2, size=8)
    await storescu(port, *study.files)
    assert len(await index_rows(platform)) == len(rows) + 2
