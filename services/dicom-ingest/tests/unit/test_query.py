from datetime import date
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicom_ingest.dicom.query import (
    ATTRIBUTES,
    Exact,
    InformationModelValues,
    InvalidQuery,
    Pattern,
    QueryRetrieveLevelValues,
    Range,
    build_query,
    find_request,
    parse_match,
    response_identifier,
    retrieve_query,
)

PATIENT_ROOT, STUDY_ROOT = InformationModelValues.PATIENT_ROOT, InformationModelValues.STUDY_ROOT
STUDY_UID, SERIES_UID = "1.2.826.0.1.3680043.10.1234.1", "1.2.826.0.1.3680043.10.1234.2"


def match(keyword: str, *values: str) -> Any:
    return parse_match(ATTRIBUTES[keyword], list(values))


def identifier(**keys: Any) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(("keyword", "values"), [
    ("PatientName", [""]), ("PatientName", ["*"]), ("StudyDate", ["  "]), ("StudyInstanceUID", []),
    ("Modality", ["CT", "*"]), ("SeriesNumber", ["*"])])
def test_empty_values_and_a_lone_star_are_universal(keyword: str, values: list[str]) -> None:
    assert parse_match(ATTRIBUTES[keyword], values) is None


@pytest.mark.parametrize(("keyword", "value", "terms"), [
    ("PatientID", "PAT1", (Exact("PAT1"),)),
    ("PatientName", "Doe*", (Pattern("Doe*"),)),
    ("AccessionNumber", "A?C", (Pattern("A?C"),)),
    ("StudyInstanceUID", f"{STUDY_UID}\\{SERIES_UID}", (Exact(STUDY_UID), Exact(SERIES_UID))),
    ("StudyDate", "20240115", (Exact(date(2024, 1, 15)),)),
    ("StudyDate", "20240101-", (Range(date(2024, 1, 1), None),)),
    ("StudyDate", "-20240131", (Range(None, date(2024, 1, 31)),)),
    ("StudyDate", "20240101 - 20240131", (Range(date(2024, 1, 1), date(2024, 1, 31)),)),
    ("PatientBirthDate", "1970.01.01", (Exact(date(1970, 1, 1)),)),
    ("StudyTime", "2230", (Range("223000", "223000"),)),
    ("StudyTime", "10-113000.5", (Range("100000", "113000"),)),
    ("StudyTime", "10:15:30-", (Range("101530", None),)),
    ("SeriesNumber", " 7 ", (Exact(7),)),
    ("ModalitiesInStudy", "CT\\M?", (Exact("CT"), Pattern("M?"))),
])
def test_a_value_becomes_the_terms_its_vr_allows(keyword: str, value: str, terms: tuple[Any, ...]) -> None:
    assert match(keyword, *value.split("\\")).terms == terms


def test_wild_cards_mean_nothing_in_a_uid_a_date_or_a_number() -> None:
    for keyword, value in [("StudyInstanceUID", "1.2.*"), ("StudyDate", "2024*"), ("SeriesNumber", "1?"),
                           ("StudyTime", "10?0")]:
        with pytest.raises(InvalidQuery):
            match(keyword, value)


@pytest.mark.parametrize(("keyword", "value", "reason"), [
    ("StudyInstanceUID", "1.2.abc", "not a UID"), ("StudyInstanceUID", "1." + "2" * 70, "not a UID"),
    ("StudyDate", "20240230", "not a date"), ("StudyDate", "2024-01", "not a date"), ("StudyDate", "-", "one end"),
    ("StudyDate", "20240201-20240101", "ends before it starts"), ("StudyTime", "2500", "not a time"),
    ("StudyTime", "1200-1100", "ends before it starts"), ("SeriesNumber", "one", "not an integer"),
    ("NumberOfStudyRelatedInstances", "3", "cannot be matched"), ("PatientID", "X" * 1025, "longer than")])
