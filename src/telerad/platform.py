"""Assembling services into a running platform, embedded (one process) or distributed (one service)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from radcommon.config import CommonSettings
from radcommon.messaging import Bus, RetryPolicy
from radcommon.messaging.local import LocalBus
from radcommon.service import Service

log = logging.getLogger(__name__)

#: Services in start order: consumers declare their queues before producers publish.
SERVICES = ("identity", "worklist", "reporting", "signature", "dicom-ingest", "gateway")


def retry_policy(common: CommonSettings) -> RetryPolicy:
    return RetryPolicy(attempts=common.retry_attempts, base_delay=common.retry_base_delay_seconds)


def local_bus(common: CommonSettings) -> LocalBus:
    return LocalBus(common.data_dir / "bus.db", retry=retry_policy(common))


def rabbitmq_bus(common: CommonSettings) -> Bus:
    from radcommon.messaging.rabbitmq import AioPikaBus

    bus: Bus = AioPikaBus(common.amqp_url, exchange=common.exchange, retry=retry_policy(common))
    return bus


def build_service(name: str, common: CommonSettings, bus: Bus, *, embedded: bool,
                  settings: Any = None, **extra: Any) -> Service:
    if name == "identity":
        from identity.bootstrap import build as build_identity

        return build_identity(common, bus, embedded=embedded, settings=settings)
    if name == "worklist":
        from worklist.bootstrap import build as build_worklist

        return build_worklist(common, bus, embedded=embedded, settings=settings)
    if name == "reporting":
        from reporting.bootstrap import build as build_reporting

        return build_reporting(common, bus, embedded=embedded, settings=settings)
    if name == "signature":
        from signature.bootstrap import build as build_signature

        return build_signature(common, bus, embedded=embedded, settings=settings)
    if name == "dicom-ingest":
        from dicom_ingest.bootstrap import build as build_ingest

        return build_ingest(common, bus, embedded=embedded, settings=settings)
    if name == "gateway":
        from gateway.bootstrap import build as build_gateway

        return build_gateway(common, bus, embedded=embedded, settings=settings, **extra)
    raise ValueError(f"no such service: {name!r} (one of {', '.join(SERVICES)})")


@dataclass
class Platform:
    """Every service in one process over one bus: ``telerad up``, and the end-to-end tests."""

    common: CommonSettings
    bus: Bus
    embedded: bool = True
    settings: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)

    async def start(self) -> None:
        await self.bus.connect()
        for name in SERVICES:
            extra = {"upstreams": {n: s.http_url for n, s in self.services.items()}} if name == "gateway" else {}
            service = build_service(name, self.common, self.bus, embedded=self.embedded,
                                    settings=self.settings.get(name), **extra)
            await service.prepare()
            await service.start()
            self.services[name] = service
            if name == "identity":  # the others fetch its public keys from where it really listens
                self.common = self.common.model_copy(update={"identity_url": service.http_url})

    async def stop(self) -> None:
        for name in reversed(list(self.services)):
            await self.services.pop(name).stop()
        await self.bus.close()

    async def seed_demo(self, password: str) -> bool:
        """The demo organisation and its users, and its modalities (local storescu and pynetdicom senders)."""
        organization_id = self.common.default_organization_id
        seeded: bool = await self.services["identity"].seed_demo(organization_id, password)  # type: ignore[attr-defined]
        await self.services["dicom-ingest"].register_demo_modalities(organization_id)  # type: ignore[attr-defined]
        return seeded

    @property
    def gateway_url(self) -> str:
        return self.services["gateway"].http_url

    @property
    def dicom_port(self) -> int:
        return self.services["dicom-ingest"].scp.port  # type: ignore[attr-defined, no-any-return]
