"""Remote PACS without sockets: hosts, C-FIND and C-MOVE/C-GET identifiers, job outcomes, presentation contexts."""

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)
from pynetdicom import StoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext

from dicom_ingest.adapters.index_queries import RetrievableInstance
from dicom_ingest.adapters.remote_pacs import (
    COMPRESSED,
    MAX_CONTEXTS,
    Progress,
    get_contexts,
    sendable,
    store_batches,
    store_contexts,
)
from dicom_ingest.domain.remote_pacs import (
    RETURN_KEYS,
    Failure,
    FindLevelValues,
    JobStatusValues,
    SubOperations,
    find_identifier,
    parse_remote_host,
    retrieval_outcome,
    retrieve_identifier,
    transfer_status,
)

ROOT = "1.2.826.0.1.3680043.10.1234."
STUDY, SERIES = "1.2.3.4", "1.2.3.4.5"


@pytest.mark.parametrize(("value", "host"), [
    ("127.0.0.1", "127.0.0.1"), (" 10.1.2.3 ", "10.1.2.3"), ("::1", "::1"), ("pacs", "pacs"),
    ("PACS.Hospital.example.", "pacs.hospital.example"), ("orthanc-1.local", "orthanc-1.local")])
def test_a_remote_host_is_an_address_or_a_host_name(value: str, host: str) -> None:
    assert parse_remote_host(value) == host


@pytest.mark.parametrize("value", ["", "10.0.0.0/8", "pacs_1", "-pacs", "pacs-", "a" * 64 + ".example",
                                   "pacs..example", "http://pacs", "pacs:4242", "300.1.1.1", "1.2.3"])
def test_anything_else_is_no_remote_host(value: str) -> None:
    with pytest.raises(ValueError):
        parse_remote_host(value)


def test_a_find_identifier_holds_the_level_the_keys_and_the_usual_return_keys() -> None:
    identifier = find_identifier(FindLevelValues.STUDY, {
        "PatientID": "PAT*", "StudyDate": "20240101-20240131", "ModalitiesInStudy": "CT\\MR",
        "StudyInstanceUID": f"{STUDY}\\{STUDY}.1", "AccessionNumber": "", "StudyTime": "1015-"})

    assert identifier.QueryRetrieveLevel == "STUDY"
    assert (identifier.PatientID, identifier.StudyDate, identifier.StudyTime) == ("PAT*", "20240101-20240131", "1015-")
    assert list(identifier.ModalitiesInStudy) == ["CT", "MR"]
    assert list(identifier.StudyInstanceUID) == [STUDY, f"{STUDY}.1"]
    assert identifier["AccessionNumber"].value in (None, "") and identifier["AccessionNumber"].VR == "SH"
    assert set(RETURN_KEYS[FindLevelValues.STUDY]) <= {element.keyword for element in identifier}
    assert "SpecificCharacterSet" not in identifier


def test_text_that_is_not_ascii_goes_as_utf8() -> None:
    identifier = find_identifier(FindLevelValues.STUDY, {"PatientName": "Müller^Jürgen"})
    assert identifier.SpecificCharacterSet == "ISO_IR 192"


def test_series_and_image_queries_name_the_levels_above() -> None:
    series = find_identifier(FindLevelValues.SERIES, {"StudyInstanceUID": STUDY, "Modality": "CT"})
    image = find_identifier(FindLevelValues.IMAGE, {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES})

    assert (series.QueryRetrieveLevel, series.StudyInstanceUID, series.Modality) == ("SERIES", STUDY, "CT")
    assert (image.QueryRetrieveLevel, image.SeriesInstanceUID) == ("IMAGE", SERIES)
    assert image["SOPInstanceUID"].value in (None, "")
    for level, keys in ((FindLevelValues.SERIES, {}), (FindLevelValues.SERIES, {"StudyInstanceUID": " "}),
                        (FindLevelValues.SERIES, {"StudyInstanceUID": f"{STUDY}\\{STUDY}.1"}),
                        (FindLevelValues.IMAGE, {"StudyInstanceUID": STUDY})):
        with pytest.raises(ValueError, match=r"PS3\.4"):
            find_identifier(level, keys)


