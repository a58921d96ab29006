"""The DIMSE service class provider: C-ECHO and C-STORE (PS3.4 Annex A and B) over pynetdicom, and
C-FIND, C-MOVE and C-GET (Annex C) through :mod:`dicom_ingest.entrypoints.qr_scp` when given one.

Only registered modalities may associate: the EVT_REQUESTED handler runs on the A-ASSOCIATE-RQ
before pynetdicom negotiates anything, and answers an unknown calling AE title (or a known one from
an address its registration does not cover) with A-ASSOCIATE-RJ (PS3.8 §9.3.4). Every C-STORE on an
accepted association belongs to the organisation of the modality matched then, and every query or
retrieval on it sees that organisation's studies only. Storage contexts accept SCP/SCU role
selection (PS3.7 Annex D.3.3.4), so a C-GET's sub-operations can come back on the same association.

pynetdicom runs each association in threads of its own. A C-STORE is read and answered by the
C-STORE lane in the thread that reads the socket (:mod:`dicom_ingest.adapters.direct_store`; pynetdicom's
EVT_C_STORE handler gets the requests the lane leaves to it), and :meth:`StorageSCP.store` checks and
writes the file in that thread (synchronous, no event loop blocked), then indexes it: on PostgreSQL with
keep_first in that thread too (:mod:`dicom_ingest.adapters.thread_index`), otherwise through the service's
event loop, where the index writer commits it in one transaction with whatever else is waiting
(:mod:`dicom_ingest.service_layer.batch_index`). Either way it waits for that commit, so the C-STORE
response tells the truth about both. On PostgreSQL with keep_first, a C-STORE the lane reads is by default
answered once its file is durably in the spool instead, and indexed right behind it, in batches
(:mod:`dicom_ingest.adapters.spool_index`); the A-RELEASE-RQ, and queries on the association, wait for
that index. The file is written from the received bytes as they came: nothing is decoded but the few
top-level elements the index keeps.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import pynetdicom
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicom_ingest.adapters.direct_store import Lane
from dicom_ingest.adapters.hardened_transport import TransportLimits, copy_context, start_hardened_server
from dicom_ingest.adapters.spool_index import SpoolIndexer
from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.adapters.thread_index import ThreadIndexer
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.dicom.attributes import InvalidInstance, StoreStatusValues, read_instance
from dicom_ingest.dicom.storage_classes import STORAGE_SOP_CLASS_UIDS
from dicom_ingest.domain.modalities import Modality
from dicom_ingest.domain.model import Discarder, Indexer, IndexOutcomeValues, StoreInstance
from dicom_ingest.entrypoints.qr_scp import QueryRetrieveSCP

log = logging.getLogger(__name__)

#: The longest an A-RELEASE-RP waits for the index to take what the association sent (StorageSCP.settle).
RELEASE_WAIT_SECONDS = 10.0

ModalityFinder = Callable[[str, str], Modality | None]


class ResultValues(IntEnum):
    """A-ASSOCIATE-RJ Result (PS3.8 §9.3.4, Table 9-21)."""

    REJECTED_PERMANENT = 0x01
    REJECTED_TRANSIENT = 0x02


class SourceValues(IntEnum):
    """A-ASSOCIATE-RJ Source (PS3.8 §9.3.4)."""

    SERVICE_USER = 0x01


class ReasonValues(IntEnum):
    """A-ASSOCIATE-RJ Reason/Diag. when the source is the service user (PS3.8 §9.3.4)."""

    NO_REASON_GIVEN = 0x01
    CALLING_AE_TITLE_NOT_RECOGNIZED = 0x03


@dataclass
class StorageSCP:
    settings: DicomIngestSettings
    storage: InstanceStorage
    index: Indexer
    discard_if_unreferenced: Discarder
    find_modality: ModalityFinder
    query_retrieve: QueryRetrieveSCP | None = None
    #: Listen with SO_REUSEPORT, beside other processes on the same port (:mod:`~dicom_ingest.entrypoints.scp_workers`).
    reuse_port: bool = False
    #: Indexes a C-STORE in the thread that received it (:mod:`~dicom_ingest.adapters.thread_index`); else ``index``.
    thread_index: ThreadIndexer | None = None
    #: Answers a C-STORE the lane reads once its file is spooled, and indexes it behind (acknowledge_when=written).
    spool_index: SpoolIndexer | None = None
    loop: asyncio.AbstractEventLoop | None = None
    server: ThreadedAssociationServer | None = None
    _senders: weakref.WeakKeyDictionary[Any, Modality] = field(default_factory=weakref.WeakKeyDictionary)
    _senders_lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        quiet_standard_handlers()
        ae = AE(ae_title=self.settings.ae_title)
        ae.maximum_pdu_size = self.settings.maximum_pdu_size
        # the connection caps of the hardened server enforce maximum_associations; pynetdicom's own count
        # of acceptor threads is a backstop with headroom for threads of just-dropped connections
        ae.maximum_associations = self.settings.maximum_associations + self.settings.maximum_connections_per_address
        ae.acse_timeout = self.settings.acse_timeout_seconds
        ae.dimse_timeout = self.settings.dimse_timeout_seconds
        ae.network_timeout = self.settings.network_timeout_seconds
        ae.connection_timeout = self.settings.remote_connection_timeout_seconds  # C-MOVE to its destination
        ae.require_called_aet = True
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        roles = {"scu_role": True, "scp_role": True} if self.query_retrieve is not None else {}
        for sop_class_uid in STORAGE_SOP_CLASS_UIDS:
            ae.add_supported_context(sop_class_uid, ALL_TRANSFER_SYNTAXES, **roles)
        handlers = [(evt.EVT_REQUESTED, self._screen), (evt.EVT_C_ECHO, self._echo), (evt.EVT_C_STORE, self._store)]
        if self.query_retrieve is not None:
            self.query_retrieve.run = self._on_loop
            for abstract_syntax in self.query_retrieve.abstract_syntaxes():
                ae.add_supported_context(abstract_syntax)
            handlers += [(evt.EVT_C_FIND, self._find), (evt.EVT_C_MOVE, self._move), (evt.EVT_C_GET, self._get)]
        limits = TransportLimits(
            associate_request_limit=self.settings.maximum_associate_request_size,
            maximum_connections=self.settings.maximum_associations,
            maximum_connections_per_address=self.settings.maximum_connections_per_address,
            associate_request_timeout=self.settings.acse_timeout_seconds,
            network_timeout=self.settings.network_timeout_seconds)
        if self.spool_index is not None:
            self.spool_index.start()
        lane = (functools.partial(Lane, functools.partial(self.store, spool=True), STORAGE_SOP_CLASS_UIDS,
                                  self.settings.maximum_store_bytes,
                                  settle=functools.partial(self.settle, releasing=True))
                if self.settings.direct_store else None)
        self.server = start_hardened_server(
            ae, (self.settings.dicom_host, self.settings.dicom_port), limits, evt_handlers=handlers,
            reuse_port=self.reuse_port, lane=lane)
        log.info("DICOM SCP listening", extra={"ae_title": self.settings.ae_title, "port": self.port})

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def listening(self) -> bool:
        return self.server is not None

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
        if self.spool_index is not None:
            self.spool_index.close(min(self.settings.index_timeout_seconds, 10))
        if self.thread_index is not None:
            self.thread_index.close()

    def _screen(self, event: Any) -> None:
        """EVT_REQUESTED: accept the A-ASSOCIATE-RQ only from a registered modality.

        pynetdicom logs and ignores an exception in a notification handler and would go on to
        accept, so nothing may escape here: a registry that cannot answer rejects (transient).
        """
        assoc = event.assoc
        try:
            calling_ae = str(assoc.requestor.primitive.calling_ae_title).strip()
            address = str(assoc.requestor.address)
            modality = self.find_modality(calling_ae, address)
        except Exception:
            log.exception("association rejected: could not tell which modality is calling")
            self._reject(assoc, ResultValues.REJECTED_TRANSIENT, ReasonValues.NO_REASON_GIVEN)
            return
        if modality is None:
            log.warning("association rejected: calling AE title %r from %s is not a registered modality",
                        calling_ae, address, extra={"calling_ae_title": calling_ae, "address": address})
            self._reject(assoc, ResultValues.REJECTED_PERMANENT, ReasonValues.CALLING_AE_TITLE_NOT_RECOGNIZED)
            return
        with self._senders_lock:
            self._senders[assoc] = modality
        try:
            assoc.acceptor.supported_contexts = prefer_proposed_transfer_syntaxes(
                assoc.acceptor.supported_contexts, assoc.requestor.primitive.presentation_context_definition_list)
        except Exception:  # the order of preference is a courtesy: negotiate with the default order
            log.exception("could not order the transfer syntaxes as the caller proposed them")

    def _reject(self, assoc: Any, result: ResultValues, reason: ReasonValues) -> None:
        """Send A-ASSOCIATE-RJ and end the association as pynetdicom's own checks do (acse.py)."""
        try:
            assoc.acse.send_reject(result, SourceValues.SERVICE_USER, reason)
            evt.trigger(assoc, evt.EVT_REJECTED, {})
        except Exception:
            log.exception("could not send A-ASSOCIATE-RJ; dropping the connection")
        finally:
            assoc.is_rejected = True  # whatever happened above, the reactor must not negotiate next
            assoc.kill()  # returns once the peer has closed the connection or the ARTIM timer expired

    def _sender(self, assoc: Any) -> Modality | None:
        with self._senders_lock:
            return self._senders.get(assoc)

    def _echo(self, event: Any) -> int:
        return 0x0000

    def _find(self, event: Any) -> Any:
        assert self.query_retrieve is not None
        self.settle(event.assoc)
        return self.query_retrieve.find(event, self._sender(event.assoc))

    def _move(self, event: Any) -> Any:
        assert self.query_retrieve is not None
        self.settle(event.assoc)
        return self.query_retrieve.move(event, self._sender(event.assoc))

    def _get(self, event: Any) -> Any:
        assert self.query_retrieve is not None
        self.settle(event.assoc)
        return self.query_retrieve.get(event, self._sender(event.assoc))

    def _store(self, event: Any) -> int:
        """EVT_C_STORE, for the requests pynetdicom's DIMSE layer reads (the C-STORE lane reads the others)."""
        dataset = event.request.DataSet.getvalue()
        if len(dataset) > self.settings.maximum_store_bytes:
            log.warning("C-STORE refused: the data set is %d bytes, more than %d", len(dataset),
                        self.settings.maximum_store_bytes)
            return StoreStatusValues.OUT_OF_RESOURCES
        return self.store(event.assoc, str(event.context.transfer_syntax), str(event.request.AffectedSOPClassUID),
                          str(event.request.AffectedSOPInstanceUID or ""), dataset)

    def settle(self, assoc: Any, *, releasing: bool = False) -> None:
        """Wait until what ``assoc`` sent is indexed (spool_index), at most the index timeout: before a query
        on it, and before its release is answered, so its sender sees what it sent. A release waits at most
        ``RELEASE_WAIT_SECONDS``, within the ACSE timeouts of senders (dcmtk's: 30 s), which would otherwise
        report a failure for instances already acknowledged and safe in the spool."""
        timeout = self.settings.index_timeout_seconds
        if releasing:
            timeout = min(timeout, RELEASE_WAIT_SECONDS)
        if self.spool_index is not None and not self.spool_index.settle(assoc, timeout):
            log.warning("instances acknowledged on an association are not indexed yet; they stay in the spool",
                        extra={"calling_ae_title": str(assoc.requestor.ae_title).strip()})

    def store(self, assoc: Any, transfer_syntax: str, sop_class_uid: str, sop_instance_uid: str,
              dataset: bytes, *, spool: bool = False) -> int:
        """Check, write and index one received instance; the C-STORE response status (PS3.4 §B.2.3).
        With ``spool`` (the lane's requests, which :meth:`settle` covers) and a spool indexer, write it to
        the spool and answer without waiting for the index."""
        requestor = assoc.requestor
        calling_ae = str(requestor.ae_title).strip()
        context = {"calling_ae_title": calling_ae, "address": requestor.address,
                   "sop_instance_uid": sop_instance_uid[:64]}
        modality = self._sender(assoc)
        if modality is None:  # cannot happen on an association _screen accepted
            log.error("C-STORE refused: the association has no registered modality", extra=context)
            return StoreStatusValues.OUT_OF_RESOURCES
        organization_id = modality.organization_id
        try:
            attributes = read_instance(dataset, transfer_syntax)
            if attributes.sop_instance_uid != sop_instance_uid:
                raise InvalidInstance("SOP Instance UID differs from the request's Affected SOP Instance UID",
                                      StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
            if attributes.sop_class_uid != sop_class_uid:
                raise InvalidInstance("SOP Class UID differs from the request's Affected SOP Class UID",
                                      StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
        except InvalidInstance as error:
            log.warning("C-STORE rejected: %s", error, extra={**context, "status": f"0x{error.status:04X}"})
            return error.status
        except Exception:
            log.exception("C-STORE rejected: unreadable data set", extra=context)
            return StoreStatusValues.CANNOT_UNDERSTAND
        if spool and self.spool_index is not None:
            try:
                self.spool_index.submit(organization_id, attributes, transfer_syntax,
                                        part10_file(attributes.sop_class_uid, attributes.sop_instance_uid,
                                                    transfer_syntax, dataset), calling_ae, assoc)
            except Exception:
                log.exception("C-STORE failed: could not write the file", extra=context)
                return StoreStatusValues.OUT_OF_RESOURCES
            return StoreStatusValues.SUCCESS
        try:
            data = part10_file(attributes.sop_class_uid, attributes.sop_instance_uid, transfer_syntax, dataset)
            key = self.storage.put(data)
        except Exception:
            log.exception("C-STORE failed: could not write the file", extra=context)
            return StoreStatusValues.OUT_OF_RESOURCES
        command = StoreInstance(organization_id, attributes, transfer_syntax, key, len(data), calling_ae)
        try:
            outcome: Any = (self.thread_index(command) if self.thread_index is not None
                            else self._on_loop(self.index(command)))
        except Exception:
            log.exception("C-STORE failed: could not index the instance", extra=context)
            self._discard(key)
            return StoreStatusValues.OUT_OF_RESOURCES
        # the index committed: now discard the copy it did not keep, or the one this copy replaced
        if outcome == IndexOutcomeValues.REPLACED:
            log.info("duplicate SOP Instance UID: this copy replaced the one held", extra=context)
            if outcome.released_storage_key:
                self._discard(outcome.released_storage_key)
            return StoreStatusValues.SUCCESS
        if outcome != IndexOutcomeValues.STORED:  # duplicate, superseded by a later copy, or conflict
            self._discard(key)
        if outcome == IndexOutcomeValues.CONFLICT:
            # PS3.4 §B.2.3: an Error, not Refused (A7xx, "retry later") nor a processing failure (0110): the
            # data set is understood but contradicts the instance held under its UID (another study or series)
            log.warning("C-STORE refused: the SOP Instance UID is held in another study or series", extra=context)
            return StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
        if outcome == IndexOutcomeValues.DUPLICATE:
            log.info("duplicate SOP Instance UID: the copy held is kept", extra=context)
        return StoreStatusValues.SUCCESS

    def _on_loop(self, work: Awaitable[Any]) -> Any:
        assert self.loop is not None
        async def run() -> Any:
            return await work
        future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        try:
            return future.result(self.settings.index_timeout_seconds)
        except TimeoutError:
            future.cancel()  # an instance still waiting for the index writer is then not written at all
            raise

    def _discard(self, key: str) -> None:
        """Remove a file no index row points at; if that cannot be checked now, the file stays."""
        try:
            self._on_loop(self.discard_if_unreferenced(key))
        except Exception:
            log.exception("could not discard an unindexed file", extra={"storage_key": key})


def quiet_standard_handlers() -> None:
    """Unless pynetdicom's logger is enabled for DEBUG, do not bind its standard logging handlers to the
    associations of servers made from now on (pynetdicom's documented ``LOG_HANDLER_LEVEL``).

    They describe every PDU and DIMSE message pynetdicom sends and receives, whatever the log level, under
    a lock all associations share, for debug lines that are then dropped: describing an A-ASSOCIATE-RQ of
    128 presentation contexts alone took 0.3 ms of CPU, measured by itself. With DEBUG on at start
    (``TELERAD_LOG_LEVEL=DEBUG``) they stay, for diagnosing a modality's association."""
    if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
        pynetdicom._config.LOG_HANDLER_LEVEL = "none"


def prefer_proposed_transfer_syntaxes(supported: list[PresentationContext],
                                      proposed: list[PresentationContext]) -> list[PresentationContext]:
    """The supported contexts with each proposed abstract syntax's transfer syntaxes in the caller's order.

    pynetdicom accepts, for a proposed context, the first transfer syntax of *its own* list that the
    caller offers, and that list starts with Implicit VR Little Endian: a modality offering JPEG 2000
    and uncompressed in one context would get uncompressed, and its private elements would lose their
    VRs. The acceptor may choose any offered transfer syntax (PS3.8 §9.3.2.2); like dcm4chee we take
    the caller's first choice, so what is stored is what the modality prefers to send.
    """
    preference: dict[str, list[str]] = {}
    for context in proposed:
        offered = preference.setdefault(str(context.abstract_syntax), [])
        offered += [str(uid) for uid in context.transfer_syntax if str(uid) not in offered]
    ordered = []
    for context in supported:
        order = preference.get(str(context.abstract_syntax))
        if order:
            # the UIDs already held, reordered: building new ones would validate each again (hardened_transport)
            ours = {str(uid): uid for uid in context.transfer_syntax}
            first = [ours[uid] for uid in order if uid in ours]
            context = copy_context(context, first + [uid for uid in context.transfer_syntax if uid not in first])
        ordered.append(context)
    return ordered


def part10_file(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, dataset: bytes) -> bytes:
    """The received data set as a DICOM file (PS3.10 §7.1), byte for byte what pynetdicom's
    ``Event.encoded_dataset(include_meta=True)`` writes, without building and encoding a pydicom data set.

    The File Meta Information (PS3.10 §7.1, Table 7.1-1) is Explicit VR Little Endian: its group length,
    version 00 01, the Media Storage SOP Class and Instance UIDs (the request's, checked equal to the data
    set's), the Transfer Syntax UID of the presentation context, and pynetdicom's Implementation Class
    UID and Version Name. UIDs are padded to even length with NUL, the name with a space (PS3.5 §6.2).
    """
    elements = b"".join((
        _element(0x0001, b"OB", b"\x00\x01"), _element(0x0002, b"UI", _padded(sop_class_uid, b"\x00")),
        _element(0x0003, b"UI", _padded(sop_instance_uid, b"\x00")),
        _element(0x0010, b"UI", _padded(transfer_syntax_uid, b"\x00")),
        _element(0x0012, b"UI", _padded(pynetdicom.PYNETDICOM_IMPLEMENTATION_UID, b"\x00")),
        _element(0x0013, b"SH", _padded(pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION, b" "))))
    group_length = _element(0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"".join((_PREAMBLE, group_length, elements, dataset))


_PREAMBLE = b"\x00" * 128 + b"DICM"


def _padded(value: str, pad: bytes) -> bytes:
    encoded = value.encode("ascii")
    return encoded + pad if len(encoded) % 2 else encoded


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    """A group 0002 element in Explicit VR Little Endian (PS3.5 §7.1.2): OB has a 32-bit length."""
    if vr == b"OB":
        return struct.pack("<HH2s2xI", 0x0002, element, vr, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value