def test_a_value_its_vr_cannot_hold_is_refused(keyword: str, value: str, reason: str) -> None:
    with pytest.raises(InvalidQuery, match=reason) as raised:
        match(keyword, value)
    assert raised.value.offending_element == ATTRIBUTES[keyword].tag


def test_too_many_values_are_refused() -> None:
    with pytest.raises(InvalidQuery, match="more than"):
        match("SOPInstanceUID", *[f"1.2.{n}" for n in range(4097)])


@pytest.mark.parametrize(("keyword", "value", "stored", "expected"), [
    ("PatientName", "doe^jane", "Doe^Jane", True),  # PN: case-insensitive (PS3.4 C.2.2.2.1.1)
    ("PatientName", "DOE*", "Doe^Jane", True),
    ("PatientName", "D?e^J*", "doe^jane", True),
    ("PatientName", "Doe", "Doe^Jane", False),
    ("AccessionNumber", "acc1", "ACC1", False),  # anything else: case-sensitive
    ("AccessionNumber", "ACC*", "ACC1", True),
    ("AccessionNumber", "ACC?", "ACC12", False),
    ("AccessionNumber", "A*1", "ACC1", True),
    ("AccessionNumber", "*", "", True),
    ("StudyDescription", "*[left]*", "Knee [left] AP", True),
    ("StudyDescription", "*.*", "Knee", False),  # a dot is a dot, not "any character"
    ("StudyDescription", "Knee*", None, False),
    ("StudyDate", "20240101-", date(2024, 1, 1), True),
    ("StudyDate", "20240101-", date(2023, 12, 31), False),
    ("StudyDate", "-20240131", date(2024, 1, 31), True),
    ("StudyDate", "20240101-20240131", None, False),
    ("StudyTime", "1015", "101500.123", True),
    ("StudyTime", "1015", "1015", True),
    ("StudyTime", "101500", "101501", False),
    ("StudyTime", "-0930", "", False),  # no time is not midnight
    ("StudyTime", "2359-", "23:59:59", True),
    ("StudyTime", "0900-1000", "10", True),
    ("StudyTime", "0900-1000", "1001", False),
    ("SeriesNumber", "2", 2, True),
    ("SeriesNumber", "2", None, False),
    ("ModalitiesInStudy", "MR", ["CT", "MR"], True),
    ("ModalitiesInStudy", "CT\\MR", ["SR"], False),
    ("ModalitiesInStudy", "S?", ["CT", "SR"], True),
])
def test_matching(keyword: str, value: str, stored: Any, expected: bool) -> None:
    found = match(keyword, *value.split("\\"))
    assert (found is None or found.matches(stored)) is expected


@pytest.mark.parametrize(("model", "level", "keys", "reason"), [
    (PATIENT_ROOT, None, {}, "no Query/Retrieve Level"),
    (PATIENT_ROOT, "STUDIES", {}, "not a Query/Retrieve Level"),
    (STUDY_ROOT, "PATIENT", {}, "has no PATIENT level"),
    (PATIENT_ROOT, "STUDY", {"StudyInstanceUID": ""}, "has no PatientID"),
    (PATIENT_ROOT, "STUDY", {"PatientID": "", "StudyInstanceUID": ""}, "needs a single value of PatientID"),
    (PATIENT_ROOT, "STUDY", {"PatientID": "PAT*"}, "needs a single value of PatientID"),
    (STUDY_ROOT, "SERIES", {"Modality": "CT"}, "has no StudyInstanceUID"),
    (STUDY_ROOT, "SERIES", {"StudyInstanceUID": [STUDY_UID, SERIES_UID]}, "single value of StudyInstanceUID"),
    (STUDY_ROOT, "IMAGE", {"StudyInstanceUID": STUDY_UID}, "has no SeriesInstanceUID"),
    (PATIENT_ROOT, "IMAGE", {"StudyInstanceUID": STUDY_UID, "SeriesInstanceUID": SERIES_UID}, "has no PatientID"),
])
def test_a_find_identifier_outside_the_hierarchical_search_is_refused(
        model: InformationModelValues, level: str | None, keys: dict[str, Any], reason: str) -> None:
    ds = identifier(**keys) if level is None else identifier(QueryRetrieveLevel=level, **keys)
    with pytest.raises(InvalidQuery, match=reason):
        find_request(ds, model)


