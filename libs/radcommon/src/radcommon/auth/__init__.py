"""How every service verifies the access tokens identity issues.

identity signs short-lived JWTs with Ed25519 and publishes its public keys as a JWK set; a service
verifies each token locally (:class:`TokenVerifier` with a :class:`JwksClient`), refuses tokens of
ended sessions (:class:`SqlRevocationList`, fed by :func:`record_session_ended`), and puts the
:class:`Principal` on the request (:func:`auth_middleware`).
"""

from radcommon.auth.jwks import JwksClient, parse_jwks
from radcommon.auth.middleware import (
    ALWAYS_PUBLIC,
    auth_middleware,
    bearer_token,
    organization_of,
    principal_key,
    principal_of,
    require_roles,
)
from radcommon.auth.revocation import (
    SqlRevocationList,
    create_revocation_table,
    record_session_ended,
    revoked_sessions_table,
)
from radcommon.auth.tokens import (
    ACCESS_AUDIENCE,
    STEP_UP_AUDIENCE,
    TOKEN_TYPES,
    Principal,
    RevocationList,
    TokenError,
    TokenErrorReason,
    TokenVerifier,
)

__all__ = ["ACCESS_AUDIENCE", "ALWAYS_PUBLIC", "STEP_UP_AUDIENCE", "TOKEN_TYPES", "JwksClient", "Principal",
           "RevocationList", "SqlRevocationList", "TokenError", "TokenErrorReason", "TokenVerifier",
           "auth_middleware", "bearer_token", "create_revocation_table", "organization_of", "parse_jwks",
           "principal_key", "principal_of", "record_session_ended", "require_roles", "revoked_sessions_table"]
