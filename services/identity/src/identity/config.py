from datetime import timedelta

from pydantic import Field
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

    @property
    def access_token_lifetime(self) -> timedelta:
        return timedelta(seconds=self.access_token_seconds)

    @property
    def step_up_token_lifetime(self) -> timedelta:
        return timedelta(seconds=self.step_up_token_seconds)
