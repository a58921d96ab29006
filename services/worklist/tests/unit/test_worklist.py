from uuid import uuid4

import pytest
from aiohttp.test_utils import TestClient

from radcommon.contracts import StudyUpdatedV1
from radcommon.testing import TokenMinter
from support.worklist import ORG_A, ORG_B, TOKENS, Feed, a_study, page


async def test_a_received_study_becomes_one_item_and_late_instances_update_it(feed: Feed, client: TestClient) -> None:  # type: ignore[type-arg]
    handle = feed
    await handle(a_study())
    await handle(a_study(StudyUpdatedV1, instances=6, series=3))
    [item] = (await page(client, ORG_A))["items"]
    assert (item["number_of_series"], item["number_of_instances"]) == (3, 6)
    assert (item["patient_name"], item["accession_number"], item["priority"], item["status"]) == (
        "Doe^Jane", "ACC1", "stat", "received")


async def test_an_update_that_arrives_first_still_makes_the_item(feed: Feed, client: TestClient) -> None:  # type: ignore[type-arg]
    await feed(a_study(StudyUpdatedV1, instances=9))
    [item] = (await page(client, ORG_A))["items"]
    assert item["number_of_instances"] == 9


async def test_each_organisation_sees_only_its_own_items(feed: Feed, client: TestClient) -> None:  # type: ignore[type-arg]
    handle = feed
    await handle(a_study(org=ORG_A, uid="1.1"))
    await handle(a_study(org=ORG_B, uid="2.2"))
    await handle(a_study(org=ORG_B, uid="1.1"))  # the same UID in another organisation is another study
    assert [i["study_instance_uid"] for i in (await page(client, ORG_A))["items"]] == ["1.1"]
    assert sorted(i["study_instance_uid"] for i in (await page(client, ORG_B))["items"]) == ["1.1", "2.2"]
    assert (await page(client, uuid4()))["items"] == []


async def test_paging(feed: Feed, client: TestClient) -> None:  # type: ignore[type-arg]
    handle = feed
    for n in range(5):
        await handle(a_study(uid=f"1.{n}"))
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
    assert {"limit", "offset", "status", "priority", "patient", "accession", "sort"} <= {
        p["name"] for p in operation["parameters"]}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WorklistPage"}
    assert "study_instance_uid" in document["components"]["schemas"]["WorklistItemView"]["properties"]
