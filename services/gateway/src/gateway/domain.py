"""The gateway's own rules: who may call which route, and how fast."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from radcommon.contracts import RoleValues

ORGANIZATION_ROLES = frozenset({RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.RADIOLOGIST,
                                RoleValues.TECHNICIAN, RoleValues.VIEWER})
ANY_ROLE = frozenset(RoleValues)
#: Who may store over STOW-RS: all of an organisation's roles but viewer (dicom-ingest's README says why).
DICOMWEB_WRITERS = ORGANIZATION_ROLES - {RoleValues.VIEWER}
_DICOMWEB_INSTANCE = "/dicomweb/studies/{study}/series/{series}/instances/{instance}"
MANAGING_ROLES = frozenset({RoleValues.ADMIN, RoleValues.MANAGER})
RADIOLOGIST = frozenset({RoleValues.RADIOLOGIST})
READING_ROLES = MANAGING_ROLES | RADIOLOGIST
#: Who may query and retrieve from a remote PACS (radiologists fetch priors); sending out is not for readers.
REMOTE_PACS_RETRIEVERS = MANAGING_ROLES | {RoleValues.TECHNICIAN, RoleValues.RADIOLOGIST}

#: The OHIF viewer's files (gateway.viewer): public, as the app signs in itself (OIDC) before it reads anything.
VIEWER_PATH = "/viewer"

#: The live feed (entrypoints/ws.py): a WebSocket that authenticates in-band, with the roles that see the worklist.
LIVE_ROUTE = ("GET", "/ws")

#: (method, route) → roles allowed. A route that is not listed is refused (deny by default).
ROUTE_ROLES: dict[tuple[str, str], frozenset[RoleValues]] = {
    ("GET", "/api/worklist"): ORGANIZATION_ROLES,
    LIVE_ROUTE: ORGANIZATION_ROLES,
    ("GET", "/api/worklist/counts"): ORGANIZATION_ROLES,
    ("GET", "/api/worklist/changes"): ORGANIZATION_ROLES,
    ("GET", "/api/worklist/items/{item_id}"): ORGANIZATION_ROLES,
    ("GET", "/api/worklist/stats"): MANAGING_ROLES,
    ("POST", "/api/worklist/items/{item_id}/claim"): frozenset({RoleValues.RADIOLOGIST}),
    ("POST", "/api/worklist/items/{item_id}/release"): MANAGING_ROLES | {RoleValues.RADIOLOGIST},
    ("POST", "/api/worklist/items/{item_id}/assign"): MANAGING_ROLES,
    ("PUT", "/api/worklist/items/{item_id}/priority"): MANAGING_ROLES,
    ("GET", "/api/worklist/sla-policies"): MANAGING_ROLES,
    ("PUT", "/api/worklist/sla-policies"): MANAGING_ROLES,
    ("GET", "/api/worklist/priority-rules"): MANAGING_ROLES,
    ("PUT", "/api/worklist/priority-rules"): MANAGING_ROLES,
    ("GET", "/api/worklist/readers"): MANAGING_ROLES,
    ("PATCH", "/api/worklist/readers/{user_id}"): MANAGING_ROLES,
    ("PUT", "/api/worklist/availability"): frozenset({RoleValues.RADIOLOGIST}),
    ("GET", "/api/report-templates"): READING_ROLES,
    ("GET", "/api/report-templates/{template_id}"): READING_ROLES,
    ("GET", "/api/report-templates/{template_id}/versions/{version}"): READING_ROLES,
    ("POST", "/api/report-templates"): MANAGING_ROLES,
    ("PUT", "/api/report-templates/{template_id}"): MANAGING_ROLES,
    ("PUT", "/api/report-templates/{template_id}/active"): MANAGING_ROLES,
    ("GET", "/api/reports"): ORGANIZATION_ROLES,
    ("POST", "/api/reports"): RADIOLOGIST,
    ("GET", "/api/reports/{report_id}"): ORGANIZATION_ROLES,
    ("GET", "/api/reports/{report_id}/rendering"): ORGANIZATION_ROLES,
    ("GET", "/api/reports/{report_id}/versions"): READING_ROLES,
    ("GET", "/api/reports/{report_id}/versions/{version}"): READING_ROLES,
    ("PUT", "/api/reports/{report_id}/draft"): RADIOLOGIST,
    ("POST", "/api/reports/{report_id}/submit"): RADIOLOGIST,
    ("POST", "/api/reports/{report_id}/addenda"): RADIOLOGIST,
    ("POST", "/api/reports/{report_id}/critical-findings"): RADIOLOGIST,
    ("POST", "/api/reports/{report_id}/peer-reviews"): RADIOLOGIST,
    ("GET", "/api/reports/{report_id}/disputes"): ORGANIZATION_ROLES,
    ("POST", "/api/reports/{report_id}/disputes"): frozenset({RoleValues.VIEWER, RoleValues.MANAGER}),
    ("POST", "/api/disputes/{dispute_id}/response"): RADIOLOGIST,
    ("POST", "/api/disputes/{dispute_id}/resolve"): frozenset({RoleValues.MANAGER}),
    ("GET", "/api/peer-reviews/stats"): MANAGING_ROLES,
    ("POST", "/api/signatures/sign"): RADIOLOGIST,
    ("POST", "/api/signatures/validate"): ORGANIZATION_ROLES | {RoleValues.OPERATOR},
    ("GET", "/api/signatures"): ORGANIZATION_ROLES,
    ("GET", "/api/signatures/{signature_id}"): ORGANIZATION_ROLES,
    ("GET", "/api/signatures/verify/{signature_id}"): ORGANIZATION_ROLES,
    ("GET", "/api/signatures/audit-trail/{report_id}"): ORGANIZATION_ROLES,
    ("POST", "/api/signatures/keys/rotate"): frozenset({RoleValues.OPERATOR, RoleValues.ADMIN}),
    ("POST", "/api/signatures/keys/{kid}/revoke"): frozenset({RoleValues.OPERATOR}),
    ("GET", "/api/modalities"): frozenset({RoleValues.ADMIN, RoleValues.MANAGER, RoleValues.TECHNICIAN}),
    ("POST", "/api/modalities"): frozenset({RoleValues.ADMIN, RoleValues.MANAGER}),
    ("DELETE", "/api/modalities/{modality_id}"): frozenset({RoleValues.ADMIN, RoleValues.MANAGER}),
    ("GET", "/api/ingest/spool"): MANAGING_ROLES,
    ("POST", "/api/ingest/spool/set-aside/retry"): MANAGING_ROLES,
    ("GET", "/api/remote-pacs"): MANAGING_ROLES | {RoleValues.TECHNICIAN},
    ("POST", "/api/remote-pacs"): MANAGING_ROLES,
    ("DELETE", "/api/remote-pacs/{remote_pacs_id}"): MANAGING_ROLES,
    ("POST", "/api/remote-pacs/{remote_pacs_id}/echo"): MANAGING_ROLES,
    ("POST", "/api/remote-pacs/{remote_pacs_id}/find"): REMOTE_PACS_RETRIEVERS,
    ("POST", "/api/remote-pacs/{remote_pacs_id}/retrieve"): REMOTE_PACS_RETRIEVERS,
    ("POST", "/api/remote-pacs/{remote_pacs_id}/send"): MANAGING_ROLES | {RoleValues.TECHNICIAN},
    ("GET", "/api/remote-pacs/jobs"): REMOTE_PACS_RETRIEVERS,
    ("GET", "/api/remote-pacs/jobs/{job_id}"): REMOTE_PACS_RETRIEVERS,
    ("POST", "/dicomweb/studies"): DICOMWEB_WRITERS,
    ("POST", "/dicomweb/studies/{study}"): DICOMWEB_WRITERS,
    ("GET", "/dicomweb/studies/{study}"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies/{study}/metadata"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies/{study}/thumbnail"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies/{study}/series/{series}"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies/{study}/series/{series}/metadata"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies/{study}/series/{series}/thumbnail"): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE + "/metadata"): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE + "/rendered"): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE + "/thumbnail"): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE + "/frames/{frames}"): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE + "/frames/{frames}/rendered"): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE + "/frames/{frames}/thumbnail"): ORGANIZATION_ROLES,
    ("GET", _DICOMWEB_INSTANCE + "/bulkdata/{tag}"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/wado"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies"): ORGANIZATION_ROLES,  # QIDO-RS: the six search resources
    ("GET", "/dicomweb/studies/{study}/series"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/series"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/studies/{study}/instances"): ORGANIZATION_ROLES,
    ("GET", "/dicomweb/instances"): ORGANIZATION_ROLES,
    ("POST", "/api/auth/logout"): ANY_ROLE,
    ("GET", "/api/auth/session-status"): ANY_ROLE,
    ("POST", "/api/auth/extend-session"): ANY_ROLE,
    ("POST", "/api/auth/step-up"): frozenset({RoleValues.RADIOLOGIST}),
    ("POST", "/api/auth/2fa/enrol"): ANY_ROLE,
    ("POST", "/api/auth/2fa/verify"): ANY_ROLE,
    ("POST", "/api/auth/keys/rotate"): frozenset({RoleValues.OPERATOR}),
    ("POST", "/api/organizations"): frozenset({RoleValues.OPERATOR}),
    ("PATCH", "/api/organizations/{organization_id}"): frozenset({RoleValues.ADMIN, RoleValues.OPERATOR}),
    ("GET", "/api/users"): frozenset({RoleValues.ADMIN, RoleValues.MANAGER}),
    ("POST", "/api/users/invitations"): frozenset({RoleValues.ADMIN}),
    ("PUT", "/api/users/{user_id}/roles"): frozenset({RoleValues.ADMIN}),
    ("GET", "/oidc/userinfo"): ANY_ROLE,
    ("POST", "/oidc/userinfo"): ANY_ROLE,
}

#: What a session without roles (second factor required, not yet enrolled) may still do.
ENROLMENT_ROUTES = frozenset({("POST", "/api/auth/2fa/enrol"), ("POST", "/api/auth/2fa/verify"),
                              ("POST", "/api/auth/logout"), ("GET", "/api/auth/session-status")})


def may_call(roles: frozenset[RoleValues], route: tuple[str, str]) -> bool:
    allowed = ROUTE_ROLES.get(route)
    if allowed is None:
        return False  # deny by default
    return bool(roles & allowed) or (not roles and route in ENROLMENT_ROUTES)


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    tokens: float = -1
    updated: float = field(default_factory=time.monotonic)

    def take(self, now: float | None = None) -> float:
        """0 when allowed; otherwise the seconds until a request would be."""
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


class RateLimiter:
    """Token buckets by key, kept in memory (the gateway's only state); idle buckets are forgotten."""

    def __init__(self, capacity: int, per_second: float, max_keys: int = 100_000) -> None:
        self.capacity, self.per_second, self.max_keys = capacity, per_second, max_keys
        self.buckets: dict[str, TokenBucket] = {}

    def retry_after(self, key: str) -> float:
        if len(self.buckets) >= self.max_keys:
            full = time.monotonic() - self.capacity / self.per_second
            self.buckets = {k: b for k, b in self.buckets.items() if b.updated > full}
        bucket = self.buckets.setdefault(key, TokenBucket(self.capacity, self.per_second))
        return bucket.take()
