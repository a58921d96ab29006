from datetime import timedelta

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore")

    http_port: int = 8083
    #: Seals TOTP secrets and private signing keys at rest (base64 of 32 bytes). Required when distributed;
    #: embedded mode keeps a generated one in the data directory.
    secret_key: str | None = None
    access_token_seconds: int = Field(default=300, ge=30, le=3600)
    step_up_token_seconds: int = Field(default=120, ge=30, le=600)
    refresh_token_days: int = Field(default=14, ge=1, le=90)
    key_rotation_days: int = Field(default=30, ge=1, le=365)
    #: Networks of peers whose X-Forwarded-For names the real caller (the gateway).
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    invitation_hours: int = Field(default=72, ge=1, le=24 * 30)
    password_reset_minutes: int = Field(default=30, ge=5, le=24 * 60)
    #: Outgoing mail (invitations, password resets). Without a host, messages are only logged (embedded use).
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    #: Upgrade the connection with STARTTLS (port 587); smtp_ssl instead speaks TLS from the start (port 465).
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    smtp_sender: str = "Telerad <no-reply@telerad.invalid>"
    smtp_timeout_seconds: float = Field(default=30, gt=0)

    @property
    def access_token_lifetime(self) -> timedelta:
        return timedelta(seconds=self.access_token_seconds)

    @property
    def step_up_token_lifetime(self) -> timedelta:
        return timedelta(seconds=self.step_up_token_seconds)

    @property
    def invitation_lifetime(self) -> timedelta:
        return timedelta(hours=self.invitation_hours)

    @property
    def password_reset_lifetime(self) -> timedelta:
        return timedelta(minutes=self.password_reset_minutes)
