from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    http_port: int = 8080
    worklist_url: str = "http://127.0.0.1:8082"
    dicom_ingest_url: str = "http://127.0.0.1:8081"
    identity_url: str = "http://127.0.0.1:8083"
    upstream_timeout_seconds: float = 10.0
    #: Browser origins allowed to call the API (CORS); none by default.
    cors_origins: list[str] = Field(default_factory=list)
    #: Sign-in attempts per source address: a burst, then this many a minute.
    login_burst: int = Field(default=10, ge=1)
    login_per_minute: float = Field(default=10, gt=0)
    #: Requests per signed-in user: a burst, then this many a second.
    user_burst: int = Field(default=200, ge=1)
    user_per_second: float = Field(default=50, gt=0)
