"""C-STORE straight from the socket, in pynetdicom's DUL thread, for the ingest SCP's hot path.

pynetdicom hands every received PDU from its DUL thread to the association's thread through two
queues that each side polls every millisecond, decodes the command set into a pydicom data set, and
encodes the response through pydicom again. For a C-STORE that is most of the work: measured on a
CT instance, about 1 ms of latency per hand-off and about 2 ms of CPU in decoding and encoding
command sets. This module reads the P-DATA-TF PDUs of a C-STORE request itself, in the DUL thread:

* it parses the command set (PS3.7 §9.3.1, Table 9.3-1: group 0000 in Implicit VR Little Endian)
  and, for a C-STORE-RQ on an accepted storage presentation context whose abstract syntax is the
  request's Affected SOP Class, gathers the data set fragments (PS3.8 Annex E) and calls the store
  function with the presentation context's transfer syntax and the bytes as received;
* it sends the C-STORE-RSP (PS3.7 §9.3.1.2) from the same thread, which is the thread pynetdicom
  sends every PDU from, so nothing interleaves on the socket;
* anything else (C-ECHO, C-FIND, C-MOVE, C-GET, the C-STORE-RSPs of a C-GET's sub-operations,
  A-RELEASE, A-ABORT, any state but Sta6) goes to pynetdicom unchanged: the PDUs of a message it
  should handle are held back until the command set is complete, then given to pynetdicom in order,
  re-framed as one P-DATA-TF PDU holding the same PDV items;
* a message the lane cannot follow (a data set fragment with no command before it, a command set that
  does not parse, a PDV of another presentation context in the middle of a message) switches the lane
  off for the rest of the association: from the first PDV it could not place, pynetdicom sees every
  byte as it would have, and answers (usually with an A-ABORT) as it always does;
* a data set over ``maximum_data_set`` bytes is read to its end but not kept and is answered
  0xA700 (Refused: Out of Resources, PS3.4 §B.2.3); an association released or aborted in the middle
  of a data set leaves nothing behind, as nothing is written before the last fragment.

Idle waits. pynetdicom's two threads per association poll: the DUL thread sleeps a millisecond between
looks at its socket and queues, the association's thread a millisecond between looks at its queues and
timers. Each look costs tens of microseconds of Python, so an idle association kept 8-16 % of a core
busy, and every association of a busy SCP took that from the C-STOREs. Here, while established, each
thread waits for a reason to wake, for at most ``IDLE_WAIT_SECONDS``, then looks at its timers as before:

* the DUL thread waits in ``select`` on its socket and on a wake-up pipe, which the association's thread
  writes to when it queues a PDU to send (``send_pdu``) or kills the DUL, so a request is read as soon as
  it arrives and a response is sent as soon as it is queued;
* the association's thread waits in its ``_reactor_checkpoint`` (a :class:`ReactorGate`, which otherwise
  behaves as the Event it replaces) until the DUL thread has acted on an event (a PDU received, a message
  complete, a release or an abort), the DUL has stopped, or the association is being killed; work already
  queued is never waited for.

Version coupling: beyond what :mod:`~dicom_ingest.adapters.hardened_transport` relies on, this uses
``DULServiceProvider._read_pdu_data``, ``_decode_pdu``, ``_is_transport_event``, ``_run_loop_delay``,
``event_queue``, ``_recv_pdu``, ``to_provider_queue``, ``to_user_queue``, ``state_machine.current_state`` and
``do_action``, and ``Association._accepted_cx``, ``_sent_release``, ``_kill``, ``dimse.msg_queue`` and
``_reactor_checkpoint`` (how ``_run_reactor`` waits on it) of pynetdicom 3.0.x (pinned), and ``_decode_pdu``
(:mod:`~dicom_ingest.adapters.associate_cache`);
tests/unit/test_direct_store.py pins the behaviour.
"""

from __future__ import annotations

