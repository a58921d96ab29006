"""The C-STORE lane (dicom_ingest.adapters.direct_store) over real associations with pynetdicom as the SCU.

Most requests are sent by pynetdicom's own SCU; the irregular ones are P-DATA-TF PDUs written by hand
on an association pynetdicom established, and their answers read back through its DIMSE layer.
"""

import asyncio
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.dsutils import decode, encode
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    Verification,
)

from dicom_ingest.adapters import direct_store
from dicom_ingest.adapters.direct_store import (
    Command,
    Lane,
    Stage,
    p_data_tf,
    parse_command_set,
    store_response_command,
)
from dicom_ingest.adapters.hardened_transport import HardenedAssociationServer, TransportLimits, start_hardened_server
from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.storage_classes import STORAGE_SOP_CLASS_UIDS
from dicom_ingest.domain.modalities import Modality
from dicom_ingest.domain.model import IndexOutcome, IndexOutcomeValues, StoreInstance
from dicom_ingest.entrypoints.scp import StorageSCP


@dataclass
class Recorder:
    """The lane's store function and pynetdicom's EVT_C_STORE handler, each recording what it was given."""

    status: int = 0x0000
    raises: bool = False
    lane_stores: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    handler_stores: list[str] = field(default_factory=list)
    lanes: list[Lane] = field(default_factory=list)
    maximum_data_set: int = 2**31

    def store(self, assoc: Any, transfer_syntax: str, sop_class: str, sop_instance: str, data: bytes) -> int:
        if self.raises:
            raise RuntimeError("the store function failed")
        self.lane_stores.append((transfer_syntax, sop_class, sop_instance, data))
        return self.status

    def lane(self) -> Lane:
        lane = Lane(self.store, STORAGE_SOP_CLASS_UIDS, self.maximum_data_set)
        self.lanes.append(lane)
        return lane

    def on_c_store(self, event: Any) -> int:
        self.handler_stores.append(str(event.request.AffectedSOPInstanceUID))
        return 0xB000  # a status the lane never answers, so a test can tell who answered

    def on_c_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        match = Dataset()
        match.PatientID = "PAT1"
        match.QueryRetrieveLevel = "PATIENT"
        yield 0xFF00, match


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[HardenedAssociationServer]:
    ae = AE(ae_title="TELERAD")
    ae.maximum_pdu_size = 4096  # the SCU must fragment a data set over many PDUs
    ae.add_supported_context(Verification)
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    for sop_class in (CTImageStorage, MRImageStorage):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    handlers = [(evt.EVT_C_STORE, recorder.on_c_store), (evt.EVT_C_FIND, recorder.on_c_find),
                (evt.EVT_C_ECHO, lambda event: 0x0000)]
    server = start_hardened_server(ae, ("127.0.0.1", 0), TransportLimits(network_timeout=5), handlers,
                                   lane=recorder.lane)
    yield server
    server.shutdown()


def a_dataset(sop_class: str = CTImageStorage, pixels: int = 20_000) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "PAT1", "Doe^Jane", "CT"
    ds.BitsAllocated = 8
    ds.PixelData = bytes(range(256)) * (pixels // 256)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def encoded(ds: Dataset, explicit: bool = True) -> bytes:
    data = encode(ds, not explicit, True)  # (implicit VR, little endian)
    assert data is not None
    return data


def associate(server: HardenedAssociationServer, **kwargs: Any) -> Any:
    ae = AE(ae_title="CT1")
    ae.add_requested_context(Verification)
    ae.add_requested_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="TELERAD", **kwargs)
    assert assoc.is_established
    return assoc


def context_id(assoc: Any, sop_class: str) -> int:
    return next(int(cx.context_id) for cx in assoc.accepted_contexts if cx.abstract_syntax == sop_class)


def command_set(**elements: Any) -> bytes:
    """A command set in Implicit VR Little Endian, as pydicom writes it (group length first)."""
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    body = encoded(ds, explicit=False)
    return struct.pack("<HHI", 0, 0, 4) + struct.pack("<I", len(body)) + body


