from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class SignatureSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNATURE_", extra="ignore")

    http_port: int = 8085
    #: Seals the private signing keys at rest (base64 of 32 bytes). Required when distributed; embedded mode
    #: keeps a generated one in the data directory (signature.key).
    secret_key: str | None = None
    #: A new signing key every this many days; the old one is retired (it verifies, it no longer signs).
    key_rotation_days: float = Field(default=90, gt=0, le=3650)
    #: How often the service looks whether the key is due for rotation.
    key_check_seconds: float = Field(default=3600, gt=0)
