"""Bad input over real associations: refused with the exact status, nothing kept, the SCP unharmed.

Embedded platform (SQLite, local bus); pynetdicom is the SCU, in a thread since it blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlmodel import select

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.adapters.tables import InstanceRow
from support.platform import running_platform, wait_for_worklist
from support.studies import ORG_ROOT, ct_instance, write_ct_study
from telerad.platform import Platform

pytestmark = pytest.mark.integration

SUCCESS, DOES_NOT_MATCH_SOP_CLASS, CANNOT_UNDERSTAND = 0x0000, 0xA900, 0xC000


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path / "platform") as running:
        ingest = running.services["dicom-ingest"]
        await ingest.modalities.register(running.common.default_organization_id, "BADMODALITY")  # type: ignore[attr-defined]
        yield running


def an_instance(study_uid: str | None = None, *, series_uid: str | None = None,
                patient_name: str = "Doe^Jane") -> Dataset:
    return ct_instance(study_uid or generate_uid(ORG_ROOT), series_uid or generate_uid(ORG_ROOT), 1, 1,
                       bytes(8 * 8 * 2), 8, "ACC1", "PAT1", patient_name)


def encode(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def associate(port: int) -> Association:
    ae = AE(ae_title="BADMODALITY")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    return assoc


def c_echo(port: int) -> int:
    assoc = associate(port)
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def c_store(port: int, dataset: Dataset | Path) -> int:
    assoc = associate(port)
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def c_store_raw(port: int, folder: Path, data: bytes, sop_instance_uid: str) -> int:
    """C-STORE ``data`` byte for byte, however malformed.

    send_c_store(dataset) re-encodes a Dataset, so malformed bytes cannot pass through it. Given a
    file path with pynetdicom's STORE_SEND_CHUNKED_DATASET on, it instead takes the command's Affected
    SOP Class and Instance UIDs and the transfer syntax from the file meta information and sends every
    byte after it as the data set, unparsed: we write that file with our bytes after a valid meta.
    (A C_STORE primitive with ``DataSet = BytesIO(data)`` would do too, but sending it by hand needs the
    association's private reactor pause.) pydicom reads the meta up to the first tag outside group
    0002, so ``data`` must be at least 8 bytes long and not begin with such a tag.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    part_10 = DicomBytesIO()
    part_10.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(part_10, meta)
    path = folder / f"{hashlib.sha256(data).hexdigest()}.dcm"
    path.write_bytes(part_10.getvalue() + data)
    chunked, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        return c_store(port, path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked


async def stored_instances(platform: Platform) -> list[InstanceRow]:
    async with platform.services["dicom-ingest"].db.session() as session:  # type: ignore[union-attr]
        return list((await session.execute(select(InstanceRow))).scalars())


def storage_of(platform: Platform) -> FileStorage:
    return platform.services["dicom-ingest"].storage  # type: ignore[attr-defined, no-any-return]


def garbage() -> tuple[bytes, str]:
    return random.Random(7).randbytes(600), generate_uid(ORG_ROOT)


def truncated() -> tuple[bytes, str]:
    ds = an_instance()
    data = encode(ds)
    return data[:len(data) - 50], ds.SOPInstanceUID  # inside the pixel data


def without_study_instance_uid() -> tuple[bytes, str]:
    ds = an_instance()
    del ds.StudyInstanceUID
    return encode(ds), ds.SOPInstanceUID


def under_another_sop_instance_uid() -> tuple[bytes, str]:
    return encode(an_instance()), generate_uid(ORG_ROOT)


def with_a_path_for_a_uid() -> tuple[bytes, str]:
    ds = an_instance()
    del ds.SeriesInstanceUID  # an element keeps the validation mode it was made with
    with config.disable_value_validation():
        ds.SeriesInstanceUID = "../../x"
    return encode(ds), ds.SOPInstanceUID


@pytest.mark.parametrize(("bad_input", "status", "reason"), [
    (garbage, CANNOT_UNDERSTAND, ""),
    (truncated, CANNOT_UNDERSTAND, "runs past the end"),
    (without_study_instance_uid, DOES_NOT_MATCH_SOP_CLASS, "study_instance_uid is missing"),
    (under_another_sop_instance_uid, DOES_NOT_MATCH_SOP_CLASS, "differs from the request's Affected SOP Instance"),
    (with_a_path_for_a_uid, DOES_NOT_MATCH_SOP_CLASS, "series_instance_uid is not a valid UID")],
    ids=["garbage", "truncated", "no study instance uid", "sop instance uid differs", "a path for a uid"])
async def test_bad_input_is_refused_leaves_nothing_behind_and_the_scp_carries_on(
        platform: Platform, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        bad_input: Callable[[], tuple[bytes, str]], status: int, reason: str) -> None:
    data, affected_sop_instance_uid = bad_input()
    sent = await asyncio.to_thread(c_store_raw, platform.dicom_port, tmp_path, data, affected_sop_instance_uid)

    assert sent == status

    [rejected] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("C-STORE rejected")]
    assert reason in rejected
    assert storage_of(platform).files() == []  # files() lists ".incoming-" temporaries too
    assert await stored_instances(platform) == []
    assert await asyncio.to_thread(c_echo, platform.dicom_port) == SUCCESS
    good = an_instance()
    assert await asyncio.to_thread(c_store, platform.dicom_port, good) == SUCCESS
    assert [row.sop_instance_uid for row in await stored_instances(platform)] == [good.SOPInstanceUID]
    assert len(storage_of(platform).files()) == 1


async def test_the_bytes_of_a_good_instance_pass_the_raw_path_unchanged(platform: Platform, tmp_path: Path) -> None:
    good = an_instance()

    assert await asyncio.to_thread(c_store_raw, platform.dicom_port, tmp_path, encode(good), good.SOPInstanceUID) \
        == SUCCESS
    [path] = storage_of(platform).files()
    assert path.read_bytes().endswith(encode(good))


async def test_c_echo_succeeds(platform: Platform) -> None:
    assert await asyncio.to_thread(c_echo, platform.dicom_port) == SUCCESS


async def test_a_sop_instance_uid_sent_again_is_stored_once(platform: Platform) -> None:
    first = an_instance()
    same_uid_other_data = an_instance(first.StudyInstanceUID, series_uid=first.SeriesInstanceUID,
                                      patient_name="Other^Data")
    same_uid_other_data.SOPInstanceUID = same_uid_other_data.file_meta.MediaStorageSOPInstanceUID = first.SOPInstanceUID

    statuses = [await asyncio.to_thread(c_store, platform.dicom_port, ds) for ds in (first, first)]
    [kept] = storage_of(platform).files()
    statuses.append(await asyncio.to_thread(c_store, platform.dicom_port, same_uid_other_data))

    assert statuses == [SUCCESS] * 3
    [row] = await stored_instances(platform)
    assert (row.sop_instance_uid, row.storage_key) == (first.SOPInstanceUID, kept.name)
    assert storage_of(platform).files() == [kept]
    assert kept.read_bytes().endswith(encode(first))


async def storescu(port: int, folder: Path) -> None:
    if shutil.which("storescu") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs dcmtk's storescu (make tools)")
        pytest.skip("dcmtk's storescu is not installed")
    process = await asyncio.create_subprocess_exec(
        "storescu", "-aec", "TELERAD", "127.0.0.1", str(port), "+sd", str(folder),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()


@pytest.mark.dcmtk
async def test_a_study_pushed_with_storescu_is_one_worklist_item_and_late_instances_update_it(
        platform: Platform, tmp_path: Path) -> None:
    study = write_ct_study(tmp_path / "study", series=3, instances_per_series=2, accession_number="ACC77",
                           patient_id="PAT77", patient_name="Roe^Richard", size=16)

    await storescu(platform.dicom_port, tmp_path / "study")

    page = await wait_for_worklist(platform.gateway_url,
                                   lambda p: p["total"] >= 1 and p["items"][0]["number_of_instances"] == 6)
    [item] = page["items"]
    assert item["study_instance_uid"] == study.study_instance_uid
    assert (item["number_of_series"], item["number_of_instances"]) == (3, 6)
    assert (item["accession_number"], item["patient_id"], item["patient_name"]) == ("ACC77", "PAT77", "Roe^Richard")

    late = tmp_path / "late"
    late.mkdir()
    pixels = bytes(16 * 16 * 2)
    for number in (3, 4):
        ds = ct_instance(study.study_instance_uid, study.series_instance_uids[0], 1, number, pixels, 16,
                         "ACC77", "PAT77", "Roe^Richard")
        ds.save_as(late / f"late{number}.dcm", enforce_file_format=True)
    await storescu(platform.dicom_port, late)

    page = await wait_for_worklist(platform.gateway_url,
                                   lambda p: p["total"] == 1 and p["items"][0]["number_of_instances"] == 8)
    assert page["items"][0]["id"] == item["id"]
    assert page["items"][0]["number_of_series"] == 3