def store_command(ds: Dataset, message_id: int = 7, sop_class: str | None = None) -> bytes:
    return command_set(AffectedSOPClassUID=sop_class or ds.SOPClassUID, CommandField=0x0001,
                       MessageID=message_id, Priority=0, CommandDataSetType=0x0001,
                       AffectedSOPInstanceUID=ds.SOPInstanceUID)


def echo_command(message_id: int = 9) -> bytes:
    return command_set(AffectedSOPClassUID=Verification, CommandField=0x0030, MessageID=message_id,
                       CommandDataSetType=0x0101)


def pdv(context: int, data: bytes, *, command: bool, last: bool) -> bytes:
    return struct.pack(">IBB", len(data) + 2, context, (1 if command else 0) | (2 if last else 0)) + data


def pdu(*items: bytes) -> bytes:
    payload = b"".join(items)
    return struct.pack(">BBI", 0x04, 0, len(payload)) + payload


def fragments(context: int, data: bytes, size: int, *, command: bool = False) -> list[bytes]:
    chunks = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    return [pdv(context, chunk, command=command, last=n == len(chunks) - 1) for n, chunk in enumerate(chunks)]


@contextmanager
def paused(assoc: Any) -> Iterator[None]:
    """Hold the SCU association's reactor (as pynetdicom's send_* methods do), so that the responses to
    hand-written requests wait in its DIMSE queue for :func:`response` instead of being taken by it."""
    assoc._reactor_checkpoint.clear()
    assert wait_for(lambda: assoc._is_paused)
    try:
        yield
    finally:
        assoc._reactor_checkpoint.set()


def response(assoc: Any, timeout: float = 5) -> Any:
    """The next DIMSE message the SCU received (inside :func:`paused`)."""
    assoc.dimse_timeout = timeout
    _, message = assoc.dimse.get_msg(block=True)
    assert message is not None, "no response within the timeout"
    return message


def wait_for(condition: Any, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


# -- the pieces ---------------------------------------------------------------------------------------------

def test_the_command_set_parser_reads_what_pydicom_writes_and_refuses_what_is_malformed() -> None:
    ds = a_dataset()
    raw = store_command(ds, message_id=513)
    command = Command.parse(raw)
    assert command == Command(0x0001, True, 513, CTImageStorage, ds.SOPInstanceUID)
    assert command.is_store_request
    assert Command.parse(echo_command()) == Command(0x0030, False, 9, Verification, None)
    assert parse_command_set(raw[:-3]) is None  # truncated value
    assert parse_command_set(raw + b"\x08\x00\x16\x00\x00\x00\x00\x00") is None  # not group 0000
    swapped = raw[12:] + raw[:12]  # group length after the others: tags out of order
    assert parse_command_set(swapped) is None
    assert Command.parse(command_set(CommandField=1, MessageID=1)) is None  # no Command Data Set Type


def test_the_response_is_the_c_store_rsp_pydicom_reads_fragmented_to_the_peers_maximum() -> None:
    ds = a_dataset()
    request = Command.parse(store_command(ds, message_id=65535))
    assert request is not None
    raw = store_response_command(request, 0xA900)
    rsp = decode(BytesIO(raw), True, True)
    assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status, rsp.CommandDataSetType) == (
        0x8001, 65535, 0xA900, 0x0101)
    assert (rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID) == (CTImageStorage, ds.SOPInstanceUID)
    assert rsp.CommandGroupLength == len(raw) - 12
    pdus = p_data_tf(3, raw, 70)
    assert len(pdus) > 1 and all(len(p) - 6 <= 70 for p in pdus)
    data, controls = b"", []
    for one in pdus:
        (length,) = struct.unpack_from(">I", one, 6)
        assert one[10] == 3  # the context ID
        controls.append(one[11])
        data += one[12:12 + length - 2]
    assert data == raw and controls == [1] * (len(pdus) - 1) + [3]
    assert p_data_tf(3, raw, 0) == [pdu(pdv(3, raw, command=True, last=True))]  # 0: no maximum


