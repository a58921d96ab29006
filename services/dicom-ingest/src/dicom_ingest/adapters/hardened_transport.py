"""A pynetdicom association server that a few idle or malformed connections cannot take down.

pynetdicom 3.0's own transport trusts its peer: ``AssociationSocket.recv`` reads whatever PDU length
the peer announces (up to 2**32 - 1 bytes, blocking without a timeout), and an idle TCP connection holds
one of ``maximum_associations`` acceptor threads until the ACSE timeout. A dozen idle connections
locked real modalities out for ~30 s. This module adds, around pynetdicom's state machine:

* a cap on each incoming PDU's announced length, checked on the 6-byte header before anything is read
  or allocated: ``associate_request_limit`` for the first PDU (the A-ASSOCIATE-RQ), and the
  maximum PDU length we negotiated plus ``pdu_slack`` once established. A PDU over the cap, an unknown
  PDU type (PS3.8 §9.3.1: only 0x01-0x07 exist) or a first PDU that is neither A-ASSOCIATE-RQ nor
  A-ABORT gets an A-ABORT (PS3.8 §9.3.8, source: service provider) and the connection is closed at once;
* a deadline on reading each PDU (the ACSE timeout for the A-ASSOCIATE-RQ, the network timeout after),
  so a peer dribbling bytes cannot hold a thread; the socket also gets the network timeout for sends;
* connection caps checked at accept: at most ``maximum_connections_per_address`` from one address and
  ``maximum_connections`` in all. When a cap is reached the *oldest connection that has not sent a byte
  yet* (from that address, else from anywhere) is closed to make room; only when none is idle is the new
  connection refused. Real modalities send their A-ASSOCIATE-RQ right after connecting, so idle
  connections can only displace each other, never lock a modality out;
* a lobby: one thread waits for the first byte of every new connection, and only then does pynetdicom
  get it (pynetdicom runs two threads per connection, each polling every millisecond: 60 idle
  connections alone slowed a C-ECHO to ~5 s through GIL contention);
* TCP_NODELAY on accepted sockets (small DIMSE responses are not held back by Nagle), and TCP_QUICKACK
  re-armed before each read (a peer with Nagle on is not held back by our delayed ACKs).

Version coupling: this uses pynetdicom's documented hooks (``AE.make_server(server_class=..., **kwargs)``,
``AssociationServer(request_handler=...)``) and, beyond them, three internals of pynetdicom 3.0.x,
which is why services/dicom-ingest pins ``pynetdicom>=3.0,<3.1``:

1. ``DULServiceProvider._read_pdu_data`` calls ``AssociationSocket.recv(6)`` for a PDU header and then
   ``recv(length)`` for its body, and turns a short header into Evt17 (transport closed) silently;
2. ``RequestHandler._create_association`` builds the acceptor's ``AssociationSocket``; we subclass the
   handler and switch that socket's class to ours (it has no state of its own until adopted);
3. ``Association.run_reactor`` waits for the A-ASSOCIATE-RQ on ``dul.to_user_queue`` and ends the
   association when it gets ``None``; putting ``None`` there ends a dropped connection's thread at once
   instead of after the ACSE timeout. ``AE._servers`` must list the server for ``shutdown()``.
tests in services/dicom-ingest/tests/unit/test_hardened_transport.py pin these behaviours.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from pynetdicom import AE
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from dicom_ingest.adapters.direct_store import DirectStoreDUL, Lane

log = logging.getLogger(__name__)

HEADER_LENGTH = 6
A_ASSOCIATE_RQ, A_ABORT = 0x01, 0x07
KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
#: A-ABORT reasons when the source is the service provider (PS3.8 §9.3.8, Table 9-26).
UNRECOGNIZED_PDU, UNEXPECTED_PDU, INVALID_PDU_PARAMETER_VALUE = 0x01, 0x02, 0x06
SERVICE_PROVIDER = 0x02
#: Linux only; elsewhere the delayed-ACK mitigation is skipped.
TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
#: With a negotiated maximum of 0 ("unlimited", PS3.8 §D.1) we still refuse anything larger.
UNLIMITED_PDU_CAP = 16 * 1024**2


@dataclass(frozen=True)
class TransportLimits:
    associate_request_limit: int = 64 * 1024
    pdu_slack: int = 1024
    maximum_connections: int = 64
    maximum_connections_per_address: int = 8
    associate_request_timeout: float = 5.0
    network_timeout: float = 30.0


def abort_pdu(reason: int) -> bytes:
    """An A-ABORT PDU from the service provider (PS3.8 §9.3.8)."""
    return struct.pack(">BBLBBBB", A_ABORT, 0, 4, 0, 0, SERVICE_PROVIDER, reason)


@dataclass(eq=False)
class Connection:
    """One accepted TCP connection, as the caps see it."""

    sock: socket.socket
    address: str
    accepted_at: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: bool = False  # the peer has begun sending a PDU: no longer idle, never evicted
    dropped: bool = False
    assoc: Any = None  # the pynetdicom Association, once the request handler has made it

    def drop(self) -> None:
        """Close the transport; if no PDU was ever read, also end the association's thread now.

        The acceptor thread waits on ``dul.to_user_queue`` for the A-ASSOCIATE-RQ and gives up on
        ``None`` (pynetdicom internal, see the module docstring).
        """
        with self.lock:
            if self.dropped:
                return
            self.dropped = True
            wake = not self.started and self.assoc is not None
        shut(self.sock)
        if wake:
            self.assoc.dul.to_user_queue.put(None)

    def adopt(self, assoc: Any) -> None:
        with self.lock:
            self.assoc = assoc
            wake = self.dropped and not self.started
        if wake:
            assoc.dul.to_user_queue.put(None)


def shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class ConnectionRegistry:
    """The per-address and global connection caps (see the module docstring)."""

    def __init__(self, limits: TransportLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._by_socket: dict[socket.socket, Connection] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_socket)

    def admit(self, sock: socket.socket, address: str) -> Connection | None:
        evicted: list[Connection] = []
        with self._lock:
            same = [c for c in self._by_socket.values() if c.address == address]
            if len(same) >= self.limits.maximum_connections_per_address:
                victim = self._oldest_idle(same)
                if victim is None:
                    return None
                evicted.append(self._forget(victim))
            if len(self._by_socket) >= self.limits.maximum_connections:
                victim = self._oldest_idle(list(self._by_socket.values()))
                if victim is None:
                    for connection in evicted:  # nothing else idle: refuse, but the evicted stays evicted
                        connection.drop()
                    return None
                evicted.append(self._forget(victim))
            connection = Connection(sock, address)
            self._by_socket[sock] = connection
        for victim in evicted:
            log.warning("closing an idle DICOM connection from %s to make room for a new one", victim.address,
                        extra={"address": victim.address})
            victim.drop()
        return connection

    def get(self, sock: socket.socket) -> Connection | None:
        with self._lock:
            return self._by_socket.get(sock)

    def release(self, connection: Connection) -> None:
        with self._lock:
            if self._by_socket.get(connection.sock) is connection:
                del self._by_socket[connection.sock]

    def _forget(self, connection: Connection) -> Connection:
        del self._by_socket[connection.sock]
        return connection

    @staticmethod
    def _oldest_idle(connections: list[Connection]) -> Connection | None:
        idle = [c for c in connections if not c.started and not c.dropped]
        return min(idle, key=lambda c: c.accepted_at, default=None)


class HardenedAssociationSocket(AssociationSocket):  # type: ignore[misc]
    """``AssociationSocket`` whose ``recv`` checks each PDU header before reading the body."""

    _connection: Connection
    _registry: ConnectionRegistry
    _limits: TransportLimits
    _body_length: int | None
    _deadline: float
    _pdus_read: int

    @classmethod
    def adopt(cls, sock: AssociationSocket, connection: Connection, registry: ConnectionRegistry) -> None:
        """Turn the ``AssociationSocket`` pynetdicom made for an accepted connection into this class."""
        sock.__class__ = cls
        hardened = cast(HardenedAssociationSocket, sock)
        hardened._connection, hardened._registry, hardened._limits = connection, registry, registry.limits
        hardened._body_length, hardened._deadline, hardened._pdus_read = None, 0.0, 0
        if hardened.socket is not None:
            hardened.socket.settimeout(registry.limits.network_timeout)  # bounds sends to a peer that never reads
        connection.adopt(sock.assoc)

    def recv(self, nr_bytes: int) -> bytearray:
        if self._body_length is None:
            return self._recv_header(nr_bytes)
        self._body_length = None
        body = self._read(nr_bytes)
        if len(body) == nr_bytes:
            self._pdus_read += 1
        return body

    def close(self) -> None:
        super().close()
        self._registry.release(self._connection)

    def _recv_header(self, nr_bytes: int) -> bytearray:
        connection = self._connection
        with connection.lock:
            if connection.dropped:
                return bytearray()  # short header: pynetdicom raises Evt17, transport closed
            connection.started = True
        first = self._pdus_read == 0
        self._deadline = time.monotonic() + (
            self._limits.associate_request_timeout if first else self._limits.network_timeout)
        header = self._read(nr_bytes)
        if len(header) != HEADER_LENGTH or nr_bytes != HEADER_LENGTH:
            return header
        pdu_type, _, length = struct.unpack(">BBL", header)
        if pdu_type not in KNOWN_PDU_TYPES:
            return self._abort(UNRECOGNIZED_PDU, f"unknown PDU type 0x{pdu_type:02X}")
        if first and pdu_type not in (A_ASSOCIATE_RQ, A_ABORT):
            return self._abort(UNEXPECTED_PDU, f"PDU type 0x{pdu_type:02X} before A-ASSOCIATE-RQ")
        limit = self._length_limit(first)
        if length > limit:
            return self._abort(INVALID_PDU_PARAMETER_VALUE,
                               f"PDU type 0x{pdu_type:02X} announces {length} bytes, more than {limit}")
        self._body_length = length
        return header

    def _length_limit(self, first: bool) -> int:
        if first or not self.assoc.is_established:
            return self._limits.associate_request_limit
        negotiated = int(self.assoc.acceptor.maximum_length or 0) or UNLIMITED_PDU_CAP
        return max(negotiated, self._limits.associate_request_limit) + self._limits.pdu_slack

    def _read(self, nr_bytes: int) -> bytearray:
        """Read up to ``nr_bytes`` before the PDU's deadline; fewer means the transport is gone."""
        sock = self.socket
        data = bytearray()
        if sock is None:
            return data
        try:
            if TCP_QUICKACK is not None:
                # Linux leaves quick-ACK mode on its own: re-armed before every read, the ACK of what we
                # read goes out at once, so a sender with Nagle's algorithm on (stock DCMTK, most modality
                # stacks) need not wait ~40 ms of delayed ACK before its next small segment (performance.md §2.4)
                sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
            while len(data) < nr_bytes:
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(min(nr_bytes - len(data), 64 * 1024))
                if not chunk:
                    return data
                data.extend(chunk)
        except TimeoutError:
            self._drop_quietly("a PDU was not received within its deadline")
        except OSError:
            pass  # reset or closed under us: pynetdicom sees the short read as Evt17
        finally:
            if self.socket is not None:
                try:
                    self.socket.settimeout(self._limits.network_timeout)
                except OSError:
                    pass
        return data

    def _abort(self, reason: int, why: str) -> bytearray:
        sock = self.socket
        if sock is not None:
            try:
                sock.settimeout(0.5)
                sock.sendall(abort_pdu(reason))
            except OSError:
                pass
        self._drop_quietly(why)
        return bytearray()  # a short header: pynetdicom takes the transport as closed (Evt17)

    def _drop_quietly(self, why: str) -> None:
        address = self._connection.address
        log.warning("dropping DICOM connection from %s: %s", address, why, extra={"address": address})
        with self._connection.lock:
            # before the first PDU was read the acceptor thread still waits for an A-ASSOCIATE-RQ
            self._connection.started = self._pdus_read > 0
        self._connection.drop()
        self._registry.release(self._connection)


