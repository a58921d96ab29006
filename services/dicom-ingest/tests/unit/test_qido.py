"""QIDO-RS search parameters understood, and results written as DICOM JSON (dicom/qido.py)."""

from datetime import date
from typing import Any

import pytest

from dicom_ingest.dicom.qido import (
    ALL_INSTANCES,
    ALL_SERIES,
    ALL_STUDIES,
    FUZZY_MATCHING_WARNING,
    MAX_RESULTS,
    SERIES_INSTANCES,
    STUDY_INSTANCES,
    STUDY_SERIES,
    TRUNCATED_WARNING,
    Resource,
    Search,
    json_element,
    parse_search,
    search_results,
)
from dicom_ingest.dicom.query import Exact, InvalidQuery, Pattern, QueryRetrieveLevelValues, Range

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.10.1234.1", "1.2.826.0.1.3680043.10.1234.1.2", "1.2.826.0.1.3680043.10.9"
BASE = "https://pacs.example/dicomweb"
NO_PATH = {"StudyInstanceUID": "", "SeriesInstanceUID": ""}


def search(resource: Resource = ALL_STUDIES, path: dict[str, str] | None = None, /, **parameters: str) -> Search:
    return parse_search(resource, path or NO_PATH, list(parameters.items()))


def matched(found: Search) -> dict[str, tuple[Any, ...]]:
    return {m.attribute.keyword: m.terms for m in found.query.matches}


def test_matches_by_keyword_and_by_tag_become_the_terms_of_c_find() -> None:
    found = search(PatientName="SMITH*", StudyDate="20240101-20240131", **{"00080061": "CT", "00100020": "PAT1"})

    assert matched(found) == {
        "PatientName": (Pattern("SMITH*"),), "StudyDate": (Range(date(2024, 1, 1), date(2024, 1, 31)),),
        "ModalitiesInStudy": (Exact("CT"),), "PatientID": (Exact("PAT1"),)}
    assert found.query.level is QueryRetrieveLevelValues.STUDY and found.warnings == ()


def test_a_uid_list_may_be_separated_by_commas_or_backslashes() -> None:
    other = STUDY + ".7"
    assert matched(search(StudyInstanceUID=f"{STUDY},{other}")) == {"StudyInstanceUID": (Exact(STUDY), Exact(other))}
    assert matched(search(StudyInstanceUID=f"{STUDY}\\{other}")) == {"StudyInstanceUID": (Exact(STUDY), Exact(other))}