# -- over associations --------------------------------------------------------------------------------------

def test_a_c_store_is_answered_by_the_lane_with_the_bytes_as_sent(server: HardenedAssociationServer,
                                                                  recorder: Recorder) -> None:
    assoc = associate(server)
    try:
        ds = a_dataset(pixels=60_000)  # about 15 PDUs of 4 KiB
        status = assoc.send_c_store(ds)
        assert status.Status == 0x0000
        recorder.status = 0xA900
        other = a_dataset(MRImageStorage)
        assert assoc.send_c_store(other).Status == 0xA900
        recorder.raises = True
        assert assoc.send_c_store(a_dataset()).Status == 0xC211
    finally:
        assoc.release()
    assert recorder.handler_stores == []
    # pynetdicom's own acceptor prefers Implicit VR for CT; MR was offered Explicit VR only
    assert [(ts, cls, uid) for ts, cls, uid, _ in recorder.lane_stores] == [
        (ImplicitVRLittleEndian, CTImageStorage, ds.SOPInstanceUID),
        (ExplicitVRLittleEndian, MRImageStorage, other.SOPInstanceUID)]
    assert recorder.lane_stores[0][3] == encoded(ds, explicit=False)
    assert recorder.lane_stores[1][3] == encoded(other)
    assert recorder.lanes[0].stored == 3


def test_other_messages_on_the_same_association_are_pynetdicoms(server: HardenedAssociationServer,
                                                               recorder: Recorder) -> None:
    assoc = associate(server)
    try:
        assert assoc.send_c_echo().Status == 0x0000
        query = Dataset()
        query.QueryRetrieveLevel, query.PatientID = "PATIENT", "*"
        found = list(assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind))
        assert [status.Status for status, _ in found] == [0xFF00, 0x0000]
        assert found[0][1].PatientID == "PAT1"
        assert assoc.send_c_store(a_dataset()).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert assoc.is_released
    assert len(recorder.lane_stores) == 1 and recorder.lanes[0].stage is Stage.IDLE


def test_fragments_split_anyhow_and_two_messages_in_one_pdu(server: HardenedAssociationServer,
                                                            recorder: Recorder) -> None:
    assoc = associate(server)
    try:
        ct, verification = context_id(assoc, CTImageStorage), context_id(assoc, Verification)
        ds = a_dataset(pixels=3000)
        data = encoded(ds)
        command = fragments(ct, store_command(ds, message_id=21), 17, command=True)  # a command in 17-byte bits
        pieces = fragments(ct, data, 1000)
        sock = assoc.dul.socket
        with paused(assoc):
            sock.send(pdu(*command))
            sock.send(pdu(*pieces[:2]))
            # the last data fragments and a whole C-ECHO-RQ in one PDU
            sock.send(pdu(*pieces[2:], pdv(verification, echo_command(22), command=True, last=True)))
            answers = [response(assoc), response(assoc)]
        assert [(a.MessageIDBeingRespondedTo, a.Status) for a in answers] == [(21, 0x0000), (22, 0x0000)]
    finally:
        assoc.release()
    assert [(uid, raw) for _, _, uid, raw in recorder.lane_stores] == [(ds.SOPInstanceUID, data)]


def test_a_store_the_lane_does_not_take_goes_to_pynetdicom(server: HardenedAssociationServer,
                                                          recorder: Recorder) -> None:
    assoc = associate(server)
    try:
        ct = context_id(assoc, CTImageStorage)
        ds = a_dataset(MRImageStorage)  # an MR instance announced on the CT context
        with paused(assoc):
            assoc.dul.socket.send(pdu(pdv(ct, store_command(ds, message_id=31), command=True, last=True)))
            assoc.dul.socket.send(pdu(*fragments(ct, encoded(ds), 1500)))
            rsp = response(assoc)
        assert (rsp.MessageIDBeingRespondedTo, rsp.Status) == (31, 0xB000)
        assert assoc.send_c_store(a_dataset()).Status == 0x0000  # the next one is the lane's again
    finally:
        assoc.release()
    assert recorder.handler_stores == [ds.SOPInstanceUID]
    assert len(recorder.lane_stores) == 1


