from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dicom_ingest.domain.modalities import Modality, normalize_ae_title, parse_host, parse_port


class ModalityRegistration(BaseModel):
    """A modality that may associate for the caller's organisation (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET);
    with a port it is also a C-MOVE destination."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(min_length=1, max_length=64, examples=["CT_ROOM_1"],
                          description="Its calling AE title: 1-16 printable ASCII characters, no backslash "
                                      "(PS3.5 VR AE); spaces at either end are not significant.")
    host: str | None = Field(default=None, max_length=64, examples=["10.1.2.0/24"],
                             description="An IP address or CIDR network the association must come from; "
                                         "absent means any address.")
    description: str = Field(default="", max_length=200)
    port: int | None = Field(default=None, ge=1, le=65535, examples=[11112],
                             description="The port its storage SCP listens on, which makes it a C-MOVE destination "
                                         "of the organisation under its AE title: C-STORE sub-operations connect "
                                         "to host:port. Needs a host that is one IP address; one registration "
                                         "per AE title of an organisation may have a port.")

    @field_validator("ae_title")
    @classmethod
    def _valid_ae_title(cls, value: str) -> str:
        return normalize_ae_title(value)

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str | None) -> str | None:
        network = parse_host(value)
        return None if network is None else str(network)

    @field_validator("description")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("the description may not contain control characters")
        return value

    @model_validator(mode="after")
    def _destination_has_one_address(self) -> ModalityRegistration:
        parse_port(self.port, parse_host(self.host))
        return self


class ModalityView(BaseModel):
    id: UUID
    ae_title: str
    host: str | None = Field(description="The CIDR network calls must come from; null for any address.")
    description: str
    port: int | None = Field(description="Set when it is a C-MOVE destination: the port of its storage SCP.")
    created_at: datetime

    @classmethod
    def of(cls, modality: Modality) -> ModalityView:
        return cls(id=modality.id, ae_title=modality.ae_title,
                   host=None if modality.host is None else str(modality.host),
                   description=modality.description, port=modality.port, created_at=modality.created_at)


class ModalityList(BaseModel):
    items: list[ModalityView]


class ModalityPath(BaseModel):
    modality_id: UUID
