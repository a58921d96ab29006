"""The index answers queries as :meth:`Match.matches` says, on SQLite and (marked integration) PostgreSQL."""

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio

from dicom_ingest.adapters.index_queries import SqlIndexQueries
from dicom_ingest.dicom.attributes import InstanceAttributes
from dicom_ingest.dicom.query import build_query
from dicom_ingest.domain.model import StoreInstance
from dicom_ingest.service_layer.handlers import index_instance
from radcommon.db import Database
from radcommon.uow import SqlUnitOfWork
from support.servers import postgres_databases

MIGRATIONS = Path(__file__).parents[2] / "src" / "dicom_ingest" / "migrations"
ORG_A, ORG_B = UUID(int=0xA), UUID(int=0xB)
CT, SR, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"
pytestmark = pytest.mark.asyncio(loop_scope="module")  # one seeded database per backend for the module


def uid(*parts: int) -> str:
    return "1.2.826.0.1.3680043.10.1234." + ".".join(map(str, parts))


PATIENTS = {"PAT1": ("Doe^Jane", date(1970, 1, 1), "F"), "PAT2": ("DOE^John", date(1985, 6, 30), "M"),
            "PAT3": ("Smith^Anna", None, "")}
#: study number: (patient, accession, date, time, description, [(modality, sop class, instances)])
STUDIES = {
    1: ("PAT1", "ACC1", date(2024, 1, 15), "101500", "CT CHEST", [("CT", CT, 2), ("SR", SR, 1)]),
    2: ("PAT2", "ACC2", date(2024, 1, 31), "0930", "MR HEAD", [("MR", MR, 1)]),
    3: ("PAT3", "ACC_3%", date(2023, 12, 31), "23:59:59", "Knee [left]", [("CT", CT, 1)]),
    4: ("PAT3", "ACC4", None, "", "", [("CT", CT, 1)]),
}


async def seed(db: Database, organization_id: UUID, studies: dict[int, Any], org_part: int) -> None:
    for number, (patient_id, accession, study_date, study_time, description, series) in studies.items():
        name, birth, sex = PATIENTS[patient_id]
        for s, (modality, sop_class, count) in enumerate(series, start=1):
            for i in range(1, count + 1):
                attributes = InstanceAttributes(
                    sop_class_uid=sop_class, sop_instance_uid=uid(org_part, number, s, i),
                    study_instance_uid=uid(org_part, number), series_instance_uid=uid(org_part, number, s),
                    patient_id=patient_id, patient_name=name, patient_birth_date=birth, patient_sex=sex,
                    accession_number=accession, study_date=study_date, study_time=study_time,
                    study_description=description, referring_physician_name="Ref^Doctor", modality=modality,
                    series_number=s, series_description=f"{modality} series", instance_number=i)
                key = f"{org_part}{number}{s}{i}".ljust(64, "0")
                command = StoreInstance(organization_id, attributes, EXPLICIT, key, 100, "CT1")
                async with SqlUnitOfWork(db) as uow:
                    await index_instance(command, uow)


