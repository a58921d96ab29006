"""The hardened transport on a bare pynetdicom AE: oversized and unknown PDUs are aborted unread,
idle connections are closed or displaced, and C-ECHO keeps working."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_ingest.adapters.hardened_transport import (
    HardenedAssociationServer,
    TransportLimits,
    abort_pdu,
    start_hardened_server,
)

LIMITS = TransportLimits(maximum_connections=6, maximum_connections_per_address=3,
                         associate_request_timeout=1.0, network_timeout=5.0)


@pytest.fixture
def server() -> Iterator[HardenedAssociationServer]:
    ae = AE(ae_title="TELERAD")
    ae.acse_timeout = LIMITS.associate_request_timeout
    ae.network_timeout = LIMITS.network_timeout
    ae.add_supported_context(Verification)
    running = start_hardened_server(ae, ("127.0.0.1", 0), LIMITS, evt_handlers=[(evt.EVT_C_ECHO, lambda e: 0)])
    yield running
    running.shutdown()


def connect(server: HardenedAssociationServer, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=5, source_address=(source, 0))
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closes ``sock`` within ``seconds``, and what it sent before."""
    received = b""
    deadline = time.monotonic() + seconds
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                return True, received
            received += chunk
    except ConnectionResetError:
        return True, received
    except TimeoutError:
        pass
    return False, received


def echo(server: HardenedAssociationServer) -> int:
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="TELERAD")
    assert assoc.is_established
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


@pytest.mark.parametrize(("header", "reason"), [
    (struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF), 0x06),
    (struct.pack(">BBL", 0x01, 0, 64 * 1024 + 1), 0x06),
    (struct.pack(">BBL", 0x09, 0, 10), 0x01),
    (struct.pack(">BBL", 0x04, 0, 10), 0x02)],
    ids=["0xFFFFFFFF", "just over the A-ASSOCIATE-RQ cap", "unknown type", "P-DATA before association"])
def test_a_bad_pdu_header_is_aborted_at_once_without_reading_the_body(
        server: HardenedAssociationServer, header: bytes, reason: int) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(header)
        closed, received = closed_within(sock, 1.0)
        assert closed, "the server kept the connection open"
        assert time.monotonic() - started < 1.0
        assert received in (abort_pdu(reason), b"")  # the A-ABORT may be lost to the reset
    assert echo(server) == 0x0000


def test_a_stalled_association_request_is_dropped_after_the_acse_timeout(server: HardenedAssociationServer) -> None:
    with connect(server) as sock:
        sock.sendall(struct.pack(">BBL", 0x01, 0, 200) + b"\0" * 20)
        closed, _ = closed_within(sock, LIMITS.associate_request_timeout + 1.5)
        assert closed


def test_idle_connections_are_closed_after_the_acse_timeout(server: HardenedAssociationServer) -> None:
    with connect(server) as sock:
        assert closed_within(sock, LIMITS.associate_request_timeout + 1.5)[0]


def test_idle_connections_make_room_for_new_ones_and_echo_still_works(server: HardenedAssociationServer) -> None:
    idle = [connect(server) for _ in range(LIMITS.maximum_connections_per_address)]
    idle += [connect(server, f"127.0.0.{n}") for n in range(2, 2 + LIMITS.maximum_connections)]
    try:
        started = time.monotonic()
        assert echo(server) == 0x0000
        assert time.monotonic() - started < 1.0
        assert len(server.registry) <= LIMITS.maximum_connections
        # the oldest idle connection from 127.0.0.1 was displaced at once
        assert closed_within(idle[0], 0.5)[0]
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_is_refused_when_nothing_is_idle(server: HardenedAssociationServer) -> None:
    busy = [connect(server) for _ in range(LIMITS.maximum_connections_per_address)]
    try:
        for sock in busy:  # a started, unfinished A-ASSOCIATE-RQ: not idle
            sock.sendall(struct.pack(">BBL", 0x01, 0, 200))
        time.sleep(0.2)
        with connect(server) as extra:
            assert closed_within(extra, 0.5)[0]
    finally:
        for sock in busy:
            sock.close()