@pytest.mark.parametrize(("keys", "reason"), [
    ({"NoSuchKeyword": ""}, "not a DICOM keyword"), ({"QueryRetrieveLevel": "PATIENT"}, "not a DICOM keyword"),
    ({"TransferSyntaxUID": ""}, "not an attribute of a data set"),
    ({"ReferencedStudySequence": ""}, "sequence"), ({"StudyInstanceUID": "1.2.abc"}, "not a UID"),
    ({"StudyInstanceUID": "1." + "2" * 70}, "not a UID"), ({"StudyDate": "2024-01-01"}, "not a date"),
    ({"StudyDate": "-"}, "not a date"), ({"StudyTime": "10h15"}, "not a time"),
    ({"Rows": "7"}, "binary values"), ({"SeriesNumber": "one"}, "not a value of VR IS"),
    ({"PatientWeight": "heavy"}, "not a value of VR DS"),
    ({"PatientName": "DOE\n*"}, "control characters"), ({"PatientID": "X" * 1025}, "at most 1024"),
    ({f"k{n}": "" for n in range(65)}, "at most 64 keys")])
def test_keys_a_c_find_identifier_cannot_hold_are_refused(keys: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        find_identifier(FindLevelValues.STUDY, keys)


def test_a_retrieve_identifier_holds_the_level_and_unique_keys_only() -> None:
    study = retrieve_identifier(STUDY)
    series = retrieve_identifier(STUDY, SERIES)

    assert [(e.keyword, e.value) for e in study] == [("QueryRetrieveLevel", "STUDY"), ("StudyInstanceUID", STUDY)]
    assert [(e.keyword, e.value) for e in series] == [("QueryRetrieveLevel", "SERIES"), ("StudyInstanceUID", STUDY),
                                                       ("SeriesInstanceUID", SERIES)]
    with pytest.raises(ValueError, match="not a UID"):
        retrieve_identifier("1.2.*")


@pytest.mark.parametrize(("final", "counts", "status"), [
    (0x0000, SubOperations(3, 0, 0, 0), JobStatusValues.COMPLETED),
    (0xB000, SubOperations(2, 0, 1, 0), JobStatusValues.COMPLETED),  # warnings only
    (0xB000, SubOperations(2, 1, 0, 0), JobStatusValues.COMPLETED_WITH_FAILURES),
    (0xB000, SubOperations(0, 3, 0, 0), JobStatusValues.FAILED),
    (0xA801, SubOperations(0, 0, 0, None), JobStatusValues.FAILED),
    (0xA702, SubOperations(0, 0, 0, None), JobStatusValues.FAILED),
    (0xFE00, SubOperations(1, 0, 0, 2), JobStatusValues.FAILED),
    (None, SubOperations(1, 0, 0, 2), JobStatusValues.FAILED)])
def test_a_retrieval_ends_as_its_final_status_and_counts_say(final: int | None, counts: SubOperations,
                                                               status: JobStatusValues) -> None:
    outcome = retrieval_outcome(final, counts, (), "comment")
    assert outcome.status is status
    assert outcome.final_status == final
    if status is JobStatusValues.COMPLETED and final == 0:
        assert outcome.detail is None and outcome.counts.remaining == 0
    else:
        assert outcome.detail is not None and "comment" in outcome.detail


def test_move_destination_unknown_says_what_to_do() -> None:
    outcome = retrieval_outcome(0xA801, SubOperations(), (Failure("1.2", "x"),))
    assert outcome.detail is not None and "Move Destination unknown" in outcome.detail
    assert outcome.failures == (Failure("1.2", "x"),)


def test_a_transfer_fails_only_when_nothing_got_through() -> None:
    assert transfer_status(SubOperations(0, 0, 0)) is JobStatusValues.COMPLETED
    assert transfer_status(SubOperations(1, 1, 0)) is JobStatusValues.COMPLETED_WITH_FAILURES
    assert transfer_status(SubOperations(0, 1, 1)) is JobStatusValues.COMPLETED_WITH_FAILURES
    assert transfer_status(SubOperations(0, 2, 0)) is JobStatusValues.FAILED


def test_progress_counts_what_the_remote_reports_and_what_is_counted_here() -> None:
    progress = Progress()
    progress.reported(None, None, None, 5)
    progress.reported(2, 0, None, 3)
    assert progress.snapshot()[0] == SubOperations(2, 0, 0, 3)
    progress.counted(failed=1)
    progress.fail("1.2.3", "refused")
    assert progress.snapshot() == (SubOperations(2, 1, 0, 2), (Failure("1.2.3", "refused"),))


def test_c_get_contexts_offer_the_compressed_syntaxes_when_there_is_room() -> None:
    few = get_contexts([CTImageStorage, MRImageStorage])
    assert len(few) == 2 * (1 + len(COMPRESSED))
    assert [c.transfer_syntax for c in few[:2]] == [[ExplicitVRLittleEndian, ImplicitVRLittleEndian]] * 2
    assert {c.transfer_syntax[0] for c in few[2:]} == set(COMPRESSED)

    many = get_contexts([f"{ROOT}{n}" for n in range(20)])
    assert len(many) == 20 and all(c.transfer_syntax[0] == ExplicitVRLittleEndian for c in many)

    unknown = get_contexts([])
    assert len(unknown) == min(len(StoragePresentationContexts), MAX_CONTEXTS - 1)


def instance(sop_class: str = CTImageStorage, transfer_syntax: str = ExplicitVRLittleEndian) -> RetrievableInstance:
    return RetrievableInstance(sop_class, generate_uid(ROOT), transfer_syntax, "0" * 64)


def test_store_contexts_propose_the_stored_syntax_beside_the_uncompressed_ones() -> None:
    contexts = store_contexts([instance(), instance(transfer_syntax=RLELossless), instance(MRImageStorage),
                               instance(transfer_syntax=ImplicitVRLittleEndian)])
    assert sorted((c.abstract_syntax, tuple(c.transfer_syntax)) for c in contexts) == sorted([
        (CTImageStorage, (ExplicitVRLittleEndian, ImplicitVRLittleEndian)), (CTImageStorage, (RLELossless,)),
        (MRImageStorage, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))])


