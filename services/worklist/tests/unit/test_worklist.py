from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient, TestServer

from radcommon.auth import auth_middleware
from radcommon.consumer import EventConsumer
from radcommon.contracts import PriorityValues, StudyReceivedV1, StudyUpdatedV1
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Message
from radcommon.testing import TokenMinter
from worklist.entrypoints import http
from worklist.service_layer.handlers import EVENT_HANDLERS
from worklist.service_layer.unit_of_work import WorklistUnitOfWork

MIGRATIONS = Path(http.__file__).parents[1] / "migrations"
ORG_A, ORG_B = uuid4(), uuid4()
TOKENS = TokenMinter()


def a_study(kind: type[StudyReceivedV1] = StudyReceivedV1, *, org: object = ORG_A, uid: str = "1.2.3",
            instances: int = 4, series: int = 2) -> StudyReceivedV1:
    return kind(organization_id=org, study_instance_uid=uid, patient_id="P1", patient_name="Doe^Jane",
                accession_number="ACC1", modalities=["CT"], body_parts=["CHEST"], priority=PriorityValues.STAT,
                number_of_series=series, number_of_instances=instances)


def message(event: StudyReceivedV1) -> Message:
    return Message(str(event.event_id), event.routing_key, event.model_dump_json().encode())


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'worklist.db'}")
    await database.migrate(MIGRATIONS)
    yield database
    await database.dispose()


@pytest.fixture
async def client(db: Database) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = create_app("worklist")
    app.middlewares.append(auth_middleware(TOKENS.verifier()))
    http.add_routes(app, db)
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


def consumer(db: Database) -> EventConsumer:
    return EventConsumer("worklist.events", EVENT_HANDLERS, lambda: WorklistUnitOfWork(db))


async def page(client: TestClient, org: object, query: str = "") -> dict:  # type: ignore[type-arg]
    response = await client.get(f"/worklist{query}", headers=TOKENS.bearer(organization_id=org))
    assert response.status == 200, await response.text()
    return await response.json()  # type: ignore[no-any-return]


async def test_a_received_study_becomes_one_item_and_late_instances_update_it(db: Database, client: TestClient) -> None:  # type: ignore[type-arg]
    handle = consumer(db)
    await handle(message(a_study()))
    await handle(message(a_study(StudyUpdatedV1, instances=6, series=3)))
    [item] = (await page(client, ORG_A))["items"]
    assert (item["number_of_series"], item["number_of_instances"]) == (3, 6)
    assert (item["patient_name"], item["accession_number"], item["priority"], item["status"]) == (
        "Doe^Jane", "ACC1", "stat", "received")


async def test_an_update_that_arrives_first_still_makes_the_item(db: Database, client: TestClient) -> None:  # type: ignore[type-arg]
    await consumer(db)(message(a_study(StudyUpdatedV1, instances=9)))
    [item] = (await page(client, ORG_A))["items"]
    assert item["number_of_instances"] == 9


async def test_each_organisation_sees_only_its_own_items(db: Database, client: TestClient) -> None:  # type: ignore[type-arg]
    handle = consumer(db)
    await handle(message(a_study(org=ORG_A, uid="1.1")))
    await handle(message(a_study(org=ORG_B, uid="2.2")))
    await handle(message(a_study(org=ORG_B, uid="1.1")))  # the same UID in another organisation is another study
    assert [i["study_instance_uid"] for i in (await page(client, ORG_A))["items"]] == ["1.1"]
    assert sorted(i["study_instance_uid"] for i in (await page(client, ORG_B))["items"]) == ["1.1", "2.2"]
    assert (await page(client, uuid4()))["items"] == []


async def test_paging(db: Database, client: TestClient) -> None:  # type: ignore[type-arg]
    handle = consumer(db)
    for n in range(5):
        await handle(message(a_study(uid=f"1.{n}")))
    first = await page(client, ORG_A, "?limit=2")
    rest = await page(client, ORG_A, "?limit=10&offset=2")
    assert first["total"] == 5 and len(first["items"]) == 2 and len(rest["items"]) == 3
    assert {i["id"] for i in first["items"]}.isdisjoint({i["id"] for i in rest["items"]})


@pytest.mark.parametrize("query", ["?limit=0", "?limit=501", "?limit=ten", "?offset=-1"])
async def test_bad_paging_is_a_problem(client: TestClient, query: str) -> None:  # type: ignore[type-arg]
    response = await client.get(f"/worklist{query}", headers=TOKENS.bearer(organization_id=ORG_A))
    assert response.status == 422
    assert response.content_type == "application/problem+json"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}])
async def test_a_request_without_a_valid_token_is_refused(client: TestClient, headers: dict[str, str]) -> None:  # type: ignore[type-arg]
    response = await client.get("/worklist", headers=headers)
    assert response.status == 401
    assert response.content_type == "application/problem+json"


async def test_a_token_from_another_issuer_key_is_refused(client: TestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/worklist", headers=TokenMinter().bearer(organization_id=ORG_A))
    assert response.status == 401


async def test_the_openapi_document_describes_the_worklist(client: TestClient) -> None:  # type: ignore[type-arg]
    document = await (await client.get("/openapi.json")).json()
    operation = document["paths"]["/worklist"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"limit", "offset"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WorklistPage"}
    assert "study_instance_uid" in document["components"]["schemas"]["WorklistItemView"]["properties"]
