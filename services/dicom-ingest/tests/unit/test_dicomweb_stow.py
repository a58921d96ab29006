from pathlib import Path
from uuid import uuid4

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian, generate_uid

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.dicom.part10 import MalformedFile, read_file_meta
from dicom_ingest.domain.model import IndexOutcomeValues, StoreInstance
from dicom_ingest.service_layer.stow import (
    STOW_CALLING_AE_TITLE,
    FailureReasonValues,
    RejectedInstance,
    StowPorts,
    StowResult,
    check_instance,
    response_status,
    store_instance,
    store_instances_response,
)
from support.studies import ORG_ROOT, ct_instance

ORGANIZATION = uuid4()


def an_instance(study: str | None = None) -> Dataset:
    return ct_instance(study or generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), 1, 1,
                       np.arange(16, dtype="<u2").tobytes(), 4, "ACC", "PAT", "Doe^Jane")


def file_bytes(ds: Dataset) -> bytes:
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())


class FakeIndex:
    def __init__(self, outcome: str = IndexOutcomeValues.STORED, error: Exception | None = None) -> None:
        self.outcome, self.error = outcome, error
        self.commands: list[StoreInstance] = []

    async def __call__(self, command: StoreInstance) -> str:
        self.commands.append(command)
        if self.error:
            raise self.error
        return self.outcome


def ports(tmp_path: Path, index: FakeIndex, referenced: set[str] | None = None) -> tuple[StowPorts, FileStorage]:
    storage = FileStorage(tmp_path / "dicom", fsync=False)

    async def discard_if_unreferenced(key: str) -> None:
        if key not in (referenced or set()):
            storage.delete(key)

    return StowPorts(storage, index, discard_if_unreferenced), storage


def rejected(data: bytes, study: str | None = None) -> FailureReasonValues:
    with pytest.raises(RejectedInstance) as caught:
        check_instance(data, study)
    return caught.value.reason


# --- the checks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transfer_syntax", [None, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_a_good_file_passes_with_its_meta_and_indexed_attributes(transfer_syntax: str | None) -> None:
    ds = an_instance()
    if transfer_syntax:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    data = file_bytes(ds)
    meta, attributes = check_instance(data, ds.StudyInstanceUID)
    assert meta.transfer_syntax_uid == str(ds.file_meta.TransferSyntaxUID)
    first_tag = (8, 5) if transfer_syntax != ExplicitVRBigEndian else (0x0800, 0x0500)  # (0008,0005)
    assert tuple(np.frombuffer(data[meta.dataset_offset:meta.dataset_offset + 4], "<u2")) == first_tag
    assert (attributes.sop_instance_uid, attributes.study_instance_uid, attributes.patient_id) == (
        ds.SOPInstanceUID, ds.StudyInstanceUID, "PAT")


def test_garbage_and_truncation_cannot_be_understood() -> None:
    data = file_bytes(an_instance())
    assert rejected(b"not DICOM at all" * 20) == FailureReasonValues.CANNOT_UNDERSTAND
    assert rejected(data[:len(data) - 10]) == FailureReasonValues.CANNOT_UNDERSTAND
    assert rejected(data[:140]) == FailureReasonValues.CANNOT_UNDERSTAND
    with pytest.raises(MalformedFile):
        read_file_meta(bytes(128) + b"DICM" + b"\x02\x00\x10\x00UI\xff\x00")  # runs past the end


def in_file_meta(data: bytes, old: str, new: str) -> bytes:
    """Change a UID in the File Meta Information (which comes first), keeping its length."""
    assert len(old) == len(new) and data.index(old.encode()) < 400
    return data.replace(old.encode(), new.encode(), 1)


def test_an_unknown_transfer_syntax_or_sop_class_is_refused_as_such() -> None:
    data = in_file_meta(file_bytes(an_instance()), "1.2.840.10008.1.2.1", "1.2.3.4.5.6.7.8.9.0")
    assert rejected(data) == FailureReasonValues.REFERENCED_TRANSFER_SYNTAX_NOT_SUPPORTED
    ds = an_instance()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.1"  # Verification is not storage
    assert rejected(file_bytes(ds)) == FailureReasonValues.REFERENCED_SOP_CLASS_NOT_SUPPORTED


