from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    http_port: int = 8080
    worklist_url: str = "http://127.0.0.1:8082"
    dicom_ingest_url: str = "http://127.0.0.1:8081"
    identity_url: str = "http://127.0.0.1:8083"
    reporting_url: str = "http://127.0.0.1:8084"
    signature_url: str = "http://127.0.0.1:8085"
    upstream_timeout_seconds: float = 10.0
    #: /dicomweb is streamed both ways: the largest STOW-RS body, and the longest wait for a byte from dicom-ingest.
    dicomweb_max_body_bytes: int = Field(default=2 * 1024**3, ge=1024)
    dicomweb_read_timeout_seconds: float = Field(default=300.0, gt=0)
    #: The OHIF viewer served at /viewer/ as `make viewer` prepares it (gateway.viewer); relative to the working dir.
    viewer_dir: Path = Path("var/ohif/viewer")
    #: Browser origins allowed to call the API (CORS); none by default.
    cors_origins: list[str] = Field(default_factory=list)
    #: Sign-in attempts per source address: a burst, then this many a minute.
    login_burst: int = Field(default=10, ge=1)
    login_per_minute: float = Field(default=10, gt=0)
    #: Requests per signed-in user: a burst, then this many a second.
    user_burst: int = Field(default=200, ge=1)
    user_per_second: float = Field(default=50, gt=0)
    #: The live feed (GET /ws): open sockets in this process, and per user.
    live_max_connections: int = Field(default=10_000, ge=1)
    live_max_connections_per_user: int = Field(default=8, ge=1)
    #: Changes waiting for one socket; past that it is closed 4408 (fell behind) and the client resumes.
    live_queue_size: int = Field(default=1_000, ge=1)
    #: Changes read from worklist per request when a socket catches up.
    live_page_size: int = Field(default=500, ge=1, le=500)
    live_heartbeat_seconds: float = Field(default=30, gt=0)
    #: Time a socket has to send its token (when not in the Authorization header).
    live_auth_timeout_seconds: float = Field(default=5, gt=0)
    #: Time one message may take to leave; a client slower than that has fallen behind.
    live_send_timeout_seconds: float = Field(default=10, gt=0)
