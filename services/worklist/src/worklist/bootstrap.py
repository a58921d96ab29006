from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from radcommon.auth import JwksClient, SqlRevocationList, TokenVerifier, auth_middleware
from radcommon.config import CommonSettings
from radcommon.consumer import EventConsumer
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service
from worklist.config import WorklistSettings
from worklist.entrypoints import http
from worklist.service_layer import monitor
from worklist.service_layer.handlers import EVENT_HANDLERS
from worklist.service_layer.unit_of_work import WorklistUnitOfWork

NAME = "worklist"
PRUNE_EVERY = 3600  # monitor rounds between prunings of the change feed
log = logging.getLogger(__name__)


def build(common: CommonSettings, bus: Bus, *, embedded: bool, settings: WorklistSettings | None = None) -> Service:
    settings = settings or WorklistSettings()
    db = Database(settings.resolved_database_url(NAME, common, embedded))
    app = create_app(NAME, readiness={"database": db.ping, "bus": bus.ping})
    jwks = JwksClient(f"{common.identity_url.rstrip('/')}/.well-known/jwks.json")
    verifier = TokenVerifier(jwks, issuer=common.public_url, revocations=SqlRevocationList(db))
    app.middlewares.append(auth_middleware(verifier))
    http.add_routes(app, db, settings)

    def uow() -> WorklistUnitOfWork:
        return WorklistUnitOfWork(db, settings)

    async def clock() -> None:
        """SLA alerts, lapsed claims and waiting items, from what the database holds."""
        rounds = 0
        while True:
            busy = await monitor.raise_due_alerts(uow()) >= monitor.BATCH
            busy |= await monitor.expire_claims(uow()) >= monitor.BATCH
            busy |= await monitor.assign_waiting_items(uow()) >= monitor.BATCH
            rounds += 1
            if rounds % PRUNE_EVERY == 1:
                await monitor.prune_change_feed(uow())
            if not busy:
                await asyncio.sleep(settings.monitor_seconds)

    consumer = EventConsumer(f"{NAME}.events", EVENT_HANDLERS, uow)
    service = Service(NAME, db, bus, app, Path(__file__).parent / "migrations",
                      http_host=settings.http_host, http_port=settings.http_port, consumers=[consumer],
                      background=[clock])
    service.on_stop.append(jwks.close)
    return service
