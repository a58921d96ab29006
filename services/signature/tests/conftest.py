"""What the signature tests share; each kind of test brings its own ``db`` (unit: SQLite, integration: PostgreSQL)."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from radcommon.auth import STEP_UP_AUDIENCE, SqlRevocationList
from radcommon.canonical import content_sha256
from radcommon.consumer import EventConsumer
from radcommon.contracts import Event, ReportSubmittedV1, RoleValues, UserRegisteredV1
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Message
from radcommon.outbox import outbox_table
from radcommon.testing import TokenMinter
from signature.adapters.secret_box import SecretBox
from signature.entrypoints import http
from signature.service_layer import commands
from signature.service_layer.handlers import EVENT_HANDLERS
from signature.service_layer.keyring import KeyRing
from signature.service_layer.unit_of_work import SignatureUnitOfWork

TOKENS = TokenMinter()
ORG_A, ORG_B = uuid4(), uuid4()


@dataclass(frozen=True)
class Person:
    user_id: UUID
    organization_id: UUID
    name: str
    session_id: UUID
    roles: tuple[RoleValues, ...] = (RoleValues.RADIOLOGIST,)

    def access(self) -> str:
        return TOKENS.token(organization_id=self.organization_id, roles=self.roles, user_id=self.user_id,
                            session_id=self.session_id)

    def step_up(self, **kwargs: Any) -> str:
        claims: dict[str, Any] = {"organization_id": self.organization_id, "roles": self.roles,
                                  "user_id": self.user_id, "session_id": self.session_id,
                                  "audience": STEP_UP_AUDIENCE, "purpose": "sign", **kwargs}
        return TOKENS.token(**claims)

    def headers(self, step_up: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.access()}"}
        if step_up is not None:
            headers["X-Step-Up-Token"] = step_up
        return headers


def a_content(text: str = "No acute cardiopulmonary process.") -> dict[str, Any]:
    return {"findings": "Lungs are clear.", "impression": text, "sections": [{"title": "Technique", "body": "PA"}]}


class Desk:
    """Events in through the consumer, requests through HTTP, tampering through SQL: the service as it runs."""

    ORG_A, ORG_B = ORG_A, ORG_B

    def __init__(self, db: Database, client: TestClient, keyring: KeyRing) -> None:  # type: ignore[type-arg]
        self.db, self.client, self.keyring = db, client, keyring
        self.consumer = EventConsumer("signature.events", EVENT_HANDLERS, lambda: SignatureUnitOfWork(db))

    async def feed(self, *events: Event) -> None:
        for event in events:
            await self.consumer(Message(str(event.event_id), event.routing_key, event.model_dump_json().encode()))

    async def person(self, org: UUID = ORG_A, name: str = "Dr Jane Reader",
                     roles: tuple[RoleValues, ...] = (RoleValues.RADIOLOGIST,)) -> Person:
        person = Person(uuid4(), org, name, uuid4(), roles)
        await self.feed(UserRegisteredV1(organization_id=org, user_id=person.user_id, email=f"{uuid4().hex[:8]}@t.test",
                                         full_name=name, roles=list(roles)))
        return person

    def submitted(self, report_id: UUID, version: int = 1, *, org: UUID = ORG_A, content: dict[str, Any] | None = None,
                  addendum_id: UUID | None = None, digest: str | None = None) -> ReportSubmittedV1:
        content = content if content is not None else a_content(f"version {version}")
        return ReportSubmittedV1(organization_id=org, report_id=report_id, study_instance_uid="1.2.840.1",
                                 author_id=uuid4(), version=version, accession_number="ACC1", content=content,
                                 content_sha256=digest or content_sha256(content), addendum_id=addendum_id)

    async def submit(self, report_id: UUID | None = None, version: int = 1, **kwargs: Any) -> UUID:
        report_id = report_id or uuid4()
        await self.feed(self.submitted(report_id, version, **kwargs))
        return report_id

    async def sign(self, person: Person, report_id: UUID, version: int = 1, meaning: str = "authored", *,
                   step_up: str | None = "fresh", **body: Any) -> Any:
        token = person.step_up() if step_up == "fresh" else step_up
        return await self.client.post("/signatures/sign", headers=person.headers(token), json={
            "report_id": str(report_id), "version": version, "meaning": meaning, **body})

    async def signed(self, person: Person, report_id: UUID, version: int = 1, meaning: str = "authored",
                     **body: Any) -> dict[str, Any]:
        response = await self.sign(person, report_id, version, meaning, **body)
        assert response.status == 201, await response.text()
        return await response.json()  # type: ignore[no-any-return]

    async def get(self, path: str, person: Person) -> tuple[int, Any]:
        response = await self.client.get(path, headers=person.headers())
        return response.status, await response.json()

    async def verify(self, signature_id: str, person: Person) -> dict[str, Any]:
        status, body = await self.get(f"/signatures/verify/{signature_id}", person)
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    async def sql(self, statement: str, **parameters: Any) -> None:
        async with self.db.engine.begin() as connection:
            await connection.execute(sa.text(statement), parameters)

    async def outbox(self) -> list[tuple[str, dict[str, Any]]]:
        async with self.db.session() as session:
            rows = (await session.execute(sa.select(outbox_table.c.routing_key, outbox_table.c.body)
                                          .order_by(outbox_table.c.id))).all()
        return [(key, json.loads(body)) for key, body in rows]


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing(SecretBox(SecretBox.generate_key()), timedelta(days=90))


@pytest.fixture
async def client(db: Database, keyring: KeyRing) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    await commands.ensure_signing_key(SignatureUnitOfWork(db), keyring)
    verifier = TOKENS.verifier(revocations=SqlRevocationList(db, cache_seconds=0))
    app = create_app("signature")
    app.middlewares.append(http.authentication(verifier))
    http.add_routes(app, db, keyring, verifier)
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


@pytest.fixture
def desk(db: Database, client: TestClient, keyring: KeyRing) -> Desk:  # type: ignore[type-arg]
    return Desk(db, client, keyring)
