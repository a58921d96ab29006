from __future__ import annotations

from gateway.config import GatewaySettings
from gateway.domain import RateLimiter
from gateway.entrypoints import http, ws
from gateway.live import WorklistChangeSource
from gateway.viewer import add_viewer_routes
from radcommon.auth import JwksClient, TokenVerifier
from radcommon.config import CommonSettings
from radcommon.http import create_app
from radcommon.messaging import Bus
from radcommon.service import Service

NAME = "gateway"


def build(common: CommonSettings, bus: Bus, *, embedded: bool, settings: GatewaySettings | None = None,
          upstreams: dict[str, str] | None = None) -> Service:
    """No database; of the events only worklist changes, for the live feed (a subscription, not a queue).
    Readiness does not follow the upstreams (no cascading restarts)."""
    settings = settings or GatewaySettings()
    urls = {"worklist": settings.worklist_url, "identity": settings.identity_url,
            "dicom-ingest": settings.dicom_ingest_url, "reporting": settings.reporting_url,
            "signature": settings.signature_url, **(upstreams or {})}
    jwks = JwksClient(f"{urls['identity'].rstrip('/')}/.well-known/jwks.json")
    app = create_app(NAME, openapi=False)  # it serves the services' documents, mapped (gateway.openapi)
    verifier = TokenVerifier(jwks, issuer=common.public_url)
    http.add_routes(app, upstreams=urls, verifier=verifier,
                    timeout=settings.upstream_timeout_seconds,
                    login_limiter=RateLimiter(settings.login_burst, settings.login_per_minute / 60),
                    user_limiter=RateLimiter(settings.user_burst, settings.user_per_second),
                    cors_origins=settings.cors_origins,
                    dicomweb=http.DicomWebProxy(settings.dicomweb_max_body_bytes,
                                                settings.dicomweb_read_timeout_seconds))
    add_viewer_routes(app, settings.viewer_dir, common.public_url)
    ws.add_live_route(app, bus=bus, verifier=verifier,
                      source=WorklistChangeSource(urls["worklist"], lambda: app[http.client_key]),
                      options=ws.LiveOptions(
                          max_connections=settings.live_max_connections,
                          max_connections_per_user=settings.live_max_connections_per_user,
                          queue_size=settings.live_queue_size, page_size=settings.live_page_size,
                          heartbeat_seconds=settings.live_heartbeat_seconds,
                          auth_timeout_seconds=settings.live_auth_timeout_seconds,
                          send_timeout_seconds=settings.live_send_timeout_seconds))
    service = Service(NAME, None, bus, app, None, http_host=settings.http_host, http_port=settings.http_port)
    service.on_stop.append(jwks.close)
    return service
