from typing import Any

from aiohttp import web
from openapi_spec_validator import validate

from gateway.openapi import mark_proxy, public_document


def upstream(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.1.0", "paths": {path: {method: operation}}, "components": {"schemas": schemas}}


def proxied_app(*routes: tuple[str, str, str, str | None]) -> web.Application:
    app = web.Application()
    for method, path, service, upstream_path in routes:
        async def handler(_: web.Request) -> web.Response:
            return web.Response()
        mark_proxy(handler, service, upstream_path)
        app.router.add_route(method, path, handler)
    return app


PROBLEM = {"type": "object", "properties": {"status": {"type": "integer"}}}


def test_upstream_operations_appear_under_public_paths_with_the_gateway_answers() -> None:
    app = proxied_app(("GET", "/api/worklist", "worklist", "/worklist"),
                      ("POST", "/api/auth/login", "identity", None),
                      ("DELETE", "/api/modalities/{modality_id}", "dicom-ingest", "/modalities/{id}"))
    documents = {
        "worklist": upstream("/worklist", "get", {"operationId": "list_worklist", "responses": {"200": {
            "description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}}}},
            {"Page": {"type": "object", "properties": {"total": {"type": "integer"}}}, "Problem": PROBLEM}),
        "identity": upstream("/api/auth/login", "post", {"operationId": "login", "responses": {"200": {
            "description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Page"}}}}}},
            {"Page": {"type": "object", "properties": {"token": {"type": "string"}}}, "Problem": PROBLEM}),
        "dicom-ingest": upstream("/modalities/{id}", "delete", {"operationId": "delete_modality", "parameters": [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "gone"}}}, {"Problem": PROBLEM}),
    }
    document = public_document(app, documents, public_routes={("POST", "/api/auth/login")})
    validate(document)  # type: ignore[arg-type]
    worklist = document["paths"]["/api/worklist"]["get"]
    assert worklist["operationId"] == "worklist_list_worklist"
    assert worklist["security"] == [{"bearerAuth": []}]
    assert {"401", "403", "429", "502", "503"} <= set(worklist["responses"])
    login = document["paths"]["/api/auth/login"]["post"]
    assert "security" not in login and "401" not in login["responses"]
    # two services' different "Page" schemas both survive, the second one renamed
    assert worklist["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Page"
    assert login["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] == (
        "#/components/schemas/identity_Page")
    assert document["components"]["schemas"]["identity_Page"]["properties"] == {"token": {"type": "string"}}
    [parameter] = document["paths"]["/api/modalities/{modality_id}"]["delete"]["parameters"]
    assert parameter["name"] == "modality_id"


def test_routes_whose_service_is_missing_or_undocumented_are_left_out() -> None:
    app = proxied_app(("GET", "/api/worklist", "worklist", "/worklist"), ("GET", "/api/other", "identity", None))
    document = public_document(app, {"worklist": upstream("/elsewhere", "get", {"responses": {}}, {})},
                               public_routes=set())
    assert document["paths"] == {}
