"""The SCP under a cheap denial-of-service: idle TCP connections and a stream of malformed PDUs.

A registered modality (ECHOSCU from 127.0.0.1, a demo modality) must still get every C-ECHO answered
within a few seconds, the idle connections must be closed by the server within the ACSE (ARTIM)
timeout, and a good C-STORE must work afterwards. Embedded platform; sockets and pynetdicom block, so
they run in threads.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from support.platform import running_platform
from support.studies import ORG_ROOT, ct_instance
from telerad.platform import Platform

pytestmark = pytest.mark.integration

IDLE_FROM_LOCALHOST = 10  # more than the per-address cap (8)
IDLE_FROM_OTHERS = 40  # 127.0.0.2 .. 127.0.0.41, one each
ECHOES = 6
ECHO_BOUND_SECONDS = 3.0
CLOSED_WITHIN_SECONDS = 10.0


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with running_platform(tmp_path / "platform") as running:
        yield running


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def a_truncated_associate_request() -> bytes:
    """The start of an A-ASSOCIATE-RQ (PS3.8 §9.3.2) announcing 205 bytes, cut off after 43."""
    return struct.pack(">BBL", 0x01, 0, 205) + struct.pack(">HH", 1, 0) + b"TELERAD".ljust(16) + b"ECHOSCU"


MALFORMED = [
    random.Random(7).randbytes(300),  # garbage
    struct.pack(">BBL", 0x01, 0, 0xFFFFFFFF),  # announces 4 GiB
    struct.pack(">BBL", 0x09, 0, 16) + b"\0" * 16,  # unknown PDU type
    a_truncated_associate_request(),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
]


def malformed_stream(port: int, stop: threading.Event, sent: list[int]) -> None:
    """Send malformed PDUs from 127.0.0.1, one connection each, until ``stop``."""
    while not stop.is_set():
        for payload in MALFORMED:
            try:
                with connect(port) as sock:
                    sock.sendall(payload)
                    sock.settimeout(0.2)
                    try:
                        sock.recv(64)
                    except OSError:
                        pass  # the truncated request waits for more; we hang up
                sent[0] += 1
            except OSError:
                pass  # refused under load is fine: the point is what happens to the echoes
            time.sleep(0.01)


def stalled_requests(port: int) -> list[socket.socket]:
    """A-ASSOCIATE-RQs that start and never finish, from other addresses: held until the ACSE deadline."""
    stalled = []
    for n in range(50, 55):
        sock = connect(port, f"127.0.0.{n}")
        sock.sendall(a_truncated_associate_request())
        stalled.append(sock)
    return stalled


def timed_echo(port: int) -> tuple[int, float]:
    ae = AE(ae_title="ECHOSCU")
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    ae.add_requested_context(Verification)
    started = time.monotonic()
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    if not assoc.is_established:
        return -1, time.monotonic() - started
    try:
        status = int(assoc.send_c_echo().Status)
    finally:
        assoc.release()
    return status, time.monotonic() - started


def c_store_good_instance(port: int) -> int:
    ds = ct_instance(generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), 1, 1, bytes(8 * 8 * 2), 8,
                     "ACC9", "PAT9", "Doe^Jane")
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(ds).Status)
    finally:
        assoc.release()


def seconds_until_closed(sock: socket.socket, limit: float) -> float | None:
    started = time.monotonic()
    try:
        while (remaining := limit - (time.monotonic() - started)) > 0:
            sock.settimeout(remaining)
            if not sock.recv(4096):
                return time.monotonic() - started
    except ConnectionResetError:
        return time.monotonic() - started
    except TimeoutError:
        return None
    return None


def attack_and_echo(port: int) -> tuple[list[tuple[int, float]], list[socket.socket], int]:
    idle = [connect(port) for _ in range(IDLE_FROM_LOCALHOST)]
    idle += [connect(port, f"127.0.0.{n}") for n in range(2, 2 + IDLE_FROM_OTHERS)]
    idle += stalled_requests(port)
    stop, sent = threading.Event(), [0]
    attacker = threading.Thread(target=malformed_stream, args=(port, stop, sent), daemon=True)
    attacker.start()
    try:
        time.sleep(0.3)  # let the stream get going
        echoes = []
        for _ in range(ECHOES):
            echoes.append(timed_echo(port))
            time.sleep(0.2)
    finally:
        stop.set()
        attacker.join(5)
    return echoes, idle, sent[0]


async def test_echo_is_answered_while_idle_connections_and_malformed_pdus_hit_the_port(platform: Platform) -> None:
    port = platform.dicom_port
    echoes, idle, malformed_sent = await asyncio.to_thread(attack_and_echo, port)
    try:
        assert malformed_sent >= len(MALFORMED)
        assert [status for status, _ in echoes] == [0x0000] * ECHOES, echoes
        assert max(seconds for _, seconds in echoes) < ECHO_BOUND_SECONDS, echoes

        closed = await asyncio.gather(*(asyncio.to_thread(seconds_until_closed, sock, CLOSED_WITHIN_SECONDS)
                                        for sock in idle))
        assert all(seconds is not None for seconds in closed), \
            f"{sum(s is None for s in closed)} of {len(idle)} idle connections still open"
    finally:
        for sock in idle:
            sock.close()

    assert await asyncio.to_thread(c_store_good_instance, port) == 0x0000
    status, seconds = await asyncio.to_thread(timed_echo, port)
    assert status == 0x0000 and seconds < ECHO_BOUND_SECONDS
