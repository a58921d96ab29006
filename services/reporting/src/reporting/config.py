from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class ReportingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTING_", extra="ignore")

    http_port: int = 8084