def test_a_data_set_with_no_command_switches_the_lane_off_and_pynetdicom_decides(
        server: HardenedAssociationServer, recorder: Recorder) -> None:
    assoc = associate(server)
    ct = context_id(assoc, CTImageStorage)
    assoc.dul.socket.send(pdu(pdv(ct, b"\x08\x00\x16\x00", command=False, last=True)))
    assert wait_for(lambda: recorder.lanes[0].stage is Stage.OFF)
    # pynetdicom cannot make a message of it and aborts, as it would have without the lane
    assert wait_for(lambda: assoc.is_aborted)
    assert recorder.lane_stores == [] and recorder.handler_stores == []


def test_a_pdv_of_another_context_inside_a_data_set_aborts(server: HardenedAssociationServer,
                                                         recorder: Recorder) -> None:
    assoc = associate(server)
    ct, mr = context_id(assoc, CTImageStorage), context_id(assoc, MRImageStorage)
    ds = a_dataset()
    data = encoded(ds)
    assoc.dul.socket.send(pdu(pdv(ct, store_command(ds), command=True, last=True)))
    assoc.dul.socket.send(pdu(pdv(ct, data[:100], command=False, last=False), pdv(mr, data[100:], command=False,
                                                                                 last=True)))
    assert wait_for(lambda: assoc.is_aborted)
    assert recorder.lane_stores == [] and recorder.handler_stores == []


def test_an_abort_in_the_middle_of_a_data_set_stores_nothing(server: HardenedAssociationServer,
                                                             recorder: Recorder) -> None:
    assoc = associate(server)
    ct = context_id(assoc, CTImageStorage)
    ds = a_dataset()
    assoc.dul.socket.send(pdu(pdv(ct, store_command(ds), command=True, last=True)))
    assoc.dul.socket.send(pdu(pdv(ct, encoded(ds)[:500], command=False, last=False)))
    assert wait_for(lambda: recorder.lanes[0].stage is Stage.STORE)
    assoc.abort()
    assert wait_for(lambda: recorder.lanes[0].stage is Stage.IDLE)
    second = associate(server)  # the server is there for the next caller
    try:
        assert second.send_c_echo().Status == 0x0000
    finally:
        second.release()
    assert recorder.lane_stores == []


def test_a_data_set_over_the_limit_is_read_to_its_end_and_refused(server: HardenedAssociationServer,
                                                                  recorder: Recorder) -> None:
    recorder.maximum_data_set = 10_000
    assoc = associate(server)
    try:
        assert assoc.send_c_store(a_dataset(pixels=30_000)).Status == 0xA700
        assert assoc.send_c_store(a_dataset(pixels=2_000)).Status == 0x0000  # in step for the next one
    finally:
        assoc.release()
    assert len(recorder.lane_stores) == 1


def test_associations_in_parallel_each_have_their_own_lane(server: HardenedAssociationServer,
                                                           recorder: Recorder) -> None:
    statuses: list[int] = []
    errors: list[BaseException] = []  # a failure in a sender's thread, shown rather than lost
    lock = threading.Lock()

    def send() -> None:
        try:
            assoc = associate(server)
            try:
                for _ in range(5):
                    status = int(assoc.send_c_store(a_dataset(pixels=8_000)).Status)
                    with lock:
                        statuses.append(status)
            finally:
                assoc.release()
        except BaseException as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and statuses == [0] * 20
    assert len(recorder.lane_stores) == 20 and len({uid for _, _, uid, _ in recorder.lane_stores}) == 20
    assert sorted(lane.stored for lane in recorder.lanes) == [5, 5, 5, 5]


