"""The modality registry: its table, and the in-memory directory the DICOM SCP's threads read.

pynetdicom asks for every association from its own thread, so matching never touches the
database: it reads a :class:`ModalityDirectory` snapshot, replaced whole after every change made
here and every ``refresh_seconds`` (changes made by other replicas arrive that way).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from datetime import UTC, datetime
from ipaddress import ip_network
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, delete, select

from dicom_ingest.domain.modalities import (
    Modality,
    ModalityDirectory,
    conflicting,
    normalize_ae_title,
    parse_host,
    parse_port,
)
from radcommon.db import Database
from radcommon.uow import SqlUnitOfWork

log = logging.getLogger(__name__)


class ModalityRow(SQLModel, table=True):
    __tablename__ = "modalities"
    __table_args__ = (
        sa.UniqueConstraint("ae_title", "host"),
        # NULLs are distinct in a unique constraint: this keeps one host-less row per AE title.
        sa.Index("modalities_ae_title_any_host", "ae_title", unique=True,
                 postgresql_where=sa.text("host IS NULL"), sqlite_where=sa.text("host IS NULL")),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    organization_id: UUID = Field(index=True)
    ae_title: str = Field(max_length=16)
    host: str | None = Field(default=None, max_length=64)
    description: str = Field(default="", max_length=200)
    #: Set for a move destination: C-MOVE sub-operations connect to host:port.
    port: int | None = None
    created_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


class ModalityConflict(Exception):
    """The AE title is already registered at that host, or at an overlapping one by another organisation."""


class ModalityNotFound(Exception):
    pass


class SqlModalityRegistry:
    def __init__(self, db: Database, *, refresh_seconds: float = 5.0) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self.directory = ModalityDirectory()
        self._writing = asyncio.Lock()

    def match(self, calling_ae_title: str, address: str) -> Modality | None:
        """Safe from any thread: reads the current snapshot only."""
        return self.directory.match(calling_ae_title, address)

    def destination(self, organization_id: UUID, move_destination: str) -> Modality | None:
        """Safe from any thread: the organisation's move destination of that AE title, if registered."""
        return self.directory.destination(organization_id, move_destination)

    async def reload(self) -> None:
        async with self.db.session() as session:
            rows = (await session.execute(select(ModalityRow))).scalars().all()
        self.directory = ModalityDirectory(_modality(row) for row in rows)

    async def reload_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.reload()
            except Exception as error:
                log.warning("could not reload the modality registry; keeping %d cached: %s",
                            len(self.directory), error)

    async def of_organization(self, organization_id: UUID) -> list[Modality]:
        async with self.db.session() as session:
            rows = (await session.execute(
                select(ModalityRow).where(col(ModalityRow.organization_id) == organization_id)
                .order_by(col(ModalityRow.ae_title), col(ModalityRow.created_at)))).scalars().all()
        return [_modality(row) for row in rows]

    async def register(self, organization_id: UUID, ae_title: str, host: str | None = None,
                       description: str = "", port: int | None = None) -> Modality:
        """Raises ValueError for an invalid AE title, host or port, :class:`ModalityConflict` for a clash.

        With a port (and a host that is one address) the modality is also a move destination.
        """
        title, network = normalize_ae_title(ae_title), parse_host(host)
        port = parse_port(port, network)
        row = ModalityRow(organization_id=organization_id, ae_title=title,
                          host=None if network is None else str(network), description=description,
                          port=port, created_at=datetime.now(UTC))
        async with self._writing, SqlUnitOfWork(self.db) as uow:
            if self.db.is_postgres:  # replicas registering the same title check and insert one at a time
                await uow.session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(title)})
            same_title = (await uow.session.execute(
                select(ModalityRow).where(col(ModalityRow.ae_title) == title))).scalars().all()
            clash = conflicting((_modality(r) for r in same_title), organization_id, title, network, port)
            if clash is not None:
                raise ModalityConflict(_clash_detail(clash, organization_id))
            uow.session.add(row)
            try:
                await uow.commit()
            except IntegrityError:
                raise ModalityConflict(f"{title} is already registered at that host") from None
        await self._reload_after_change()
        return _modality(row)

    async def unregister(self, organization_id: UUID, modality_id: UUID) -> None:
        """Raises :class:`ModalityNotFound` unless the organisation has that modality."""
        async with self._writing, SqlUnitOfWork(self.db) as uow:
            result = await uow.session.execute(delete(ModalityRow).where(
                col(ModalityRow.id) == modality_id, col(ModalityRow.organization_id) == organization_id))
            if not result.rowcount:  # type: ignore[attr-defined]
                raise ModalityNotFound(str(modality_id))
            await uow.commit()
        await self._reload_after_change()

    async def _reload_after_change(self) -> None:
        try:
            await self.reload()
        except Exception as error:  # the change is saved; the periodic reload will bring it in
            log.warning("could not reload the modality registry after a change: %s", error)


class FreshModalities:
    """``match`` and ``destination`` for threads of another process than the one registrations go through
    (an SCP worker): before calling a modality unknown, reload the registry on ``loop`` (at most once per
    ``min_interval``), so one registered a moment ago through the API is found without waiting for the
    next periodic reload. A stale entry (a modality just unregistered) lasts until that reload."""

    def __init__(self, registry: SqlModalityRegistry, loop: asyncio.AbstractEventLoop, *,
                 min_interval: float = 1.0, timeout: float = 5.0) -> None:
        self.registry = registry
        self.loop = loop
        self.min_interval = min_interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._reloaded = float("-inf")

    def match(self, calling_ae_title: str, address: str) -> Modality | None:
        return self.registry.match(calling_ae_title, address) or (
            self.registry.match(calling_ae_title, address) if self._reload() else None)

    def destination(self, organization_id: UUID, move_destination: str) -> Modality | None:
        return self.registry.destination(organization_id, move_destination) or (
            self.registry.destination(organization_id, move_destination) if self._reload() else None)

    def _reload(self) -> bool:
        with self._lock:
            if time.monotonic() - self._reloaded < self.min_interval:
                return False
            self._reloaded = time.monotonic()
            asyncio.run_coroutine_threadsafe(self.registry.reload(), self.loop).result(self.timeout)
            return True


def _modality(row: ModalityRow) -> Modality:
    return Modality(id=row.id, organization_id=row.organization_id, ae_title=row.ae_title,
                    host=None if row.host is None else ip_network(row.host),
                    description=row.description, created_at=_utc(row.created_at), port=row.port)


def _clash_detail(clash: Modality, organization_id: UUID) -> str:
    if clash.organization_id != organization_id:  # say nothing of another tenant's network
        return f"{clash.ae_title} is already registered by another organisation at that or an overlapping host"
    where = "any address" if clash.host is None else str(clash.host)
    if clash.port is not None:
        return f"{clash.ae_title} is already registered as a move destination at {where} port {clash.port}"
    return f"{clash.ae_title} is already registered at {where}"


def _lock_key(ae_title: str) -> int:
    return int.from_bytes(hashlib.sha256(f"modality:{ae_title}".encode()).digest()[:8], "big", signed=True)


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
