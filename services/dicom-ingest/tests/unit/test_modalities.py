import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from dicom_ingest.adapters.modalities import ModalityConflict, ModalityNotFound, SqlModalityRegistry
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.domain.modalities import (
    Modality,
    ModalityDirectory,
    conflicting,
    normalize_ae_title,
    parse_host,
    parse_port,
)
from dicom_ingest.entrypoints.modalities_models import ModalityRegistration
from dicom_ingest.entrypoints.scp import StorageSCP
from radcommon.db import Database
from support.dimse import associate

ORG_A, ORG_B = UUID(int=0xA), UUID(int=0xB)


def a_modality(ae_title: str, host: str | None = None, organization_id: UUID = ORG_A,
               port: int | None = None) -> Modality:
    return Modality(id=uuid4(), organization_id=organization_id, ae_title=ae_title,
                    host=None if host is None else ip_network(host), description="", created_at=datetime.now(UTC),
                    port=port)


@pytest.mark.parametrize(("value", "title"), [
    ("CT1", "CT1"), ("  CT1  ", "CT1"), ("CT ROOM 1", "CT ROOM 1"), ("A" * 16, "A" * 16),
    (" " * 3 + "B" * 16 + " ", "B" * 16), ("!#$%&'()*+,-./:;", "!#$%&'()*+,-./:;"), ("lower_case~", "lower_case~")])
def test_an_ae_title_keeps_its_significant_characters(value: str, title: str) -> None:
    assert normalize_ae_title(value) == title


@pytest.mark.parametrize(("value", "reason"), [
    ("", "other than a space"), ("    ", "other than a space"), ("A" * 17, "at most 16"),
    ("CT\\1", "backslash"), ("CT\n1", "printable"), ("CT\x1b1", "printable"), ("CT\x7f", "printable"),
    ("CT\t", "printable"), ("CTÉ", "printable"), ("CT\u200b", "printable")])
