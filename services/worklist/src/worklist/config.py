from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class WorklistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WORKLIST_", extra="ignore")

    http_port: int = 8082
