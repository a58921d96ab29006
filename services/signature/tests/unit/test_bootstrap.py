import asyncio
import base64
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from radcommon.auth import STEP_UP_AUDIENCE
from radcommon.canonical import content_sha256
from radcommon.config import CommonSettings
from radcommon.contracts import ReportSubmittedV1, RoleValues, UserRegisteredV1
from radcommon.messaging import Message
from radcommon.messaging.local import LocalBus
from radcommon.testing import ISSUER, TokenMinter
from signature.bootstrap import build
from signature.config import SignatureSettings

TOKENS = TokenMinter()


@pytest.fixture
async def identity_keys() -> AsyncIterator[str]:
    """identity's JWKS, as the service fetches it."""
    async def jwks(_: web.Request) -> web.Response:
        return web.json_response(TOKENS.jwks)

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def message(event: Any) -> Message:
    return Message(str(event.event_id), event.routing_key, event.model_dump_json().encode())


async def test_the_embedded_service_keeps_versions_signs_and_publishes(tmp_path: Path, identity_keys: str) -> None:
    common = CommonSettings(data_dir=tmp_path, identity_url=identity_keys, public_url=ISSUER)
    bus = LocalBus(tmp_path / "bus.db")
    await bus.connect()
    published: list[Message] = []

    async def collect(msg: Message) -> None:
        published.append(msg)

    subscription = await bus.subscribe(["signature.#"], collect)
    service = build(common, bus, embedded=True, settings=SignatureSettings(http_port=0))
    await service.prepare()
    await service.start()
    try:
        key_file = tmp_path / "signature.key"
        assert len(base64.b64decode(key_file.read_text())) == 32
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        org, user, report_id = uuid4(), uuid4(), uuid4()
        content = {"impression": "Normal."}
        await bus.publish([
            message(UserRegisteredV1(organization_id=org, user_id=user, email="r@t.test", full_name="Dr R",
                                     roles=[RoleValues.RADIOLOGIST])),
            message(ReportSubmittedV1(organization_id=org, report_id=report_id, study_instance_uid="1.2.3",
                                      author_id=user, version=1, content=content,
                                      content_sha256=content_sha256(content)))])
        headers = {"Authorization": f"Bearer {TOKENS.token(organization_id=org, user_id=user)}"}
        body = {"report_id": str(report_id), "version": 1, "meaning": "authored"}
        async with aiohttp.ClientSession(service.http_url) as http:
            for _ in range(100):  # until the consumer has kept the version
                step_up = TOKENS.token(organization_id=org, user_id=user, audience=STEP_UP_AUDIENCE)
                async with http.post("/signatures/sign", json=body,
                                     headers={**headers, "X-Step-Up-Token": step_up}) as response:
                    status, signed = response.status, await response.json()
                if status != 404:
                    break
                await asyncio.sleep(0.05)
            assert status == 201, signed
            async with http.get("/signatures/keys") as response:
                assert [k["kid"] for k in (await response.json())["keys"]] == [signed["key_id"]]
        for _ in range(100):
            if published:
                break
            await asyncio.sleep(0.05)
        [event] = published
        assert event.routing_key == "signature.report.signed.v1"
        assert signed["signature_id"] in event.body.decode()
        assert signed["signer_name"] == "Dr R"
    finally:
        await subscription.close()
        await service.stop()
        await bus.close()


def test_a_distributed_service_needs_its_secret_key(tmp_path: Path) -> None:
    common = CommonSettings(data_dir=tmp_path)
    database = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    bus = LocalBus(tmp_path / "bus.db")
    with pytest.raises(RuntimeError, match="SIGNATURE_SECRET_KEY must be set"):
        build(common, bus, embedded=False, settings=SignatureSettings(database_url=database))
    with pytest.raises(RuntimeError, match="base64 of 32"):
        build(common, bus, embedded=False, settings=SignatureSettings(database_url=database, secret_key="c2hvcnQ="))
    key = base64.b64encode(os.urandom(32)).decode()
    assert build(common, bus, embedded=False, settings=SignatureSettings(database_url=database, secret_key=key))
    assert not (tmp_path / "signature.key").exists()
