from __future__ import annotations

from pathlib import Path

from radcommon.auth import JwksClient, SqlRevocationList, TokenVerifier, auth_middleware
from radcommon.config import CommonSettings
from radcommon.consumer import EventConsumer
from radcommon.db import Database
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service
from reporting.config import ReportingSettings
from reporting.entrypoints import http
from reporting.service_layer.handlers import EVENT_HANDLERS
from reporting.service_layer.unit_of_work import ReportingUnitOfWork

NAME = "reporting"


def build(common: CommonSettings, bus: Bus, *, embedded: bool, settings: ReportingSettings | None = None) -> Service:
    settings = settings or ReportingSettings()
    db = Database(settings.resolved_database_url(NAME, common, embedded))
    app = create_app(NAME, readiness={"database": db.ping, "bus": bus.ping})
    jwks = JwksClient(f"{common.identity_url.rstrip('/')}/.well-known/jwks.json")
    verifier = TokenVerifier(jwks, issuer=common.public_url, revocations=SqlRevocationList(db))
    app.middlewares.append(auth_middleware(verifier))
    http.add_routes(app, db, settings)
    consumer = EventConsumer(f"{NAME}.events", EVENT_HANDLERS, lambda: ReportingUnitOfWork(db))
    service = Service(NAME, db, bus, app, Path(__file__).parent / "migrations",
                      http_host=settings.http_host, http_port=settings.http_port, consumers=[consumer])
    service.on_stop.append(jwks.close)
    return service