def test_a_study_root_series_query_matches_its_keys_and_returns_what_it_asked() -> None:
    ds = identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=STUDY_UID, Modality="CT", SeriesNumber="",
                    PatientName="", StudyDate="", SeriesDescription="Ax*", PerformedStationName="")
    ds.add_new(0x00091010, "LO", "private")

    request = find_request(ds, STUDY_ROOT)

    query = request.query
    assert query.level is QueryRetrieveLevelValues.SERIES
    assert {m.attribute.keyword: m.terms for m in query.matches} == {
        "StudyInstanceUID": (Exact(STUDY_UID),), "Modality": (Exact("CT"),), "SeriesDescription": (Pattern("Ax*"),)}
    assert query.return_keys[:2] == ("StudyInstanceUID", "SeriesInstanceUID")  # unique keys first
    assert set(query.return_keys[2:]) == {"PatientName", "StudyDate", "Modality", "SeriesDescription", "SeriesNumber"}
    assert request.unsupported_keys  # the private key had a value nobody can match


def test_a_key_below_the_level_is_answered_empty_and_flagged_only_when_it_had_a_value() -> None:
    quiet = find_request(identifier(QueryRetrieveLevel="STUDY", SeriesDescription=""), STUDY_ROOT)
    loud = find_request(identifier(QueryRetrieveLevel="STUDY", SeriesDescription="Ax"), STUDY_ROOT)

    assert not quiet.unsupported_keys and loud.unsupported_keys
    assert loud.query.matches == () and "SeriesDescription" not in loud.query.return_keys


def test_a_patient_root_study_query_needs_and_returns_the_patient_id() -> None:
    request = find_request(identifier(QueryRetrieveLevel="STUDY", PatientID="PAT1", StudyDate="20240101-"),
                           PATIENT_ROOT)
    assert request.query.return_keys[:2] == ("PatientID", "StudyInstanceUID")
    assert not request.unsupported_keys


def test_the_response_holds_the_level_the_unique_keys_and_every_requested_key() -> None:
    ds = identifier(QueryRetrieveLevel="STUDY", PatientName="doe*", StudyDate="", ModalitiesInStudy="",
                    NumberOfStudyRelatedInstances="", RetrieveAETitle="", OtherPatientIDs="",
                    ReferencedStudySequence=[])
    request = find_request(ds, STUDY_ROOT)
    row = {"StudyInstanceUID": STUDY_UID, "PatientName": "Doe^Jane", "StudyDate": date(2024, 1, 15),
           "ModalitiesInStudy": ["CT", "SR"], "NumberOfStudyRelatedInstances": 3}

    response = response_identifier(request, row, {"RetrieveAETitle": "TELERAD"})

    assert response.QueryRetrieveLevel == "STUDY" and response.SpecificCharacterSet == "ISO_IR 192"
    assert (response.StudyInstanceUID, str(response.PatientName), response.StudyDate) == (
        STUDY_UID, "Doe^Jane", "20240115")
    assert list(response.ModalitiesInStudy) == ["CT", "SR"]
    assert (response.NumberOfStudyRelatedInstances, response.RetrieveAETitle) == (3, "TELERAD")
    assert response.OtherPatientIDs in ("", None) and len(response.ReferencedStudySequence) == 0
    assert "InstanceAvailability" not in response  # not asked for