def test_a_send_needing_more_contexts_than_one_association_holds_takes_several() -> None:
    instances = [instance(f"{ROOT}{n}", syntax) for n in range(100) for syntax in (ExplicitVRLittleEndian, RLELossless)]
    batches = store_batches(instances)
    assert len(batches) == 2
    assert sorted(uid for batch in batches for uid in (i.sop_instance_uid for i in batch)) == sorted(
        i.sop_instance_uid for i in instances)
    assert all(len(store_contexts(batch)) <= MAX_CONTEXTS for batch in batches)
    assert store_batches([]) == []


def accepted(sop_class: str, *syntaxes: str) -> list[PresentationContext]:
    contexts = []
    for syntax in syntaxes:
        context = build_context(sop_class, syntax)
        context._as_scu = True  # what an accepted context looks like to pynetdicom's association
        contexts.append(context)
    return contexts


def ct(transfer_syntax: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid(ROOT)
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(range(32))
    return ds


def test_an_instance_goes_as_stored_converted_or_decompressed_as_the_remote_accepted() -> None:
    stored = ct(ExplicitVRLittleEndian)
    assert sendable(stored, accepted(CTImageStorage, ImplicitVRLittleEndian)) is stored  # pynetdicom converts

    compressed = ct(ExplicitVRLittleEndian)
    compressed.compress(RLELossless)
    assert sendable(compressed, accepted(CTImageStorage, RLELossless)).file_meta.TransferSyntaxUID == RLELossless
    uid = compressed.SOPInstanceUID
    decompressed = sendable(compressed, accepted(CTImageStorage, ExplicitVRLittleEndian))
    assert decompressed.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert decompressed.SOPInstanceUID == uid  # the same instance, sent uncompressed
    assert decompressed.PixelData == bytes(range(32))

    with pytest.raises(ValueError, match="no presentation context"):
        sendable(ct(ExplicitVRLittleEndian), accepted(MRImageStorage, ExplicitVRLittleEndian))
    with pytest.raises(ValueError, match="none of the transfer syntaxes"):
        sendable(ct(ExplicitVRBigEndian), accepted(CTImageStorage, ExplicitVRLittleEndian))
    rle = ct(ExplicitVRLittleEndian)
    rle.compress(RLELossless)
    with pytest.raises(ValueError, match="none of the transfer syntaxes"):
        sendable(rle, accepted(CTImageStorage, JPEG2000Lossless))
    assert rle.file_meta.TransferSyntaxUID == RLELossless
