from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    http_port: int = 8080
    worklist_url: str = "http://127.0.0.1:8082"
    dicom_ingest_url: str = "http://127.0.0.1:8081"
    upstream_timeout_seconds: float = 10.0