def test_each_level_answers_its_table_and_the_levels_its_path_does_not_fix() -> None:
    study = {"PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "NumberOfStudyRelatedInstances"}
    series = {"Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances"}
    image = {"SOPClassUID", "SOPInstanceUID", "InstanceNumber"}
    path = {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES}
    keywords = {resource: set(search(resource, path).keywords) for resource in (
        ALL_STUDIES, STUDY_SERIES, ALL_SERIES, SERIES_INSTANCES, STUDY_INSTANCES, ALL_INSTANCES)}

    assert study <= keywords[ALL_STUDIES] and not (series | image) & keywords[ALL_STUDIES]
    assert series <= keywords[STUDY_SERIES] and not (study - {"PatientID"}) & keywords[STUDY_SERIES]
    assert study | series <= keywords[ALL_SERIES]
    assert image <= keywords[SERIES_INSTANCES] and not (series | study - {"PatientID"}) & keywords[SERIES_INSTANCES]
    assert series | image <= keywords[STUDY_INSTANCES] and "ModalitiesInStudy" not in keywords[STUDY_INSTANCES]
    assert study | series | image <= keywords[ALL_INSTANCES]


def test_the_path_fixes_the_study_and_series() -> None:
    found = search(SERIES_INSTANCES, {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES})

    assert matched(found) == {"StudyInstanceUID": (Exact(STUDY),), "SeriesInstanceUID": (Exact(SERIES),)}
    with pytest.raises(InvalidQuery, match="given by the path"):
        search(STUDY_SERIES, {"StudyInstanceUID": STUDY}, StudyInstanceUID=STUDY)
    with pytest.raises(InvalidQuery, match="not a StudyInstanceUID"):
        search(STUDY_SERIES, {"StudyInstanceUID": "not-a-uid"})


def test_includefield_adds_what_the_level_holds_and_drops_what_lies_below_it() -> None:
    found = parse_search(ALL_STUDIES, NO_PATH, [("includefield", "00081030,00080060"),
                                                ("includefield", "SOPClassesInStudy"),
                                                ("includefield", "InstitutionName")])

    assert {"StudyDescription", "SOPClassesInStudy"} <= set(found.keywords)
    assert "Modality" not in found.keywords and found.warnings == ()  # OHIF asks for Modality on studies


def test_includefield_all_returns_every_attribute_of_the_level_and_above() -> None:
    studies, series = search(includefield="all"), search(ALL_SERIES, includefield="all")

    assert {"PatientSex", "IssuerOfPatientID", "NumberOfPatientRelatedStudies", "SOPClassesInStudy"} <= set(
        studies.keywords)
    assert "SeriesInstanceUID" not in studies.keywords
    assert {"BodyPartExamined", "SeriesDescription", "StudyDescription"} <= set(series.keywords)


@pytest.mark.parametrize("parameters", [
    {"NoSuchKeyword": "x"}, {"patientid": "PAT1"}, {"_": "1699999999"}, {"0010002": "PAT1"},
    {"includefield": "NotAnAttribute"},
    {"limit": "-1"}, {"limit": "ten"}, {"limit": "1e3"}, {"offset": "99999999999999999999"},
    {"fuzzymatching": "yes"}, {"emptyvaluematching": "1"},
    {"StudyDate": "2024-01-01"}, {"StudyDate": "20240131-20240101"}, {"StudyTime": "25"},
    {"StudyInstanceUID": "1.2.abc"}, {"SeriesNumber": "one"}, {"PatientBirthDate": "19701301"},
])
def test_what_cannot_be_read_is_refused_with_a_reason(parameters: dict[str, str]) -> None:
    with pytest.raises(InvalidQuery) as caught:
        search(ALL_SERIES, **parameters)
    assert str(caught.value)


def test_a_repeated_parameter_or_match_is_refused() -> None:
    for parameters in ([("limit", "1"), ("limit", "2")], [("PatientID", "A"), ("00100020", "B")]):
        with pytest.raises(InvalidQuery, match="more than once"):
            parse_search(ALL_STUDIES, NO_PATH, parameters)


def test_attributes_that_cannot_be_matched_are_ignored_with_a_warning() -> None:
    found = search(InstitutionName="General", Modality="CT", NumberOfStudyRelatedSeries="2",
                   **{"ReferencedStudySequence.ReferencedSOPInstanceUID": STUDY, "00091001": "x"})

    assert found.query.matches == ()
    [warning] = found.warnings
    assert warning.startswith("The following attributes are not supported for matching")
    for name in ("InstitutionName", "Modality", "NumberOfStudyRelatedSeries", "ReferencedStudySequence", "00091001"):
        assert name in warning
    assert "NumberOfStudyRelatedSeries" in found.keywords


def test_universal_matching_asks_for_the_attribute_back_without_a_warning() -> None:
    found = search(ALL_SERIES, BodyPartExamined="", SeriesDescription="*", InstitutionName="")

    assert found.query.matches == () and found.warnings == ()
    assert {"BodyPartExamined", "SeriesDescription"} <= set(found.keywords)


def test_fuzzy_empty_and_multiple_value_matching_are_warned_about_when_asked_for() -> None:
    assert search(fuzzymatching="false").warnings == ()
    assert search(fuzzymatching="true", PatientName="SMITH").warnings == (FUZZY_MATCHING_WARNING,)
    assert search(emptyvaluematching="true", multiplevaluematching="true").warnings == (
        "The emptyvaluematching parameter is not supported. Empty Value Matching has not been performed.",
        "The multiplevaluematching parameter is not supported. Multiple Value Matching has not been performed.")


def test_limit_and_offset_page_the_query_and_more_than_the_maximum_is_cut_with_a_warning() -> None:
    paged = search(limit="50", offset="100")
    assert (paged.query.limit, paged.query.offset, paged.probing) == (50, 100, False)
    rows = [{"n": n} for n in range(51)]
    assert paged.page(rows[:50]) == (rows[:50], ())

    unlimited = search()
    assert (unlimited.query.limit, unlimited.probing) == (MAX_RESULTS + 1, True)
    many = [{"n": n} for n in range(MAX_RESULTS + 1)]
    assert unlimited.page(many) == (many[:MAX_RESULTS], (TRUNCATED_WARNING,))
    assert unlimited.page(many[:MAX_RESULTS]) == (many[:MAX_RESULTS], ())
    assert search(limit=str(MAX_RESULTS * 10)).query.limit == MAX_RESULTS + 1


ROW = {"PatientName": "Doe^Jane=山田^花子=やまだ^はなこ", "PatientID": "PAT1", "PatientBirthDate": date(1970, 1, 2),
       "PatientSex": "", "StudyInstanceUID": STUDY, "StudyDate": date(2024, 1, 15), "StudyTime": "101500",
       "AccessionNumber": "ACC1", "StudyID": "1", "StudyDescription": "CT CHEST", "ReferringPhysicianName": "",
       "ModalitiesInStudy": ["CT", "SR"], "NumberOfStudyRelatedSeries": 2, "NumberOfStudyRelatedInstances": 3}


def test_a_study_result_is_dicom_json_in_tag_order() -> None:
    [result] = search_results(search(), [ROW], BASE)

    assert list(result) == sorted(result)
    assert result["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane", "Ideographic": "山田^花子",
                                                          "Phonetic": "やまだ^はなこ"}]}
    assert result["00100030"] == {"vr": "DA", "Value": ["19700102"]}
    assert result["00100040"] == {"vr": "CS"} and result["00080090"] == {"vr": "PN"}  # required, empty
    assert result["00080061"] == {"vr": "CS", "Value": ["CT", "SR"]}
    assert result["00201206"] == {"vr": "IS", "Value": [2]} and result["00201208"] == {"vr": "IS", "Value": [3]}
    assert result["0020000D"] == {"vr": "UI", "Value": [STUDY]} and result["00080020"]["Value"] == ["20240115"]
    assert result["00081190"] == {"vr": "UR", "Value": [f"{BASE}/studies/{STUDY}"]}
    assert result["00080005"] == {"vr": "CS", "Value": ["ISO_IR 192"]}
    assert result["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}


def test_an_instance_result_links_to_the_instance_and_leaves_out_an_unknown_frame_count() -> None:
    row = {"PatientID": "PAT1", "StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES, "SOPInstanceUID": SOP,
           "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "InstanceNumber": 4, "NumberOfFrames": None}
    found = search(SERIES_INSTANCES, {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES})

    [result] = search_results(found, [row], BASE)

    assert result["00081190"]["Value"] == [f"{BASE}/studies/{STUDY}/series/{SERIES}/instances/{SOP}"]
    assert result["00200013"] == {"vr": "IS", "Value": [4]} and "00280008" not in result
    [asked] = search_results(search(SERIES_INSTANCES, {"StudyInstanceUID": STUDY, "SeriesInstanceUID": SERIES},
                                    includefield="NumberOfFrames"), [row], BASE)
    assert asked["00280008"] == {"vr": "IS"}
    [multiframe] = search_results(found, [{**row, "NumberOfFrames": 12}], BASE)
    assert multiframe["00280008"] == {"vr": "IS", "Value": [12]}


@pytest.mark.parametrize(("vr", "value", "element"), [
    ("PN", "", {"vr": "PN"}), ("PN", "==", {"vr": "PN"}), ("PN", "Doe^John", {"vr": "PN", "Value": [
        {"Alphabetic": "Doe^John"}]}), ("PN", "=Yamada", {"vr": "PN", "Value": [{"Ideographic": "Yamada"}]}),
    ("IS", 0, {"vr": "IS", "Value": [0]}), ("IS", None, {"vr": "IS"}), ("CS", [], {"vr": "CS"}),
    ("UI", ["1.2", "", "1.3"], {"vr": "UI", "Value": ["1.2", "1.3"]}), ("TM", "101500", {"vr": "TM", "Value": [
        "101500"]}),
])
def test_json_elements(vr: str, value: Any, element: dict[str, Any]) -> None:
    assert json_element(vr, value) == element
