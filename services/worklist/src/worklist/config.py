from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class WorklistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="WORKLIST_", extra="ignore")

    http_port: int = 8082
    #: Deadlines when the organisation set no policy of its own (minutes).
    sla_stat_minutes: float = Field(default=60, gt=0)
    sla_urgent_minutes: float = Field(default=240, gt=0)
    sla_routine_minutes: float = Field(default=1440, gt=0)
    sla_warning_fraction: float = Field(default=0.75, gt=0, lt=1)
    #: A claim lapses after this long without the reader renewing it or saving a draft.
    claim_minutes: float = Field(default=60, gt=0)
    #: How often the monitor looks for due alerts, lapsed claims and items waiting for a reader.
    monitor_seconds: float = Field(default=1.0, gt=0)
    #: How long the change feed keeps entries for clients resuming the live feed.
    change_feed_days: float = Field(default=7, gt=0)