# -- the service's SCP: the lane and pynetdicom's path write the same file ------------------------------------

@pytest.mark.parametrize("direct_store", [True, False])
async def test_the_scp_writes_the_same_file_with_or_without_the_lane(tmp_path: Path, direct_store: bool) -> None:
    indexed: list[StoreInstance] = []

    async def index(command: StoreInstance) -> str:
        indexed.append(command)
        return IndexOutcome(IndexOutcomeValues.STORED)

    async def discard(_: str) -> None:
        return None

    sender = Modality(id=uuid4(), organization_id=UUID(int=1), ae_title="CT1", host=None, description="",
                      created_at=datetime.now(UTC))
    storage = FileStorage(tmp_path)
    scp = StorageSCP(DicomIngestSettings(dicom_port=0, direct_store=direct_store), storage, index, discard,
                     lambda *_: sender)
    scp.start()
    ds = a_dataset(pixels=50_000)
    try:
        def send() -> int:
            ae = AE(ae_title="CT1")
            ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
            assoc = ae.associate("127.0.0.1", scp.port, ae_title="TELERAD")
            try:
                return int(assoc.send_c_store(ds).Status)
            finally:
                assoc.release()

        assert await asyncio.to_thread(send) == 0x0000
    finally:
        scp.stop()
    assert [c.attributes.sop_instance_uid for c in indexed] == [ds.SOPInstanceUID]
    written = storage.get(indexed[0].storage_key)
    assert written.endswith(encoded(ds)) and written[128:132] == b"DICM"


def test_an_idle_association_waits_instead_of_polling(server: HardenedAssociationServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """pynetdicom's two threads per association look for work every millisecond; here each waits for a
    reason to wake (IDLE_WAIT_SECONDS at most), so one idle second costs some tens of looks, not 2,000."""
    looks: Counter[str] = Counter()
    gate_wait, transport_event = direct_store.ReactorGate.wait, direct_store.DirectStoreDUL._is_transport_event

    def counted_wait(self: Any, timeout: float | None = None) -> bool:
        looks["association"] += 1
        return gate_wait(self, timeout)

    def counted_transport_event(self: Any) -> bool:
        looks["dul"] += 1
        return bool(transport_event(self))

    monkeypatch.setattr(direct_store.ReactorGate, "wait", counted_wait)
    monkeypatch.setattr(direct_store.DirectStoreDUL, "_is_transport_event", counted_transport_event)
    assoc = associate(server)
    try:
        assert assoc.send_c_echo().Status == 0x0000
        looks.clear()
        time.sleep(1)
        assert 0 < looks["association"] < 100 and 0 < looks["dul"] < 100, looks
    finally:
        assoc.release()
    assert assoc.is_released


def test_requests_and_the_release_wake_the_waiting_threads(server: HardenedAssociationServer, recorder: Recorder,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With waits of 30 s, whatever needs an association's threads must wake them: a lost wake-up would hold
    a response or the release for 30 s."""
    monkeypatch.setattr(direct_store, "IDLE_WAIT_SECONDS", 30)
    started = time.monotonic()
    assoc = associate(server)
    try:
        for _ in range(3):
            assert assoc.send_c_echo().Status == 0x0000
            query = Dataset()
            query.QueryRetrieveLevel, query.PatientID = "PATIENT", "*"
            found = list(assoc.send_c_find(query, PatientRootQueryRetrieveInformationModelFind))
            assert [status.Status for status, _ in found] == [0xFF00, 0x0000]
            assert assoc.send_c_store(a_dataset()).Status == 0x0000
            time.sleep(0.2)  # both threads asleep before the next request
    finally:
        assoc.release()
    assert assoc.is_released and len(recorder.lane_stores) == 3
    assert time.monotonic() - started < 15, "a request or the release waited for the idle timeout"
