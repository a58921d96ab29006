"""Settings read from the environment: a common model, and one model per service.

Only this module (and each service's own ``config.py``) reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The organisation every request and every study belongs to until identity lands.
DEMO_ORGANIZATION_ID = UUID("00000000-0000-4000-8000-000000000001")


class CommonSettings(BaseSettings):
    """Settings every service reads, prefixed ``TELERAD_``."""

    model_config = SettingsConfigDict(env_prefix="TELERAD_", extra="ignore")

    data_dir: Path = Path("var")
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    postgres_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432"
    exchange: str = "telerad.events"
    default_organization_id: UUID = DEMO_ORGANIZATION_ID
    #: Where users reach the platform (the gateway); the issuer of every token.
    public_url: str = "http://127.0.0.1:8080"
    #: Where services fetch identity's public keys (JWKS) to verify tokens themselves.
    identity_url: str = "http://127.0.0.1:8083"
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    retry_attempts: int = Field(default=5, ge=1, le=20)
    retry_base_delay_seconds: float = Field(default=1.0, gt=0)


class ServiceSettings(BaseSettings):
    """Base of each service's settings; a subclass sets ``env_prefix`` (``WORKLIST_``...)."""

    model_config = SettingsConfigDict(extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535)
    database_url: str | None = None

    def resolved_database_url(self, service: str, common: CommonSettings, embedded: bool) -> str:
        """The explicit URL, or one database per service: SQLite under data_dir, or PostgreSQL."""
        if self.database_url:
            return self.database_url
        name = service.replace("-", "_")
        if embedded:
            return f"sqlite+aiosqlite:///{(common.data_dir / f'{name}.db').resolve()}"
        return f"{common.postgres_url.rstrip('/')}/telerad_{name}"
