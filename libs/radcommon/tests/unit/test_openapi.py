from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from radcommon import openapi as openapi_module
from radcommon.http import create_app
from radcommon.openapi import openapi_document, operation, parse_body, parse_query
from radcommon.problems import Conflict


class Modality(StrEnum):
    CT = "CT"
    MR = "MR"


class Patient(BaseModel):
    name: str = Field(min_length=1)
    birth_date: date | None = None


class StudyCreate(BaseModel):
    accession_number: str = Field(max_length=16)
    modality: Modality
    patient: Patient
    priority: int = 0


class StudyView(BaseModel):
    study_id: UUID
    accession_number: str
    modality: Modality
    patient: Patient


class StudyQuery(BaseModel):
    limit: int = Field(50, ge=1, le=500, description="page size")
    modality: Modality | None = None
    accession: list[str] = []
    since: date | None = None


class StudyPath(BaseModel):
    study_id: UUID


@operation("List studies", query=StudyQuery, responses={200: list[StudyView]}, tags=["studies"])
async def list_studies(request: web.Request) -> web.Response:
    query = parse_query(request, StudyQuery)
    return web.json_response(query.model_dump(mode="json"))


@operation("Register a study", request=StudyCreate, responses={201: StudyView, 409: None}, security=True)
async def register_study(request: web.Request) -> web.Response:
    study = await parse_body(request, StudyCreate)
    if study.accession_number == "TAKEN":
        raise Conflict("accession number in use")
    view = StudyView(study_id=uuid4(), **study.model_dump())
    return web.json_response(view.model_dump(mode="json"), status=201)


@operation("One study", path=StudyPath, responses={200: StudyView, 404: None})
async def get_study(_: web.Request) -> web.Response:
    return web.json_response({})


@operation("Delete a study", path=StudyPath, responses={204: None, 404: None})
async def delete_study(_: web.Request) -> web.Response:
    return web.Response(status=204)


@operation("A file", responses={200: None})
async def get_file(_: web.Request) -> web.Response:
    """The file at that path."""
    return web.Response(text="file")


async def undocumented(_: web.Request) -> web.Response:
    return web.Response(text="hidden")


def studies_app() -> web.Application:
    app = create_app("studies", version="1.2.3")
    app.router.add_get("/studies", list_studies)
    app.router.add_post("/studies", register_study)
    app.router.add_get("/studies/{study_id}", get_study)
    app.router.add_delete("/studies/{study_id}", delete_study)
    app.router.add_get("/files/{dir}/{name:.+}", get_file)
    app.router.add_get("/hidden", undocumented)
    app.router.add_route("*", "/anything", get_file)
    return app


