from __future__ import annotations

from gateway.config import GatewaySettings
from gateway.entrypoints import http
from radcommon.config import CommonSettings
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service

NAME = "gateway"


def build(common: CommonSettings, bus: Bus, *, embedded: bool, settings: GatewaySettings | None = None,
          worklist_url: str | None = None) -> Service:
    """No database and no events yet; readiness does not follow the upstreams (no cascading restarts)."""
    settings = settings or GatewaySettings()
    app = create_app(NAME)
    http.add_routes(app, worklist_url=worklist_url or settings.worklist_url,
                    organization_id=common.default_organization_id, timeout=settings.upstream_timeout_seconds)
    return Service(NAME, None, bus, app, None, http_host=settings.http_host, http_port=settings.http_port)