@pytest_asyncio.fixture(scope="module", loop_scope="module",
                        params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def index(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[SqlIndexQueries]:
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('index') / 'dicom_ingest.db'}")
        yield await _seeded(db)
        await db.dispose()
        return
    async with postgres_databases("dicom-ingest") as urls:
        db = Database(urls["dicom-ingest"])
        try:
            yield await _seeded(db)
        finally:
            await db.dispose()


async def _seeded(db: Database) -> SqlIndexQueries:
    await db.ensure_created()
    await db.migrate(MIGRATIONS)
    await seed(db, ORG_A, STUDIES, 1)
    await seed(db, ORG_B, {5: STUDIES[1]}, 2)
    return SqlIndexQueries(db)


STUDY_CASES = [
    ({"PatientName": "doe*"}, {1, 2}),
    ({"PatientName": "Doe^Jane"}, {1}),
    ({"PatientName": "DOE^JANE"}, {1}),
    ({"PatientName": "*^J*"}, {1, 2}),
    ({"PatientID": "PAT3"}, {3, 4}),
    ({"AccessionNumber": "acc1"}, set()),
    ({"AccessionNumber": "ACC?"}, {1, 2, 4}),
    ({"AccessionNumber": "ACC_*"}, {3}),
    ({"AccessionNumber": "*%"}, {3}),
    ({"AccessionNumber": "ACC_3%"}, {3}),
    ({"AccessionNumber": "ACC1\\ACC2"}, {1, 2}),
    ({"StudyDescription": "*[left]"}, {3}),
    ({"StudyDescription": "* *"}, {1, 2, 3}),
    ({"StudyDate": "20240101-"}, {1, 2}),
    ({"StudyDate": "-20240115"}, {1, 3}),
    ({"StudyDate": "20240115-20240131"}, {1, 2}),
    ({"StudyDate": "20240115"}, {1}),
    ({"StudyTime": "0930-1015"}, {1, 2}),
    ({"StudyTime": "2359-"}, {3}),
    ({"StudyTime": "-1000"}, {2}),
    ({"StudyTime": "1015"}, {1}),
    ({"StudyInstanceUID": f"{uid(1, 1)}\\{uid(1, 3)}\\{uid(2, 5)}"}, {1, 3}),
    ({"ModalitiesInStudy": "MR"}, {2}),
    ({"ModalitiesInStudy": "SR\\MR"}, {1, 2}),
    ({"ModalitiesInStudy": "?R"}, {1, 2}),
    ({"SOPClassesInStudy": SR}, {1}),
    ({"PatientBirthDate": "-19800101"}, {1}),
    ({"PatientSex": "M"}, {2}),
    ({"PatientName": "doe*", "StudyDate": "20240120-", "ModalitiesInStudy": "MR"}, {2}),
    ({}, {1, 2, 3, 4}),
]


@pytest.mark.parametrize(("keys", "studies"), STUDY_CASES)
async def test_study_matching_follows_the_match_rules(index: SqlIndexQueries, keys: dict[str, str],
                                                      studies: set[int]) -> None:
    query = build_query("STUDY", keys)

    found = await index.find(ORG_A, query)

    assert {row["StudyInstanceUID"] for row in found} == {uid(1, n) for n in studies}
    every = await index.find(ORG_A, build_query("STUDY", return_keys=["all"]))
    by_the_rules = {row["StudyInstanceUID"] for row in every
                    if all(m.matches(row[m.attribute.keyword]) for m in query.matches)}
    assert by_the_rules == {uid(1, n) for n in studies}


async def test_a_study_answer_carries_patient_study_and_computed_attributes(index: SqlIndexQueries) -> None:
    [row] = await index.find(ORG_A, build_query("STUDY", {"StudyInstanceUID": uid(1, 1)}, return_keys=["all"]))

    assert row["PatientName"] == "Doe^Jane" and row["PatientBirthDate"] == date(1970, 1, 1)
    assert (row["StudyDate"], row["StudyTime"], row["AccessionNumber"]) == (date(2024, 1, 15), "101500", "ACC1")
    assert row["ModalitiesInStudy"] == ["CT", "SR"] and row["SOPClassesInStudy"] == sorted([CT, SR])
    assert (row["NumberOfStudyRelatedSeries"], row["NumberOfStudyRelatedInstances"]) == (2, 3)


async def test_an_organisation_sees_only_its_own_entities(index: SqlIndexQueries) -> None:
    for level, keys in [("PATIENT", {}), ("STUDY", {"AccessionNumber": "ACC1"}),
                        ("SERIES", {"StudyInstanceUID": uid(1, 1)}), ("IMAGE", {"StudyInstanceUID": uid(1, 1)})]:
        mine = await index.find(ORG_B, build_query(level, keys))
        assert all(row["PatientID"] == "PAT1" for row in mine)
        assert all(row.get("StudyInstanceUID", uid(2, 5)) == uid(2, 5) for row in mine)

    assert await index.find(ORG_B, build_query("STUDY", {"StudyInstanceUID": uid(1, 1)})) == []
    assert await index.instances(ORG_B, build_query("STUDY", {"StudyInstanceUID": uid(1, 1)}), 100) == []


async def test_patients_series_and_images(index: SqlIndexQueries) -> None:
    patients = await index.find(ORG_A, build_query("PATIENT", {"PatientID": "PAT*"}, return_keys=["all"]))
    assert [(p["PatientID"], p["NumberOfPatientRelatedStudies"], p["NumberOfPatientRelatedInstances"])
            for p in patients] == [("PAT2", 1, 1), ("PAT1", 1, 3), ("PAT3", 2, 2)]  # ordered by name

    series = await index.find(ORG_A, build_query("SERIES", {"StudyInstanceUID": uid(1, 1), "Modality": "CT"},
                                                 return_keys=["all"]))
    assert [(s["SeriesInstanceUID"], s["SeriesNumber"], s["NumberOfSeriesRelatedInstances"]) for s in series] == [
        (uid(1, 1, 1), 1, 2)]

    images = await index.find(ORG_A, build_query("IMAGE", {"SeriesInstanceUID": uid(1, 1, 1), "InstanceNumber": "2"},
                                                 return_keys=["SOPClassUID"]))
    assert [(i["SOPInstanceUID"], i["SOPClassUID"]) for i in images] == [(uid(1, 1, 1, 2), CT)]


async def test_pages_follow_a_stable_order(index: SqlIndexQueries) -> None:
    query = build_query("STUDY")
    pages = [await index.find(ORG_A, query.page(2, offset)) for offset in (0, 2, 4)]

    assert [len(page) for page in pages] == [2, 2, 0]
    assert [row["StudyInstanceUID"] for page in pages for row in page] == [uid(1, n) for n in (3, 1, 2, 4)]


async def test_a_retrieval_lists_instances_study_by_study(index: SqlIndexQueries) -> None:
    query = build_query("STUDY", {"StudyInstanceUID": f"{uid(1, 2)}\\{uid(1, 1)}"})

    instances = await index.instances(ORG_A, query, 100)

    assert sorted(i.sop_instance_uid for i in instances) == sorted(
        [uid(1, 1, 1, 1), uid(1, 1, 1, 2), uid(1, 1, 2, 1), uid(1, 2, 1, 1)])
    assert {(i.sop_class_uid, i.transfer_syntax_uid) for i in instances} == {
        (CT, EXPLICIT), (SR, EXPLICIT), (MR, EXPLICIT)}
    assert len({i.storage_key for i in instances}) == 4
    assert len(await index.instances(ORG_A, query, 2)) == 2