def document() -> dict[str, Any]:
    return openapi_document(studies_app(), title="studies", version="1.2.3", servers=["https://pacs.example"])


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def conforms(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> list[str]:
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    return [e.message for e in validator.iter_errors(instance)]


async def client_for(app: web.Application) -> TestClient:  # type: ignore[type-arg]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["jsonSchemaDialect"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["info"] == {"title": "studies", "version": "1.2.3"}
    assert doc["servers"] == [{"url": "https://pacs.example"}]


def test_every_ref_points_into_components() -> None:
    doc = document()
    found = refs(doc)
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref
    assert "$defs" not in str(doc)


def test_only_described_routes_appear_once_each() -> None:
    doc = document()
    assert doc["paths"].keys() == {"/studies", "/studies/{study_id}", "/files/{dir}/{name}", "/openapi.json"}
    assert doc["paths"]["/studies"].keys() == {"get", "post"}
    assert doc["paths"]["/studies/{study_id}"].keys() == {"get", "delete"}
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert sorted(ids) == sorted(["list_studies", "register_study", "get_study", "delete_study", "get_file",
                                  "openapi_json"])


def test_a_handler_on_two_routes_gets_two_operation_ids() -> None:
    app = web.Application()
    app.router.add_get("/a/{name}", get_file)
    app.router.add_get("/b/{name}", get_file)
    doc = openapi_document(app, title="t", version="1")
    assert [doc["paths"][p]["get"]["operationId"] for p in ("/a/{name}", "/b/{name}")] == ["get_file", "get_file_2"]
    assert doc["paths"]["/a/{name}"]["get"]["description"] == "The file at that path."
    validate(doc)


def test_path_parameters_are_strings_unless_a_model_types_them() -> None:
    doc = document()
    assert doc["paths"]["/files/{dir}/{name}"]["get"]["parameters"] == [
        {"name": "dir", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    ]
    [study_id] = doc["paths"]["/studies/{study_id}"]["get"]["parameters"]
    assert study_id["in"] == "path" and study_id["required"] is True
    assert study_id["schema"]["type"] == "string" and study_id["schema"]["format"] == "uuid"


def test_a_path_model_naming_an_absent_parameter_is_an_error() -> None:
    app = web.Application()
    app.router.add_get("/studies", get_study)
    with pytest.raises(ValueError, match="study_id"):
        openapi_document(app, title="t", version="1")


def test_query_parameters_come_from_the_query_model() -> None:
    doc = document()
    params = {p["name"]: p for p in doc["paths"]["/studies"]["get"]["parameters"]}
    assert params.keys() == {"limit", "modality", "accession", "since"}
    assert all(p["in"] == "query" and p["required"] is False for p in params.values())
    assert params["limit"]["description"] == "page size"
    assert params["limit"]["schema"].items() >= {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}.items()
    assert params["modality"]["schema"] == {"$ref": "#/components/schemas/Modality"}
    assert params["accession"]["schema"]["type"] == "array"
    assert params["since"]["schema"]["format"] == "date"
    assert doc["components"]["schemas"]["Modality"]["enum"] == ["CT", "MR"]
    assert not {"StudyQuery", "StudyPath"} & doc["components"]["schemas"].keys()


def test_request_body_and_responses_refer_to_the_models() -> None:
    doc = document()
    post = doc["paths"]["/studies"]["post"]
    assert post["requestBody"] == {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/StudyCreate"}}}}
    created = post["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/StudyView"}
    listed = doc["paths"]["/studies"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed == {"type": "array", "items": {"$ref": "#/components/schemas/StudyView"}}
    schemas = doc["components"]["schemas"]
    assert schemas["StudyCreate"]["properties"]["patient"] == {"$ref": "#/components/schemas/Patient"}
    assert "birth_date" not in schemas["Patient"]["required"]
    assert schemas["StudyCreate"]["required"] == ["accession_number", "modality", "patient"]
    assert "content" not in doc["paths"]["/studies/{study_id}"]["delete"]["responses"]["204"]


def test_error_responses_are_problem_documents_and_the_helpers_errors_are_implied() -> None:
    doc = document()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    post = doc["paths"]["/studies"]["post"]["responses"]
    assert post.keys() == {"201", "400", "401", "409", "422"}
    assert all(post[s]["content"] == problem for s in ("400", "401", "409", "422"))
    assert post["422"]["description"] == "Unprocessable Content"
    assert doc["paths"]["/studies"]["get"]["responses"].keys() == {"200", "422"}
    assert doc["paths"]["/studies/{study_id}"]["get"]["responses"]["404"]["content"] == problem
    assert doc["paths"]["/files/{dir}/{name}"]["get"]["responses"].keys() == {"200"}
    assert doc["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status"]


def test_bearer_security_only_where_asked() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    assert doc["paths"]["/studies"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in doc["paths"]["/studies"]["get"]


def test_an_error_status_cannot_carry_a_model() -> None:
    with pytest.raises(ValueError, match="problem document"):
        operation("bad", responses={404: StudyView})


def test_a_model_named_problem_is_refused() -> None:
    class Problem(BaseModel):
        x: int

    @operation("clash", responses={200: Problem})
    async def clash(_: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/clash", clash)
    with pytest.raises(ValueError, match="Problem"):
        openapi_document(app, title="t", version="1")


async def test_malformed_json_is_400_and_a_wrong_shape_422_both_documented() -> None:
    doc = document()
    problem = {"$ref": "#/components/schemas/Problem"}
    client = await client_for(studies_app())
    try:
        malformed = await client.post("/studies", data=b'{"accession_number": ')
        assert malformed.status == 400 and malformed.content_type == "application/problem+json"
        body = await malformed.json()
        assert body["title"] == "Bad Request" and body["errors"][0]["loc"] == ["body"]
        assert conforms(doc, problem, body) == []

        wrong = await client.post("/studies", json={"accession_number": "A1", "modality": "XR", "patient": {}})
        assert wrong.status == 422 and wrong.content_type == "application/problem+json"
        body = await wrong.json()
        assert sorted(e["loc"] for e in body["errors"]) == [["body", "modality"], ["body", "patient", "name"]]
        assert all(e.keys() == {"loc", "msg"} for e in body["errors"])
        assert conforms(doc, problem, body) == []

        created = await client.post("/studies", json={"accession_number": "A1", "modality": "CT",
                                                      "patient": {"name": "Doe^Jane"}})
        assert created.status == 201
        schema = doc["paths"]["/studies"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
        assert conforms(doc, schema, await created.json()) == []
        conflict = await client.post("/studies", json={"accession_number": "TAKEN", "modality": "CT",
                                                       "patient": {"name": "Doe^Jane"}})
        assert conflict.status == 409 and conforms(doc, problem, await conflict.json()) == []
    finally:
        await client.close()


async def test_the_query_string_is_validated_and_repeated_keys_fill_lists() -> None:
    client = await client_for(studies_app())
    try:
        ok = await client.get("/studies", params=[("limit", "5"), ("accession", "A1"), ("accession", "A2"),
                                                  ("modality", "MR")])
        assert ok.status == 200
        assert await ok.json() == {"limit": 5, "modality": "MR", "accession": ["A1", "A2"], "since": None}
        bad = await client.get("/studies", params={"limit": "0", "since": "yesterday"})
        assert bad.status == 422 and bad.content_type == "application/problem+json"
        body = await bad.json()
        assert body["status"] == 422
        assert sorted(e["loc"] for e in body["errors"]) == [["query", "limit"], ["query", "since"]]
    finally:
        await client.close()


async def test_every_app_serves_its_document_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    real = openapi_module.openapi_document

    def counting(app: web.Application, **kwargs: Any) -> dict[str, Any]:
        built.append(kwargs["title"])
        return real(app, **kwargs)

    monkeypatch.setattr(openapi_module, "openapi_document", counting)
    client = await client_for(studies_app())
    try:
        first = await client.get("/openapi.json")
        assert first.status == 200 and first.content_type == "application/json"
        served = await first.json()
        validate(served)
        assert served["info"] == {"title": "studies", "version": "1.2.3"}
        assert "/studies/{study_id}" in served["paths"]
        assert (await client.get("/openapi.json")).status == 200
        assert built == ["studies"]
    finally:
        await client.close()