class HardenedRequestHandler(RequestHandler):  # type: ignore[misc]
    server: HardenedAssociationServer

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        connection = self.server.registry.get(cast(socket.socket, self.request))
        if connection is None:  # admitted connections only reach here; be safe if one is not
            connection = Connection(cast(socket.socket, self.request), str(self.client_address[0]))
        HardenedAssociationSocket.adopt(assoc.dul.socket, connection, self.server.registry)
        if self.server.lane is not None:
            DirectStoreDUL.adopt(assoc.dul, self.server.lane())
        return assoc


class HardenedAssociationServer(ThreadedAssociationServer):  # type: ignore[misc]
    """``ThreadedAssociationServer`` with connection caps, TCP_NODELAY and the hardened socket."""

    request_queue_size = 128  # listen backlog; socketserver's default is 5
    daemon_threads = True

    def __init__(self, *args: Any, limits: TransportLimits, reuse_port: bool = False,
                 lane: Callable[[], Lane] | None = None, **kwargs: Any) -> None:
        self.registry = ConnectionRegistry(limits)
        self.reuse_port = reuse_port
        #: Makes each association's C-STORE lane (:mod:`dicom_ingest.adapters.direct_store`); None: pynetdicom alone.
        self.lane = lane
        self._arrivals: queue.SimpleQueue[tuple[Any, Any, float]] = queue.SimpleQueue()
        self._lobby_closed = threading.Event()
        #: Wakes the lobby when a connection arrives or the server closes (its selector waits on it).
        self._lobby_bell, self._lobby_ear = socket.socketpair()
        self._lobby_bell.setblocking(False)
        self._lobby_ear.setblocking(False)
        super().__init__(*args, request_handler=HardenedRequestHandler, **kwargs)
        threading.Thread(target=self._lobby, name="DicomConnectionLobby", daemon=True).start()

    def server_bind(self) -> None:
        """With ``reuse_port``, several processes listen on one port and the kernel spreads new
        connections among them (``SO_REUSEPORT``, Linux 3.9+)."""
        if self.reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = super().get_request()
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        address = str(client_address[0])
        if self.registry.admit(request, address) is None:
            log.warning("refused a DICOM connection from %s: too many connections", address,
                        extra={"address": address})
            return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        """Park the connection in the lobby until its first byte arrives (no thread per idle connection)."""
        self._arrivals.put((request, client_address, time.monotonic() + self.registry.limits.associate_request_timeout))
        self._ring()

    def _ring(self) -> None:
        with contextlib.suppress(OSError):  # full (the lobby is awake anyway) or closed (so is the server)
            self._lobby_bell.send(b"\x00")

    def _lobby(self) -> None:
        """One thread waits for the first byte of every new connection; pynetdicom's acceptor threads
        (two per connection, each polling every millisecond) start only then. Idle past the ACSE timeout,
        or displaced by the caps: closed here."""
        waiting: dict[Any, tuple[Any, float]] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(self._lobby_ear, selectors.EVENT_READ)
            while not self._lobby_closed.is_set():
                while True:
                    try:
                        request, address, deadline = self._arrivals.get_nowait()
                    except queue.Empty:
                        break
                    waiting[request] = (address, deadline)
                    selector.register(request, selectors.EVENT_READ)
                # woken by a connection's first bytes, a new connection, or the server closing; the timeout
                # is for deadlines and connections the caps dropped (checked a few times a second)
                ready = {key.fileobj for key, _ in selector.select(0.25)}
                if self._lobby_ear in ready:
                    with contextlib.suppress(OSError):
                        while self._lobby_ear.recv(4096):
                            pass
                now = time.monotonic()
                for request in list(waiting):
                    address, deadline = waiting[request]
                    connection = self.registry.get(request)
                    gone = connection is None or connection.dropped
                    if request in ready and not gone:
                        selector.unregister(request)
                        del waiting[request]
                        super().process_request(request, address)
                    elif gone or now >= deadline:
                        selector.unregister(request)
                        del waiting[request]
                        if not gone:
                            log.warning("closing an idle DICOM connection from %s: no A-ASSOCIATE-RQ in time",
                                        address[0], extra={"address": address[0]})
                        self.shutdown_request(request)
            for request in waiting:
                self.shutdown_request(request)
        self._lobby_bell.close()
        self._lobby_ear.close()

    def server_close(self) -> None:
        self._lobby_closed.set()
        self._ring()
        super().server_close()

    def shutdown_request(self, request: Any) -> None:
        """pynetdicom calls this when an acceptor's association has ended (and on refusal)."""
        connection = self.registry.get(request)
        if connection is not None:
            self.registry.release(connection)
        super().shutdown_request(request)


