"""identity as an OpenID Connect provider: its registered clients and lifetimes (IDENTITY_OIDC_*)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class OidcClient(BaseModel):
    """A public client (no secret) that signs users in with the authorization code flow and PKCE."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
    redirect_uris: tuple[str, ...] = Field(min_length=1)
    post_logout_redirect_uris: tuple[str, ...] = ()

    @field_validator("redirect_uris", "post_logout_redirect_uris")
    @classmethod
    def absolute_without_fragment(cls, uris: tuple[str, ...]) -> tuple[str, ...]:
        for uri in uris:  # RFC 6749 §3.1.2: absolute, no fragment; compared character for character
            parts = urlsplit(uri)
            if parts.scheme not in ("http", "https") or not parts.netloc or "#" in uri or len(uri) > 2000:
                raise ValueError(f"{uri!r} is not an absolute http(s) URI without a fragment")
        return uris


class OidcSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_OIDC_", extra="ignore")

    #: JSON list of {client_id, redirect_uris, post_logout_redirect_uris}; unset means the one OHIF client.
    clients: list[OidcClient] | None = None
    authorization_code_seconds: int = Field(default=60, ge=10, le=600)
    #: How long the sign-in form stays valid between GET and POST.
    login_form_seconds: int = Field(default=900, ge=60, le=3600)

    def registered_clients(self, public_url: str) -> dict[str, OidcClient]:
        public_url = public_url.rstrip("/")
        clients = self.clients if self.clients is not None else [OidcClient(
            client_id="ohif",
            redirect_uris=(f"{public_url}/viewer/callback", "http://localhost:3000/callback"),
            post_logout_redirect_uris=(f"{public_url}/viewer/logout-redirect.html",
                                       "http://localhost:3000/logout-redirect.html"))]
        by_id = {client.client_id: client for client in clients}
        if len(by_id) != len(clients):
            raise ValueError("IDENTITY_OIDC_CLIENTS names a client_id twice")
        return by_id

    @property
    def authorization_code_lifetime(self) -> timedelta:
        return timedelta(seconds=self.authorization_code_seconds)

    @property
    def login_form_lifetime(self) -> timedelta:
        return timedelta(seconds=self.login_form_seconds)