def test_uids_that_do_not_add_up_do_not_match_the_sop_class() -> None:
    ds = an_instance()
    uid = str(ds.SOPInstanceUID)
    other = uid[:-1] + ("1" if uid[-1] != "1" else "2")
    assert rejected(in_file_meta(file_bytes(ds), uid, other)) == FailureReasonValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    ds = an_instance()
    del ds.SeriesInstanceUID
    assert rejected(file_bytes(ds)) == FailureReasonValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
    ds = an_instance()
    assert rejected(file_bytes(ds), generate_uid(ORG_ROOT)) == FailureReasonValues.STUDY_INSTANCE_UID_MISMATCH


# --- storing ----------------------------------------------------------------------------------------------------

async def test_a_stored_instance_is_written_and_indexed_for_the_callers_organisation(tmp_path: Path) -> None:
    index = FakeIndex()
    stow, storage = ports(tmp_path, index, referenced=set())
    data = file_bytes(an_instance())

    result = await store_instance(data, ORGANIZATION, stow)

    [command] = index.commands
    assert result.stored and command.organization_id == ORGANIZATION
    assert command.calling_ae_title == STOW_CALLING_AE_TITLE and command.size_bytes == len(data)
    assert storage.get(command.storage_key) == data


async def test_a_rejected_instance_leaves_nothing(tmp_path: Path) -> None:
    index = FakeIndex()
    stow, storage = ports(tmp_path, index)
    result = await store_instance(b"garbage", ORGANIZATION, stow)
    assert result.failure_reason == FailureReasonValues.CANNOT_UNDERSTAND
    assert index.commands == [] and storage.files() == []


async def test_an_index_failure_removes_the_file_and_reports_a_processing_failure(tmp_path: Path) -> None:
    stow, storage = ports(tmp_path, FakeIndex(error=RuntimeError("database gone")))
    result = await store_instance(file_bytes(an_instance()), ORGANIZATION, stow)
    assert result.failure_reason == FailureReasonValues.PROCESSING_FAILURE
    assert storage.files() == []


async def test_a_duplicate_keeps_the_first_copy(tmp_path: Path) -> None:
    stow, storage = ports(tmp_path, FakeIndex(IndexOutcomeValues.DUPLICATE))
    result = await store_instance(file_bytes(an_instance()), ORGANIZATION, stow)
    assert result.stored and storage.files() == []  # the second copy's file went; the first one's row stays


# --- the response -----------------------------------------------------------------------------------------------

def test_the_response_lists_stored_and_failed_instances_with_their_reasons() -> None:
    study, series = "1.2.3", "1.2.3.4"
    results = [StowResult("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", study, series),
               StowResult("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.6",
                          failure_reason=FailureReasonValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS),
               StowResult("", "", failure_reason=FailureReasonValues.CANNOT_UNDERSTAND)]
    document = store_instances_response(results, lambda s: f"https://x/studies/{s}",
                                        lambda r: f"https://x/{r.sop_instance_uid}")
    assert document["00081190"] == {"vr": "UR", "Value": ["https://x/studies/1.2.3"]}
    [stored] = document["00081199"]["Value"]
    assert stored["00081155"]["Value"] == ["1.2.3.4.5"] and stored["00081190"]["Value"] == ["https://x/1.2.3.4.5"]
    failed = document["00081198"]["Value"]
    assert [f["00081197"] for f in failed] == [{"vr": "US", "Value": [0xA900]}, {"vr": "US", "Value": [0xC000]}]
    assert failed[1]["00081155"] == {"vr": "UI"}  # nothing could be read of it
    assert [response_status(results), response_status(results[:1]), response_status(results[1:])] == [202, 200, 409]
    assert store_instances_response(results[1:], str, str)["00081190"] == {"vr": "UR"}