def copy_context(context: PresentationContext, transfer_syntaxes: list[Any] | None = None) -> PresentationContext:
    """A copy of ``context`` that shares its UIDs (immutable strings), with ``transfer_syntaxes`` if given.

    pynetdicom deep-copies the acceptor's contexts for every association, and a deep copy rebuilds each
    pydicom ``UID``, which validates it with a regular expression: with 185 storage contexts of 34 transfer
    syntaxes each, about 150 ms of CPU per association. The same lists, copied shallowly, cost well under 1 ms.
    """
    copied = copy.copy(context)
    copied._transfer_syntax = list(context._transfer_syntax if transfer_syntaxes is None else transfer_syntaxes)
    return copied


class CheaplyCopiedContexts(list[PresentationContext]):
    """The server's contexts, which ``deepcopy`` (pynetdicom's, once per association) copies by :func:`copy_context`."""

    def __deepcopy__(self, memo: dict[int, Any]) -> CheaplyCopiedContexts:
        return CheaplyCopiedContexts(copy_context(context) for context in self)


def start_hardened_server(ae: AE, address: tuple[str, int], limits: TransportLimits,
                          evt_handlers: list[Any], *, reuse_port: bool = False,
                          lane: Callable[[], Lane] | None = None) -> HardenedAssociationServer:
    """What ``ae.start_server(address, block=False, evt_handlers=...)`` does, with our server class;
    ``lane`` makes a C-STORE lane for each association (:mod:`dicom_ingest.adapters.direct_store`)."""
    server = cast(HardenedAssociationServer, ae.make_server(
        address, evt_handlers=evt_handlers, server_class=HardenedAssociationServer, limits=limits,
        reuse_port=reuse_port, lane=lane))
    server.contexts = CheaplyCopiedContexts(server.contexts)
    ae._servers.append(server)  # AssociationServer.shutdown() removes it from there
    thread = threading.Thread(target=server.serve_forever, name="HardenedAcceptorServer", daemon=True)
    thread.start()
    return server