import logging
import os
import select
import struct
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from pynetdicom.dul import DULServiceProvider

from dicom_ingest.adapters.associate_cache import ASSOCIATE_REQUESTS

log = logging.getLogger(__name__)

#: The store function: (association, transfer syntax UID, SOP Class UID, SOP Instance UID, data set) -> status.
DirectStore = Callable[[Any, str, str, str, bytes], int]

P_DATA_TF, A_RELEASE_RQ = 0x04, 0x05
#: How long an established association's threads wait, with nothing to wake them, before looking at their timers.
IDLE_WAIT_SECONDS = 0.05
#: PDV message control header (PS3.8 §E.2): bit 0 set for a command fragment, bit 1 for the last fragment.
COMMAND_FRAGMENT, LAST_FRAGMENT = 0x01, 0x02
#: Command Field values (PS3.7 §E.1) and Command Data Set Type "no data set" (PS3.7 §9.3.1.1).
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
NO_DATA_SET = 0x0101
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_PROCESSING_FAILURE = 0xC211  # what pynetdicom answers when a C-STORE handler raises
#: A command set is a few hundred bytes; one this large is not followed, pynetdicom gets it.
MAXIMUM_COMMAND_SET = 64 * 1024

AFFECTED_SOP_CLASS_UID, COMMAND_FIELD, MESSAGE_ID = 0x00000002, 0x00000100, 0x00000110
MESSAGE_ID_BEING_RESPONDED_TO, COMMAND_DATA_SET_TYPE = 0x00000120, 0x00000800
STATUS, AFFECTED_SOP_INSTANCE_UID = 0x00000900, 0x00001000


def parse_command_set(data: bytes | bytearray | memoryview) -> dict[int, bytes] | None:
    """The elements of a command set (Implicit VR Little Endian, group 0000 only), or ``None`` if malformed."""
    view = memoryview(data)
    elements: dict[int, bytes] = {}
    offset, end, previous = 0, len(view), -1
    while offset < end:
        if end - offset < 8:
            return None
        group, element, length = struct.unpack_from("<HHI", view, offset)
        tag = (group << 16) | element
        offset += 8
        if group != 0x0000 or tag <= previous or length > end - offset:
            return None
        elements[tag] = bytes(view[offset:offset + length])
        offset += length
        previous = tag
    return elements


def _uid(value: bytes | None) -> str | None:
    if not value:
        return None
    try:
        text = value.rstrip(b"\x00 ").decode("ascii")
    except UnicodeDecodeError:
        return None
    return text or None


def _us(value: bytes | None) -> int | None:
    return struct.unpack("<H", value)[0] if value is not None and len(value) == 2 else None


@dataclass(frozen=True)
class Command:
    """What the lane needs of a received command set."""

    command_field: int | None
    has_data_set: bool
    message_id: int | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> Command | None:
        elements = parse_command_set(data)
        if elements is None:
            return None
        data_set_type = _us(elements.get(COMMAND_DATA_SET_TYPE))
        if data_set_type is None:
            return None
        return cls(_us(elements.get(COMMAND_FIELD)), data_set_type != NO_DATA_SET, _us(elements.get(MESSAGE_ID)),
                   _uid(elements.get(AFFECTED_SOP_CLASS_UID)), _uid(elements.get(AFFECTED_SOP_INSTANCE_UID)))

    @property
    def is_store_request(self) -> bool:
        return (self.command_field == C_STORE_RQ and self.has_data_set and self.message_id is not None
                and self.sop_class_uid is not None and self.sop_instance_uid is not None)


