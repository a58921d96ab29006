"""The QIDO-RS routes over a seeded index, on SQLite and (marked integration) PostgreSQL, with real tokens."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.attributes import InstanceAttributes
from dicom_ingest.domain.model import StoreInstance
from dicom_ingest.entrypoints.dicomweb import add_routes
from dicom_ingest.service_layer.handlers import index_instance
from radcommon.auth import auth_middleware
from radcommon.contracts import RoleValues
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.testing import TokenMinter
from radcommon.uow import SqlUnitOfWork
from support.servers import postgres_databases

MIGRATIONS = Path(__file__).parents[2] / "src" / "dicom_ingest" / "migrations"
ORG_A, ORG_B = UUID(int=0xA), UUID(int=0xB)
CT, SR, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.4"
BASE = "https://telerad.example/dicomweb"
pytestmark = pytest.mark.asyncio(loop_scope="module")


def uid(*parts: int) -> str:
    return "1.2.826.0.1.3680043.10.1234.77." + ".".join(map(str, parts))


PATIENTS = {"PAT1": ("Doe^Jane", date(1970, 1, 1), "F"), "PAT2": ("SMITH^John", date(1985, 6, 30), "M")}
#: study number: (patient, accession, date, description, [(modality, sop class, instances)])
STUDIES: dict[int, tuple[str, str, date | None, str, list[tuple[str, str, int]]]] = {
    1: ("PAT1", "ACC1", date(2024, 1, 15), "CT CHEST", [("CT", CT, 2), ("SR", SR, 1)]),
    2: ("PAT1", "ACC2", date(2024, 3, 2), "MR HEAD", [("MR", MR, 3)]),
    3: ("PAT2", "ACC3", date(2024, 1, 31), "CT ABDOMEN", [("CT", CT, 1)]),
    4: ("PAT2", "ACC4", date(2023, 12, 31), "MR KNEE", [("MR", MR, 1)]),
    5: ("PAT2", "ACC5", None, "", [("CT", CT, 1)]),
}
NEWEST_FIRST = [2, 3, 1, 4, 5]


async def seed(db: Database, organization_id: UUID, org_part: int, studies: dict[int, Any]) -> None:
    for number, (patient_id, accession, study_date, description, series) in studies.items():
        name, birth, sex = PATIENTS[patient_id]
        for s, (modality, sop_class, count) in enumerate(series, start=1):
            for i in range(1, count + 1):
                attributes = InstanceAttributes(
                    sop_class_uid=sop_class, sop_instance_uid=uid(org_part, number, s, i),
                    study_instance_uid=uid(org_part, number), series_instance_uid=uid(org_part, number, s),
                    patient_id=patient_id, patient_name=name, patient_birth_date=birth, patient_sex=sex,
                    accession_number=accession, study_date=study_date, study_time="101500", study_id=str(number),
                    study_description=description, referring_physician_name="Ref^Doctor", modality=modality,
                    series_number=s, series_description=f"{modality} series {s}", instance_number=i,
                    number_of_frames=12 if (number, i) == (2, 3) else None)
                key = f"{org_part}{number}{s}{i}".ljust(64, "0")
                async with SqlUnitOfWork(db) as uow:
                    await index_instance(StoreInstance(organization_id, attributes, "1.2.840.10008.1.2.1", key, 100,
                                                       "CT1"), uow)


@dataclass
class Qido:
    client: TestClient[Any, Any]
    minter: TokenMinter
    statements: list[str]
    last: Any = None

    async def get(self, path: str, params: Any = None, *, organization: UUID = ORG_A,
                  roles: tuple[RoleValues, ...] = (RoleValues.VIEWER,), accept: str | None = None,
                  status: int = 200) -> Any:
        headers = self.minter.bearer(organization_id=organization, roles=roles)
        if accept:
            headers["Accept"] = accept
        async with self.client.get(path, params=params, headers=headers) as response:
            body = await response.json(content_type=None)
            assert response.status == status, body
            self.last = response
            return body


@pytest_asyncio.fixture(scope="module", loop_scope="module",
                        params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
async def qido(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Qido]:
    folder = tmp_path_factory.mktemp("qido")
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{folder / 'dicom_ingest.db'}")
        async for served in _served(db, folder):
            yield served
        return
    async with postgres_databases("dicom-ingest") as urls:
        async for served in _served(Database(urls["dicom-ingest"]), folder):
            yield served


async def _served(db: Database, folder: Path) -> AsyncIterator[Qido]:
    await db.ensure_created()
    await db.migrate(MIGRATIONS)
    await seed(db, ORG_A, 1, STUDIES)
    await seed(db, ORG_B, 2, {1: STUDIES[1]})
    minter = TokenMinter()
    app = create_app("dicom-ingest")
    app.middlewares.append(auth_middleware(minter.verifier()))

    async def index(_: StoreInstance) -> str:
        raise AssertionError("nothing is stored here")

    async def discard(_: str) -> None:
        return None

    add_routes(app, db=db, storage=FileStorage(folder / "dicom", fsync=False), index=index,
               discard_if_unreferenced=discard, settings=DicomIngestSettings(dicomweb_threads=1), base_url=BASE)
    statements: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: statements.append(statement))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Qido(client, minter, statements)
    finally:
        await client.close()
        await db.dispose()


def values(results: list[dict[str, Any]], tag: str) -> list[Any]:
    return [r[tag]["Value"][0] if "Value" in r[tag] else None for r in results]


def studies(results: list[dict[str, Any]]) -> list[int]:
    return [int(u.rsplit(".", 1)[1]) for u in values(results, "0020000D")]


# --- studies -----------------------------------------------------------------------------------------------------

async def test_all_studies_newest_first_with_the_required_attributes(qido: Qido) -> None:
    results = await qido.get("/dicomweb/studies")

    assert studies(results) == NEWEST_FIRST
    assert qido.last.content_type == "application/dicom+json"
    first = results[0]
    assert first["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    assert first["00080061"] == {"vr": "CS", "Value": ["MR"]} and first["00080050"]["Value"] == ["ACC2"]
    assert (first["00201206"]["Value"], first["00201208"]["Value"]) == ([1], [3])
    assert first["00081190"] == {"vr": "UR", "Value": [f"{BASE}/studies/{uid(1, 2)}"]}
    for tag in ("00080020", "00080030", "00080090", "00100020", "00100030", "00100040", "00200010"):
        assert tag in first
    assert results[-1]["00080020"] == {"vr": "DA"}  # the undated study: last, its date empty


@pytest.mark.parametrize(("params", "expected"), [
    ({"PatientID": "PAT1"}, [2, 1]),
    ({"00100020": "PAT2"}, [3, 4, 5]),
    ({"PatientName": "smith*"}, [3, 4, 5]),
    ({"PatientName": "DOE^JANE"}, [2, 1]),
    ({"StudyDate": "20240101-20240131"}, [3, 1]),
    ({"StudyDate": "20240101-20240131", "ModalitiesInStudy": "CT"}, [3, 1]),
    ({"ModalitiesInStudy": "MR"}, [2, 4]),
    ({"ModalitiesInStudy": "SR"}, [1]),
    ({"StudyInstanceUID": f"{uid(1, 4)},{uid(1, 1)},{uid(2, 1)}"}, [1, 4]),
    ({"AccessionNumber": "ACC3"}, [3]),
    ({"StudyDescription": "MR*"}, [2, 4]),
    ({"StudyDescription": "*ch*"}, []),
    ({"PatientBirthDate": "-19800101", "StudyDate": "2024"}, None),  # a bad date: 400 below
])
async def test_study_matching(qido: Qido, params: dict[str, str], expected: list[int] | None) -> None:
    if expected is None:
        problem = await qido.get("/dicomweb/studies", params, status=400)
        assert "StudyDate" in problem["detail"]
        return
    assert studies(await qido.get("/dicomweb/studies", params)) == expected


async def test_limit_and_offset_page_in_a_stable_order(qido: Qido) -> None:
    pages = [studies(await qido.get("/dicomweb/studies", {"limit": "2", "offset": str(o)})) for o in (0, 2, 4, 6)]

    assert pages == [NEWEST_FIRST[:2], NEWEST_FIRST[2:4], NEWEST_FIRST[4:], []]


async def test_includefield_adds_attributes_and_counts_need_no_query_per_study(qido: Qido) -> None:
    qido.statements.clear()
    results = await qido.get("/dicomweb/studies", [("includefield", "00081030,00080060"),
                                                   ("includefield", "SOPClassesInStudy")])

    selects = [s for s in qido.statements if s.lstrip().upper().startswith("SELECT")]
    assert 1 <= len(selects) <= 2, selects  # the studies, then their SOP classes: not a query per study
    [study_1] = [r for r in results if r["0020000D"]["Value"] == [uid(1, 1)]]
    assert study_1["00081030"] == {"vr": "LO", "Value": ["CT CHEST"]}
    assert study_1["00080062"] == {"vr": "UI", "Value": sorted([CT, SR])}
    assert "00080060" not in study_1  # a series attribute is not returned for studies
    everything = await qido.get("/dicomweb/studies", {"includefield": "all", "PatientID": "PAT2"})
    assert everything[0]["00201200"] == {"vr": "IS", "Value": [3]}  # Number of Patient Related Studies


# --- series and instances ------------------------------------------------------------------------------------------

async def test_a_studys_series_and_all_series(qido: Qido) -> None:
    series = await qido.get(f"/dicomweb/studies/{uid(1, 1)}/series")
    assert values(series, "0020000E") == [uid(1, 1, 1), uid(1, 1, 2)]
    assert values(series, "00080060") == ["CT", "SR"] and values(series, "00201209") == [2, 1]
    assert values(series, "00200011") == [1, 2]
    assert series[0]["00081190"]["Value"] == [f"{BASE}/studies/{uid(1, 1)}/series/{uid(1, 1, 1)}"]
    assert "00100010" not in series[0]  # the study is fixed by the path: its attributes are not repeated

    mr = await qido.get("/dicomweb/series", {"Modality": "MR"})
    assert values(mr, "0020000E") == [uid(1, 2, 1), uid(1, 4, 1)]
    assert mr[0]["00100010"]["Value"] == [{"Alphabetic": "Doe^Jane"}]  # all series carry their study's attributes
    assert mr[0]["00080061"]["Value"] == ["MR"]
    assert await qido.get("/dicomweb/series", {"SeriesInstanceUID": uid(1, 1, 2)}) != []


async def test_instances_of_a_series_a_study_and_all(qido: Qido) -> None:
    listed = await qido.get(f"/dicomweb/studies/{uid(1, 2)}/series/{uid(1, 2, 1)}/instances")
    assert values(listed, "00080018") == [uid(1, 2, 1, i) for i in (1, 2, 3)]
    assert values(listed, "00200013") == [1, 2, 3] and values(listed, "00080016") == [MR] * 3
    assert [r.get("00280008") for r in listed] == [None, None, {"vr": "IS", "Value": [12]}]
    assert listed[0]["00081190"]["Value"] == [
        f"{BASE}/studies/{uid(1, 2)}/series/{uid(1, 2, 1)}/instances/{uid(1, 2, 1, 1)}"]

    of_study = await qido.get(f"/dicomweb/studies/{uid(1, 1)}/instances", {"SOPClassUID": SR})
    assert values(of_study, "00080018") == [uid(1, 1, 2, 1)] and values(of_study, "00080060") == ["SR"]
    everywhere = await qido.get("/dicomweb/instances", {"SOPInstanceUID": uid(1, 3, 1, 1)})
    assert values(everywhere, "00100020") == ["PAT2"] and values(everywhere, "0020000E") == [uid(1, 3, 1)]


# --- organisations, errors, media types, warnings ------------------------------------------------------------------

async def test_another_organisations_studies_never_appear(qido: Qido) -> None:
    mine = await qido.get("/dicomweb/studies", organization=ORG_B)
    assert studies(mine) == [1] and values(mine, "0020000D") == [uid(2, 1)]
    assert await qido.get("/dicomweb/studies", {"StudyInstanceUID": uid(1, 2)}, organization=ORG_B) == []
    assert await qido.get(f"/dicomweb/studies/{uid(1, 1)}/series", organization=ORG_B) == []
    assert await qido.get("/dicomweb/instances", {"PatientID": "PAT2"}, organization=ORG_B) == []
    assert await qido.get("/dicomweb/studies", {"PatientID": "PAT1"}, organization=UUID(int=0xC)) == []


@pytest.mark.parametrize(("path", "params", "reason"), [
    ("/dicomweb/studies", {"NoSuchAttribute": "1"}, "neither a search parameter nor a DICOM attribute"),
    ("/dicomweb/studies", {"limit": "-5"}, "limit"),
    ("/dicomweb/studies", {"StudyDate": "2024-01-01"}, "not a date"),
    ("/dicomweb/studies", {"fuzzymatching": "maybe"}, "true or false"),
    ("/dicomweb/studies/not-a-uid/series", None, "not a StudyInstanceUID"),
    ("/dicomweb/series", {"SeriesNumber": "one"}, "not an integer"),
])
async def test_a_bad_search_is_400_with_a_reason(qido: Qido, path: str, params: Any, reason: str) -> None:
    problem = await qido.get(path, params, status=400)
    assert reason in problem["detail"] and qido.last.content_type == "application/problem+json"


async def test_media_types_roles_and_warnings(qido: Qido) -> None:
    assert studies(await qido.get("/dicomweb/studies", {"PatientID": "PAT1"}, accept="application/json")) == [2, 1]
    assert qido.last.content_type == "application/json"
    await qido.get("/dicomweb/studies", accept='multipart/related; type="application/dicom+xml"', status=406)
    await qido.get("/dicomweb/studies", {"accept": "application/dicom+json"}, accept="text/html")
    await qido.get("/dicomweb/studies", roles=(RoleValues.OPERATOR,), status=403)
    async with qido.client.get("/dicomweb/studies") as anonymous:
        assert anonymous.status == 401

    assert "Warning" not in qido.last.headers
    await qido.get("/dicomweb/studies", {"PatientName": "doe*", "fuzzymatching": "true"})
    assert qido.last.headers["Warning"] == (f'299 {BASE} "The fuzzymatching parameter is not supported. Only '
                                            'literal matching has been performed."')
    ignored = await qido.get("/dicomweb/studies", {"InstitutionName": "Elsewhere", "PatientID": "PAT1"})
    assert studies(ignored) == [2, 1]
    assert "InstitutionName" in qido.last.headers["Warning"]