def test_an_ae_title_outside_the_ae_vr_is_refused(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        normalize_ae_title(value)


@pytest.mark.parametrize(("value", "network"), [
    (None, None), ("127.0.0.1", "127.0.0.1/32"), ("10.0.0.0/8", "10.0.0.0/8"), (" 10.1.2.0/24 ", "10.1.2.0/24"),
    ("::1", "::1/128"), ("2001:db8::/32", "2001:db8::/32"), ("0.0.0.0/0", "0.0.0.0/0")])
def test_a_host_is_an_address_or_a_network(value: str | None, network: str | None) -> None:
    parsed = parse_host(value)
    assert (None if parsed is None else str(parsed)) == network


@pytest.mark.parametrize("value", ["", "localhost", "10.1.2.3/8", "10.0.0.0/33", "300.1.1.1", "::ffff:10.0.0.1",
                                   "10.0.0.0/8 or so"])
def test_a_host_that_is_no_address_or_network_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_host(value)


def test_the_calling_ae_title_must_match_exactly() -> None:
    directory = ModalityDirectory([ct := a_modality("CT1")])

    assert directory.match("CT1", "192.0.2.7") == ct
    assert directory.match("  CT1 ", "192.0.2.7") == ct
    assert directory.match("ct1", "192.0.2.7") is None
    assert directory.match("CT12", "192.0.2.7") is None
    assert directory.match("", "192.0.2.7") is None


def test_a_registration_with_a_host_accepts_only_that_host() -> None:
    directory = ModalityDirectory([a_modality("CT1", "10.1.2.0/24"), a_modality("MR1", "2001:db8::/32")])

    assert directory.match("CT1", "10.1.2.200") is not None
    assert directory.match("CT1", "::ffff:10.1.2.200") is not None  # a dual-stack listener's view of IPv4
    assert directory.match("CT1", "10.1.3.1") is None
    assert directory.match("CT1", "127.0.0.1") is None
    assert directory.match("CT1", "not an address") is None
    assert directory.match("MR1", "2001:db8::5") is not None
    assert directory.match("MR1", "10.1.2.200") is None


def test_the_most_specific_registration_wins() -> None:
    anywhere = a_modality("CT1")
    network = a_modality("CT1", "10.0.0.0/8")
    one_host = a_modality("CT1", "10.1.2.3")
    directory = ModalityDirectory([anywhere, network, one_host])

    assert directory.match("CT1", "10.1.2.3") == one_host
    assert directory.match("CT1", "10.9.9.9") == network
    assert directory.match("CT1", "192.0.2.1") == anywhere
    assert directory.match("CT1", "garbage") == anywhere
    assert len(directory) == 3


def test_the_same_title_and_host_is_registered_once_by_anyone() -> None:
    existing = [a_modality("CT1", "10.0.0.0/8", ORG_A), a_modality("MR1", None, ORG_A)]

    assert conflicting(existing, ORG_A, "CT1", ip_network("10.0.0.0/8")) == existing[0]
    assert conflicting(existing, ORG_B, "CT1", ip_network("10.0.0.0/8")) == existing[0]
    assert conflicting(existing, ORG_A, "MR1", None) == existing[1]


def test_another_organisation_may_not_claim_an_overlapping_host() -> None:
    existing = [a_modality("CT1", "10.1.0.0/16", ORG_A), a_modality("MR1", None, ORG_A)]

    assert conflicting(existing, ORG_B, "CT1", ip_network("10.1.2.3/32")) is not None  # would capture A's studies
    assert conflicting(existing, ORG_B, "CT1", ip_network("10.0.0.0/8")) is not None
    assert conflicting(existing, ORG_B, "CT1", None) is not None
    assert conflicting(existing, ORG_B, "MR1", ip_network("192.0.2.0/24")) is not None
    assert conflicting(existing, ORG_B, "CT1", ip_network("10.2.0.0/16")) is None
    assert conflicting(existing, ORG_B, "CT1", ip_network("2001:db8::/32")) is None
    assert conflicting(existing, ORG_B, "CT2", ip_network("10.1.2.3/32")) is None


def test_one_organisation_may_register_a_title_at_nested_hosts() -> None:
    existing = [a_modality("CT1", "10.1.0.0/16", ORG_A)]

    assert conflicting(existing, ORG_A, "CT1", ip_network("10.1.2.3/32")) is None
    assert conflicting(existing, ORG_A, "CT1", None) is None


@pytest.mark.parametrize(("port", "host", "reason"), [
    (0, "10.1.2.3/32", "between 1 and 65535"), (65536, "10.1.2.3/32", "between 1 and 65535"),
    (104, None, "one IP address"), (104, "10.1.2.0/24", "one IP address")])
def test_a_move_destination_needs_a_port_and_one_address(port: int, host: str | None, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_port(port, None if host is None else ip_network(host))
    assert parse_port(104, ip_network("2001:db8::7/128")) == 104 and parse_port(None, None) is None


def test_a_move_destination_is_found_within_its_organisation_only() -> None:
    pacs_a = a_modality("PACS", "10.1.2.3", ORG_A, port=104)
    pacs_b = a_modality("PACS", "192.0.2.9", ORG_B, port=11112)
    directory = ModalityDirectory([pacs_a, pacs_b, a_modality("CT1", "10.1.2.4", ORG_A)])

    assert directory.destination(ORG_A, "PACS ") == pacs_a and pacs_a.destination == ("10.1.2.3", 104)
    assert directory.destination(ORG_B, "PACS") == pacs_b and pacs_b.destination == ("192.0.2.9", 11112)
    assert directory.destination(ORG_A, "CT1") is None  # registered to call in, not as a destination
    assert directory.destination(ORG_B, "CT1") is None and directory.destination(ORG_A, "pacs") is None


def test_an_organisation_has_one_move_destination_per_title() -> None:
    existing = [a_modality("PACS", "10.1.2.3", ORG_A, port=104)]

    assert conflicting(existing, ORG_A, "PACS", ip_network("10.1.2.4/32"), 104) == existing[0]
    assert conflicting(existing, ORG_A, "PACS", ip_network("10.1.2.4/32")) is None  # calling in from elsewhere
    assert conflicting(existing, ORG_B, "PACS", ip_network("192.0.2.9/32"), 104) is None


def test_the_registration_body_is_normalised_and_checked() -> None:
    body = ModalityRegistration.model_validate({"ae_title": " CT1 ", "host": "10.1.2.3"})
    assert (body.ae_title, body.host, body.description) == ("CT1", "10.1.2.3/32", "")

    destination = ModalityRegistration.model_validate({"ae_title": "PACS", "host": "10.1.2.3", "port": 104})
    assert (destination.host, destination.port) == ("10.1.2.3/32", 104)

    for bad in ({"ae_title": "CT\\1"}, {"ae_title": "CT1", "host": "10.1.2.3/8"}, {"ae_title": "CT1", "extra": 1},
                {"ae_title": "CT1", "description": "line\nbreak"}, {}, {"ae_title": "PACS", "port": 104},
                {"ae_title": "PACS", "host": "10.1.2.0/24", "port": 104},
                {"ae_title": "PACS", "host": "10.1.2.3", "port": 0}):
        with pytest.raises(ValidationError):
            ModalityRegistration.model_validate(bad)


async def test_a_registration_is_matched_at_once_and_listed_for_its_organisation_only(database: Database) -> None:
    registry = SqlModalityRegistry(database)

    ct = await registry.register(ORG_A, " CT1", "10.1.2.3", "CT room 1")
    mr = await registry.register(ORG_B, "MR1")

    assert registry.match("CT1", "10.1.2.3") == ct
    assert registry.match("CT1", "10.1.2.4") is None
    assert registry.match("MR1", "192.0.2.1") == mr
    assert [m.id for m in await registry.of_organization(ORG_A)] == [ct.id]
    assert (ct.ae_title, str(ct.host), ct.description) == ("CT1", "10.1.2.3/32", "CT room 1")


async def test_conflicting_registrations_are_refused(database: Database) -> None:
    registry = SqlModalityRegistry(database)
    await registry.register(ORG_A, "CT1", "10.1.0.0/16")
    await registry.register(ORG_A, "MR1")

    for organization_id, title, host in [(ORG_A, "CT1", "10.1.0.0/16"), (ORG_B, "CT1", "10.1.0.0/16"),
                                         (ORG_B, "CT1", "10.1.2.3"), (ORG_B, "CT1", None), (ORG_A, "MR1", None)]:
        with pytest.raises(ModalityConflict):
            await registry.register(organization_id, title, host)
    with pytest.raises(ValueError):
        await registry.register(ORG_A, "CT\\1")
    assert len(registry.directory) == 2


async def test_one_host_less_row_per_title_even_past_the_check(database: Database,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    registry = SqlModalityRegistry(database)
    await registry.register(ORG_A, "MR1")
    monkeypatch.setattr("dicom_ingest.adapters.modalities.conflicting", lambda *_: None)

    with pytest.raises(ModalityConflict):  # the partial unique index: NULL hosts are not distinct otherwise
        await registry.register(ORG_A, "MR1")


async def test_a_move_destination_is_registered_with_its_port(database: Database) -> None:
    registry = SqlModalityRegistry(database)

    pacs = await registry.register(ORG_A, "PACS", "127.0.0.1", "the reading room", 11112)

    assert registry.destination(ORG_A, "PACS") == pacs and pacs.destination == ("127.0.0.1", 11112)
    assert registry.destination(ORG_B, "PACS") is None
    assert [m.port for m in await registry.of_organization(ORG_A)] == [11112]
    with pytest.raises(ModalityConflict, match="move destination"):
        await registry.register(ORG_A, "PACS", "127.0.0.2", port=104)
    with pytest.raises(ValueError, match="one IP address"):
        await registry.register(ORG_A, "WS1", None, port=104)
    assert len(registry.directory) == 1


async def test_only_the_owner_can_unregister(database: Database) -> None:
    registry = SqlModalityRegistry(database)
    ct = await registry.register(ORG_A, "CT1")

    with pytest.raises(ModalityNotFound):
        await registry.unregister(ORG_B, ct.id)
    assert registry.match("CT1", "192.0.2.1") == ct

    await registry.unregister(ORG_A, ct.id)

    assert registry.match("CT1", "192.0.2.1") is None
    assert await registry.of_organization(ORG_A) == []
    with pytest.raises(ModalityNotFound):
        await registry.unregister(ORG_A, ct.id)


async def test_another_replica_sees_changes_on_its_next_reload(database: Database) -> None:
    here, there = SqlModalityRegistry(database), SqlModalityRegistry(database, refresh_seconds=0.05)
    refreshing = asyncio.create_task(there.reload_forever())
    try:
        ct = await here.register(ORG_A, "CT1")
        assert there.match("CT1", "192.0.2.1") is None
        await asyncio.sleep(0.3)
        assert there.match("CT1", "192.0.2.1") == ct
    finally:
        refreshing.cancel()


async def test_a_failed_reload_keeps_the_directory(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    registry = SqlModalityRegistry(database, refresh_seconds=0.05)
    ct = await registry.register(ORG_A, "CT1")
    registry.db = Database("sqlite+aiosqlite:////nonexistent/directory/dicom_ingest.db")
    refreshing = asyncio.create_task(registry.reload_forever())
    try:
        await asyncio.sleep(0.2)
        assert registry.match("CT1", "192.0.2.1") == ct
        assert any("keeping 1 cached" in r.getMessage() for r in caplog.records)
    finally:
        refreshing.cancel()
        await registry.db.dispose()


@pytest.fixture
async def scp_with(tmp_path: Path) -> AsyncIterator[Callable[[Callable[[str, str], Modality | None]], StorageSCP]]:
    started: list[StorageSCP] = []

    async def never(*_: Any) -> Any:
        raise AssertionError("not reached")

    def start(find_modality: Callable[[str, str], Modality | None]) -> StorageSCP:
        scp = StorageSCP(DicomIngestSettings(dicom_port=0, acse_timeout_seconds=5), FileStorage(tmp_path),
                         never, never, find_modality)
        scp.start()
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


async def test_the_scp_accepts_a_registered_modality_and_rejects_others(
        scp_with: Callable[[Callable[[str, str], Modality | None]], StorageSCP],
        caplog: pytest.LogCaptureFixture) -> None:
    directory = ModalityDirectory([a_modality("CT1", "127.0.0.1"), a_modality("MR1", "10.0.0.0/8")])
    scp = scp_with(directory.match)

    assert await asyncio.to_thread(associate, scp.port, "CT1") == (True, None, 0x0000)
    assert await asyncio.to_thread(associate, scp.port, "MR1") == (False, (0x01, 0x01, 0x03), None)
    assert await asyncio.to_thread(associate, scp.port, "XR1") == (False, (0x01, 0x01, 0x03), None)
    rejected = [r for r in caplog.records if r.getMessage().startswith("association rejected")]
    assert [(r.levelname, r.calling_ae_title, r.address) for r in rejected] == [  # type: ignore[attr-defined]
        ("WARNING", "MR1", "127.0.0.1"), ("WARNING", "XR1", "127.0.0.1")]


async def test_the_scp_rejects_transiently_when_the_registry_cannot_answer(
        scp_with: Callable[[Callable[[str, str], Modality | None]], StorageSCP]) -> None:
    def broken(calling_ae_title: str, address: str) -> Modality | None:
        raise RuntimeError("registry unavailable")

    scp = scp_with(broken)

    assert await asyncio.to_thread(associate, scp.port, "CT1") == (False, (0x02, 0x01, 0x01), None)
