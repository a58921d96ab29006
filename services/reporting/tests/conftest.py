"""What unit and integration tests share; each directory's ``db`` fixture is SQLite (unit) or PostgreSQL
(integration)."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from radcommon.auth import auth_middleware
from radcommon.consumer import EventConsumer
from radcommon.contracts import Event, ReportSignedV1, RoleValues, SignatureMeaningValues, WorklistItemChangedV1
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Message
from radcommon.outbox import outbox_table
from radcommon.testing import TokenMinter
from reporting.config import ReportingSettings
from reporting.entrypoints import http
from reporting.service_layer.handlers import EVENT_HANDLERS
from reporting.service_layer.unit_of_work import ReportingUnitOfWork

ORG_A, ORG_B = uuid4(), uuid4()
TOKENS = TokenMinter()


@pytest.fixture
async def client(db: Database) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    app = create_app("reporting")
    app.middlewares.append(auth_middleware(TOKENS.verifier()))
    http.add_routes(app, db, ReportingSettings())
    test_client = TestClient(TestServer(app))
    await test_client.start_server()
    yield test_client
    await test_client.close()


class Desk:
    """A reporting desk for tests: HTTP calls with tokens, events fed to the consumer as the bus would,
    and the outbox read back."""

    org_a, org_b = ORG_A, ORG_B

    def __init__(self, db: Database, client: Any) -> None:
        self.db, self.client = db, client
        self.consumer = EventConsumer("reporting.events", EVENT_HANDLERS, lambda: ReportingUnitOfWork(db))
        self.sequence = 0

    async def feed(self, *events: Event) -> None:
        for event in events:
            await self.consumer(Message(str(event.event_id), event.routing_key, event.model_dump_json().encode()))

    async def call(self, method: str, path: str, *roles: RoleValues, user: UUID | None = None, org: UUID = ORG_A,
                   json: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        auth = TOKENS.bearer(organization_id=org, roles=roles or (RoleValues.RADIOLOGIST,), user_id=user)
        response = await self.client.request(method, path, headers={**auth, **(headers or {})}, json=json)
        body = await response.json() if response.content_type.endswith("json") else await response.text()
        return response.status, body

    def item_changed(self, item_id: UUID, *, org: UUID = ORG_A, claimed_by: UUID | None = None,
                     status: str = "in_progress", uid: str = "1.2.3", sequence: int | None = None,
                     expires_in: timedelta = timedelta(minutes=30)) -> WorklistItemChangedV1:
        if sequence is None:
            self.sequence += 1
            sequence = self.sequence
        item = {"id": str(item_id), "organization_id": str(org), "study_instance_uid": uid, "patient_id": "P1",
                "patient_name": "Doe^Jane", "accession_number": "ACC1", "referring_physician_name": "Dr Who",
                "modalities": ["CT"], "body_parts": ["HEAD"], "priority": "stat", "status": status,
                "assignee_id": str(claimed_by) if claimed_by else None,
                "claimed_by": str(claimed_by) if claimed_by else None,
                "claim_expires_at": (datetime.now(UTC) + expires_in).isoformat() if claimed_by else None}
        return WorklistItemChangedV1(organization_id=org, sequence=sequence, item_id=item_id, change="claimed",
                                     item=item)

    async def claimed(self, radiologist: UUID, *, org: UUID = ORG_A, uid: str = "1.2.3") -> UUID:
        item_id = uuid4()
        await self.feed(self.item_changed(item_id, org=org, claimed_by=radiologist, uid=uid))
        return item_id

    async def template_id(self, name: str = "CT Head", org: UUID = ORG_A) -> UUID:
        status, body = await self.call("GET", "/report-templates", org=org)
        assert status == 200, body
        return UUID(next(t["id"] for t in body["templates"] if t["name"] == name))

    async def start(self, radiologist: UUID, *, org: UUID = ORG_A, uid: str = "1.2.3",
                    template: str = "CT Head") -> dict[str, Any]:
        item_id = await self.claimed(radiologist, org=org, uid=uid)
        status, report = await self.call("POST", "/reports", user=radiologist, org=org, json={
            "worklist_item_id": str(item_id), "template_id": str(await self.template_id(template, org))})
        assert status == 201, report
        return report  # type: ignore[no-any-return]

    async def draft(self, report: dict[str, Any], user: UUID, base_version: int, org: UUID = ORG_A,
                    **sections: Any) -> tuple[int, Any]:
        content = {"sections": {**report["content"]["sections"], **sections}, "annotations": []}
        return await self.call("PUT", f"/reports/{report['id']}/draft", user=user, org=org,
                               json={"content": content, "base_version": base_version})

    async def submitted(self, report_id: str, version: int, user: UUID, org: UUID = ORG_A) -> dict[str, Any]:
        status, body = await self.call("POST", f"/reports/{report_id}/submit", user=user, org=org,
                                       json={"version": version})
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    def signed(self, report_id: str, version: int, digest: str, signer: UUID, *, org: UUID = ORG_A,
               addendum_id: UUID | str | None = None, name: str = "Dr Alice Reader",
               at: datetime = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
               meaning: SignatureMeaningValues = SignatureMeaningValues.AUTHORED) -> ReportSignedV1:
        return ReportSignedV1(organization_id=org, signature_id=uuid4(), report_id=UUID(report_id), version=version,
                              addendum_id=UUID(str(addendum_id)) if addendum_id else None, content_sha256=digest,
                              signer_id=signer, signer_name=name, meaning=meaning,
                              signed_at=at, key_id="k1")

    async def final(self, radiologist: UUID, **start: Any) -> dict[str, Any]:
        """A report started, submitted as version 1 and signed."""
        report = await self.start(radiologist, **start)
        org = start.get("org", ORG_A)
        submitted = await self.submitted(report["id"], 1, radiologist, org=org)
        await self.feed(self.signed(report["id"], 1, submitted["content_sha256"], radiologist, org=org))
        status, body = await self.call("GET", f"/reports/{report['id']}", org=org)
        assert status == 200 and body["status"] == "final", body
        return body  # type: ignore[no-any-return]

    async def outbox(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """The events reporting wrote to its outbox, as (routing key, body) in order."""
        async with self.db.session() as session:
            rows = (await session.execute(sa.select(outbox_table.c.routing_key, outbox_table.c.body)
                                          .order_by(outbox_table.c.id))).all()
        return [(key, json.loads(body)) for key, body in rows if key.startswith(prefix)]

    async def events(self, key: str) -> list[dict[str, Any]]:
        return [body for routing_key, body in await self.outbox() if routing_key == key]


@pytest.fixture
def desk(db: Database, client: Any) -> Desk:
    return Desk(db, client)