def _element(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _padded_uid(uid: str) -> bytes:
    encoded = uid.encode("ascii")
    return encoded + b"\x00" if len(encoded) % 2 else encoded


def store_response_command(command: Command, status: int) -> bytes:
    """The C-STORE-RSP command set (PS3.7 §9.3.1.2, Table 9.3-2) answering ``command``."""
    assert command.sop_class_uid is not None and command.sop_instance_uid is not None
    assert command.message_id is not None
    body = b"".join((
        _element(AFFECTED_SOP_CLASS_UID, _padded_uid(command.sop_class_uid)),
        _element(COMMAND_FIELD, struct.pack("<H", C_STORE_RSP)),
        _element(MESSAGE_ID_BEING_RESPONDED_TO, struct.pack("<H", command.message_id)),
        _element(COMMAND_DATA_SET_TYPE, struct.pack("<H", NO_DATA_SET)),
        _element(STATUS, struct.pack("<H", status)),
        _element(AFFECTED_SOP_INSTANCE_UID, _padded_uid(command.sop_instance_uid))))
    return _element(0x00000000, struct.pack("<I", len(body))) + body


def p_data_tf(context_id: int, command_set: bytes, maximum_length: int) -> list[bytes]:
    """``command_set`` as P-DATA-TF PDUs of at most ``maximum_length`` bytes (the peer's; 0: unlimited)."""
    # a PDV item is its length (4 bytes), the context ID, the control header, then the fragment
    room = max(maximum_length - 6, 1) if maximum_length else len(command_set)
    pdus = []
    for start in range(0, len(command_set), room):
        fragment = command_set[start:start + room]
        control = COMMAND_FRAGMENT | (LAST_FRAGMENT if start + room >= len(command_set) else 0)
        item = struct.pack(">IBB", len(fragment) + 2, context_id, control) + fragment
        pdus.append(struct.pack(">BBI", P_DATA_TF, 0, len(item)) + item)
    return pdus


class Stage(Enum):
    IDLE = "idle"  # between messages
    COMMAND = "command"  # gathering a command set; its PDV items are held back
    STORE = "store"  # gathering the data set of a C-STORE-RQ the lane answers
    RELAY = "relay"  # the data set of a message pynetdicom answers: its PDV items go to pynetdicom
    OFF = "off"  # the lane gave up on this association: everything goes to pynetdicom


@dataclass
class Lane:
    store: DirectStore
    storage_classes: Collection[str]
    maximum_data_set: int
    stage: Stage = Stage.IDLE
    context_id: int = 0
    command_bytes: bytearray = field(default_factory=bytearray)
    held: list[memoryview] = field(default_factory=list)  # PDV items of the message being decided
    command: Command | None = None
    data: list[memoryview] = field(default_factory=list)
    data_length: int = 0
    stored: int = 0  # C-STOREs this lane answered (for tests and logs)
    #: Called with the association before its A-RELEASE-RQ goes to pynetdicom (which answers it).
    settle: Callable[[Any], None] | None = None

    def reset(self) -> None:
        self.stage = Stage.IDLE
        self.command_bytes = bytearray()
        self.held, self.data, self.data_length, self.command = [], [], 0, None


class ReactorGate(threading.Event):
    """An association's ``_reactor_checkpoint`` whose ``wait`` first waits for work (module docstring)."""

    def __init__(self, assoc: Any) -> None:
        super().__init__()
        super().set()
        self._assoc = assoc
        #: Set when the association's thread may have something to do.
        self.work = threading.Event()

    def set(self) -> None:
        super().set()
        self.work.set()

    def wait(self, timeout: float | None = None) -> bool:
        if not self._has_work():
            self.work.wait(IDLE_WAIT_SECONDS)
        self.work.clear()
        return super().wait(timeout)

    def _has_work(self) -> bool:
        assoc = self._assoc
        return bool(assoc._kill or not assoc.is_established or not assoc.dimse.msg_queue.empty()
                    or not assoc.dul.to_user_queue.empty() or not assoc.dul.is_alive())


class DirectStoreDUL(DULServiceProvider):  # type: ignore[misc]
    """pynetdicom's DUL with the C-STORE lane and idle waits (see the module docstring)."""

    _lane: Lane
    _gate: ReactorGate
    _wake_lock: threading.Lock
    _wake_pipe: tuple[int, int] | None
    _stopped: bool

    @classmethod
    def adopt(cls, dul: DULServiceProvider, lane: Lane) -> None:
        """Turn the DUL pynetdicom made for an accepted association into this class (before it starts)."""
        dul.__class__ = cls
        adopted = cast(DirectStoreDUL, dul)
        adopted._lane = lane
        adopted._gate = gate = ReactorGate(dul.assoc)
        dul.assoc._reactor_checkpoint = gate
        adopted._wake_lock, adopted._wake_pipe, adopted._stopped = threading.Lock(), None, False
        machine = dul.state_machine
        act = machine.do_action

        def do_action(event: str) -> None:
            try:
                act(event)
            finally:
                gate.work.set()

        machine.do_action = do_action

    # -- the reactor's wait ------------------------------------------------------------------------------

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            with self._wake_lock:
                self._stopped = True
                if self._wake_pipe is not None:
                    for fd in self._wake_pipe:
                        os.close(fd)
                    self._wake_pipe = None
            self._gate.work.set()

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_pipe is not None:
                try:
                    os.write(self._wake_pipe[1], b"\x00")
                except BlockingIOError:  # the pipe is full of wake-ups already
                    pass

    def _wake_reader(self) -> int | None:
        with self._wake_lock:
            if self._wake_pipe is None and not self._stopped:
                read, write = os.pipe()
                os.set_blocking(read, False)
                os.set_blocking(write, False)
                self._wake_pipe = (read, write)
            return self._wake_pipe[0] if self._wake_pipe is not None else None

    def _is_transport_event(self) -> bool:
        if self.state_machine.current_state == "Sta6":
            self._run_loop_delay = 0.0  # the select below is the wait
            sock = getattr(self.socket, "socket", None)
            wake = self._wake_reader()
            if sock is not None and wake is not None and self.to_provider_queue.empty() and self.event_queue.empty():
                try:
                    ready, _, _ = select.select([sock, wake], [], [], IDLE_WAIT_SECONDS)
                    if wake in ready:
                        while os.read(wake, 4096):
                            pass
                except (BlockingIOError, InterruptedError):
                    pass
                except (OSError, ValueError):
                    pass
        else:
            self._run_loop_delay = 0.001
        return bool(super()._is_transport_event())

    # -- reading PDUs -----------------------------------------------------------------------------------

    def _decode_pdu(self, bytestream: bytearray) -> tuple[Any, str]:
        """pynetdicom's, but an A-ASSOCIATE-RQ decoded before is not decoded again (associate_cache)."""
        return ASSOCIATE_REQUESTS.decode(bytestream, super()._decode_pdu)

    def _read_pdu_data(self) -> None:
        lane = self._lane
        if lane.stage is Stage.IDLE and not self._lane_may_run():
            if self.assoc.dimse.message is not None or self.assoc._sent_release:
                lane.stage = Stage.OFF  # pynetdicom is in the middle of something: leave it the association
            super()._read_pdu_data()  # not established yet, or being released: pynetdicom's
            return
        if lane.stage is Stage.OFF:
            super()._read_pdu_data()
            return
        sock = self.socket
        assert sock is not None
        try:
            header = sock.recv(6)
        except (OSError, TimeoutError):
            header = bytearray()
        if len(header) != 6:
            self._transport_closed()
            return
        pdu_type, _, length = struct.unpack(">BBL", header)
        if pdu_type not in range(0x01, 0x08):
            log.error("unknown PDU type 0x%02X received", pdu_type)
            self._transport_closed(event="Evt19")
            return
        try:
            body = sock.recv(length) if length else bytearray()
        except (OSError, TimeoutError):
            body = bytearray()
        if len(body) != length:
            self._transport_closed()
            return
        if pdu_type != P_DATA_TF:
            if pdu_type == A_RELEASE_RQ and lane.settle is not None:
                lane.settle(self.assoc)
            self._give_up_message("a PDU other than P-DATA-TF in the middle of a message")
            self._deliver(bytes(header) + bytes(body))
            return
        self._take_items(memoryview(body))

    def _lane_may_run(self) -> bool:
        assoc = self.assoc
        return (self.state_machine.current_state == "Sta6" and bool(assoc.is_established)
                and not assoc._sent_release and assoc.dimse.message is None)

    def _take_items(self, body: memoryview) -> None:
        """Walk the PDV items of one P-DATA-TF PDU (PS3.8 §9.3.5.1); those pynetdicom answers go to it."""
        lane = self._lane
        outgoing: list[memoryview] = []
        offset = 0
        while offset < len(body):
            if len(body) - offset < 6:
                return self._switch_off(outgoing, body[offset:], "a truncated PDV item")
            (item_length,) = struct.unpack_from(">I", body, offset)
            if item_length < 2 or item_length > len(body) - offset - 4:
                return self._switch_off(outgoing, body[offset:], "a PDV item longer than its PDU")
            item = body[offset:offset + 4 + item_length]
            context_id, control = item[4], item[5]
            fragment = item[6:]
            offset += 4 + item_length
            is_command, is_last = bool(control & COMMAND_FRAGMENT), bool(control & LAST_FRAGMENT)
            if lane.stage is Stage.IDLE:
                if not is_command or not self._lane_may_run():
                    return self._switch_off(outgoing, body[offset - len(item):], "a message not begun by a command")
                lane.stage, lane.context_id = Stage.COMMAND, context_id
            if context_id != lane.context_id:
                if lane.stage is Stage.STORE:
                    self._protocol_error("a PDV of another presentation context inside a C-STORE data set")
                    return None
                return self._switch_off(outgoing, body[offset - len(item):], "PDVs of two presentation contexts")
            if lane.stage is Stage.COMMAND:
                if not is_command or len(lane.command_bytes) + len(fragment) > MAXIMUM_COMMAND_SET:
                    return self._switch_off(outgoing, body[offset - len(item):], "an unusual command set")
                lane.command_bytes += fragment
                lane.held.append(item)
                if is_last and not self._decide(outgoing):
                    return self._switch_off(outgoing, body[offset:], "a command set it could not parse")
                continue
            if is_command:  # Stage.STORE or Stage.RELAY: a data set was expected
                if lane.stage is Stage.STORE:
                    self._protocol_error("a command fragment inside a C-STORE data set")
                    return None
                return self._switch_off(outgoing, body[offset - len(item):], "a command inside a data set")
            if lane.stage is Stage.RELAY:
                outgoing.append(item)
                if is_last:
                    lane.reset()
                continue
            lane.data_length += len(fragment)  # Stage.STORE
            if lane.data_length <= lane.maximum_data_set:
                lane.data.append(fragment)
            if is_last:
                self._deliver_items(outgoing)
                outgoing = []
                self._answer_store()
        self._deliver_items(outgoing)
        return None

    def _decide(self, outgoing: list[memoryview]) -> bool:
        """The command set is complete: answer it here (a C-STORE-RQ) or hand its message to pynetdicom.
        False if it does not parse (the lane then switches off)."""
        lane = self._lane
        command = Command.parse(lane.command_bytes)
        if command is None:
            return False
        lane.command = command
        context = self.assoc._accepted_cx.get(lane.context_id)
        if (command.is_store_request and context is not None and context.as_scp is not False
                and command.sop_class_uid == str(context.abstract_syntax)
                and command.sop_class_uid in lane.storage_classes
                and command.sop_class_uid not in self.assoc.acceptor.accepted_common_extended):
            lane.stage, lane.held, lane.command_bytes = Stage.STORE, [], bytearray()
            return True
        outgoing.extend(lane.held)
        if command.has_data_set:
            lane.stage, lane.held, lane.command_bytes = Stage.RELAY, [], bytearray()
        else:
            lane.reset()
        return True

    def _answer_store(self) -> None:
        lane = self._lane
        command = lane.command
        assert command is not None and command.sop_class_uid and command.sop_instance_uid
        context = self.assoc._accepted_cx[lane.context_id]
        too_large = lane.data_length > lane.maximum_data_set
        data = b"".join(lane.data) if not too_large else b""
        context_id, length = lane.context_id, lane.data_length
        lane.reset()
        if too_large:
            log.warning("C-STORE refused: the data set is %d bytes, more than %d", length, lane.maximum_data_set,
                        extra={"sop_instance_uid": command.sop_instance_uid[:64],
                               "calling_ae_title": str(self.assoc.requestor.ae_title).strip()})
            status = STATUS_OUT_OF_RESOURCES
        else:
            # the association's thread polls every millisecond for work of its own, and has none while
            # this one stores: hold it at its checkpoint meanwhile (pynetdicom's send_* methods do the same)
            checkpoint = self.assoc._reactor_checkpoint
            checkpoint.clear()
            try:
                status = int(lane.store(self.assoc, str(context.transfer_syntax[0]), command.sop_class_uid,
                                        command.sop_instance_uid, data))
            except Exception:
                log.exception("C-STORE failed: the store function raised")
                status = STATUS_PROCESSING_FAILURE
            finally:
                checkpoint.set()
        if not self.assoc.is_established:
            return
        sock = self.socket
        assert sock is not None
        for pdu in p_data_tf(context_id, store_response_command(command, status),
                             int(self.assoc.requestor.maximum_length or 0)):
            sock.send(pdu)
        lane.stored += 1

    # -- handing over to pynetdicom ------------------------------------------------------------------------

    def _deliver(self, raw: bytes) -> None:
        """What pynetdicom's ``_read_pdu_data`` does with a PDU it has read."""
        try:
            pdu, event = self._decode_pdu(bytearray(raw))
        except Exception:
            log.exception("could not decode a received PDU")
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _deliver_items(self, items: list[memoryview]) -> None:
        if items:
            payload = b"".join(items)
            self._deliver(struct.pack(">BBI", P_DATA_TF, 0, len(payload)) + payload)

    def _switch_off(self, outgoing: list[memoryview], rest: memoryview, why: str) -> None:
        """From here on pynetdicom reads this association; give it what the lane held back, then ``rest``."""
        lane = self._lane
        log.info("C-STORE lane off for this association: %s", why,
                 extra={"calling_ae_title": str(self.assoc.requestor.ae_title).strip()})
        items = [*outgoing, *lane.held, rest] if lane.stage is Stage.COMMAND else [*outgoing, rest]
        lane.reset()
        lane.stage = Stage.OFF
        self._deliver_items([item for item in items if len(item)])

    def _give_up_message(self, why: str) -> None:
        """A non-P-DATA PDU (release, abort) arrived: drop a half-read C-STORE, hand held items over."""
        lane = self._lane
        if lane.stage is Stage.STORE:
            log.warning("C-STORE abandoned: %s", why)
        elif lane.stage is Stage.COMMAND:
            self._deliver_items(lane.held)
        if lane.stage is not Stage.OFF:
            lane.reset()

    def _protocol_error(self, why: str) -> None:
        """An invalid PDU for the state machine (Evt19): pynetdicom aborts the association."""
        log.warning("aborting a DICOM association: %s", why,
                    extra={"calling_ae_title": str(self.assoc.requestor.ae_title).strip()})
        self._lane.reset()
        self._lane.stage = Stage.OFF
        self.event_queue.put("Evt19")

    def _transport_closed(self, event: str = "Evt17") -> None:
        self._give_up_message("the connection closed")
        self.event_queue.put(event)