@pytest.mark.parametrize(("model", "keys", "level", "terms"), [
    (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": [STUDY_UID, SERIES_UID]}, "STUDY",
     {"StudyInstanceUID": (Exact(STUDY_UID), Exact(SERIES_UID))}),
    (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientID": "PAT1"}, "PATIENT", {"PatientID": (Exact("PAT1"),)}),
    (PATIENT_ROOT, {"QueryRetrieveLevel": "SERIES", "PatientID": "PAT1", "StudyInstanceUID": STUDY_UID,
                    "SeriesInstanceUID": SERIES_UID, "PatientName": ""}, "SERIES",
     {"PatientID": (Exact("PAT1"),), "StudyInstanceUID": (Exact(STUDY_UID),),
      "SeriesInstanceUID": (Exact(SERIES_UID),)}),
])
def test_a_retrieve_identifier_names_entities_by_their_unique_keys(
        model: InformationModelValues, keys: dict[str, Any], level: str, terms: dict[str, Any]) -> None:
    query = retrieve_query(identifier(**keys), model)
    assert query.level == level
    assert {m.attribute.keyword: m.terms for m in query.matches} == terms


@pytest.mark.parametrize(("model", "keys", "reason"), [
    (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY"}, "needs StudyInstanceUID"),
    (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}, "needs StudyInstanceUID"),
    (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": STUDY_UID, "PatientName": "Doe"},
     "not a Unique Key"),
    (STUDY_ROOT, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": STUDY_UID, "PatientID": "PAT1"},
     "not a Unique Key"),
    (PATIENT_ROOT, {"QueryRetrieveLevel": "PATIENT", "PatientID": "PAT*"}, "single value or a list of UIDs"),
    (STUDY_ROOT, {"QueryRetrieveLevel": "SERIES", "SeriesInstanceUID": SERIES_UID}, "has no StudyInstanceUID"),
])
def test_a_retrieve_identifier_that_is_not_unique_keys_only_is_refused(
        model: InformationModelValues, keys: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidQuery, match=reason):
        retrieve_query(identifier(**keys), model)


def test_qido_search_parameters_build_the_same_query() -> None:
    query = build_query("STUDY", {"StudyDate": "20240101-20240131", "00100010": "doe*",
                                  "StudyInstanceUID": f"{STUDY_UID},{SERIES_UID}"},
                        return_keys=["StudyDescription"], limit=25, offset=50, fuzzy_matching=True)

    assert {m.attribute.keyword: m.terms for m in query.matches} == {
        "StudyDate": (Range(date(2024, 1, 1), date(2024, 1, 31)),), "PatientName": (Pattern("doe*"),),
        "StudyInstanceUID": (Exact(STUDY_UID), Exact(SERIES_UID))}
    assert query.return_keys == ("PatientID", "StudyInstanceUID", "StudyDescription", "StudyDate", "PatientName")
    assert (query.limit, query.offset, query.fuzzy_matching) == (25, 50, True)
    assert "ModalitiesInStudy" in build_query("STUDY", return_keys=["all"]).return_keys
    assert "SeriesNumber" not in build_query("STUDY", return_keys=["all"]).return_keys


@pytest.mark.parametrize(("level", "keys", "return_keys"), [
    ("STUDY", {"Modality": "CT"}, []), ("STUDY", {"NoSuchKeyword": "x"}, []), ("STUDIES", {}, []),
    ("STUDY", {}, ["SeriesNumber"]), ("SERIES", {"RetrieveAETitle": "X"}, [])])
def test_qido_parameters_the_index_cannot_answer_are_refused(level: str, keys: dict[str, str],
                                                             return_keys: list[str]) -> None:
    with pytest.raises(InvalidQuery):
        build_query(level, keys, return_keys=return_keys)


def test_a_page_is_a_copy_and_never_negative() -> None:
    query = build_query("STUDY", {"AccessionNumber": "ACC1"})

    page = query.page(10, 20)

    assert (page.limit, page.offset, page.matches) == (10, 20, query.matches) and query.limit is None
    with pytest.raises(ValueError, match="negative"):
        query.page(-1, 0)
