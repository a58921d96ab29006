from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from radcommon.http import create_app
from radcommon.problems import Conflict


async def client_for(app: web.Application) -> TestClient:  # type: ignore[type-arg]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def always(value: bool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return value
    return check


async def test_health_readiness_and_metrics() -> None:
    client = await client_for(create_app("probe", readiness={"database": always(True), "bus": always(False)}))
    try:
        assert (await client.get("/healthz")).status == 200
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["checks"] == {"database": True, "bus": False}
        metrics = await (await client.get("/metrics")).text()
        assert 'telerad_http_requests_total{method="GET",route="/readyz",service="probe",status="503"}' in metrics
    finally:
        await client.close()


async def test_errors_are_problem_documents_with_a_request_id() -> None:
    app = create_app("probe")

    async def conflict(_: web.Request) -> web.Response:
        raise Conflict("already claimed")

    async def crash(_: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/conflict", conflict)
    app.router.add_get("/crash", crash)
    client = await client_for(app)
    try:
        response = await client.get("/conflict", headers={"X-Request-ID": "req-1"})
        assert response.status == 409
        assert response.content_type == "application/problem+json"
        assert await response.json() == {"type": "about:blank", "title": "Conflict", "status": 409,
                                          "detail": "already claimed"}
        assert response.headers["X-Request-ID"] == "req-1"
        missing = await client.get("/nowhere")
        assert missing.status == 404 and missing.content_type == "application/problem+json"
        crashed = await client.get("/crash")
        assert crashed.status == 500 and crashed.content_type == "application/problem+json"
        assert "secret" not in await crashed.text()
        assert crashed.headers["X-Request-ID"]
    finally:
        await client.close()


async def test_access_logs_are_json_with_the_request_and_trace_ids() -> None:
    import io
    import json
    import logging

    from radcommon.logging import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("probe"))
    logger = logging.getLogger("radcommon.http")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    client = await client_for(create_app("probe"))
    try:
        trace_id = "0af7651916cd43dd8448eb211c80319c"
        await client.get("/nowhere", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01",
                                              "X-Request-ID": "req-7"})
    finally:
        await client.close()
        logger.removeHandler(handler)
    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (line["service"], line["request_id"], line["trace_id"], line["status"]) == (
        "probe", "req-7", trace_id, 404)
