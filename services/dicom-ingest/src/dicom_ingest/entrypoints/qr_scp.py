"""The DIMSE Query/Retrieve service class provider: C-FIND, C-MOVE and C-GET (PS3.4 Annex C).

Patient Root and Study Root information models (§C.3.1, §C.3.2), levels PATIENT/STUDY/SERIES/IMAGE,
hierarchical search (§C.4.1.3.1); the matching rules are in :mod:`dicom_ingest.dicom.query`. Every
request is answered from the organisation of the modality the association comes from: a query never
sees another organisation's studies, and a Move Destination is looked up among the organisation's
own registrations only (an unknown one is refused with 0xA801).

pynetdicom calls these handlers in the association's thread. Searching the index is handed to the
service's event loop and waited for (``run``); files are read from the storage in the thread. C-FIND
answers page by page, so a large result never sits in memory whole and a C-CANCEL stops it between
matches. C-MOVE and C-GET count their C-STORE sub-operations through pynetdicom, which sends the
Pending responses (remaining, completed, failed, warning) and the final status: 0x0000, or 0xB000
with the Failed SOP Instance UID List when some failed (§C.4.2.1.5, §C.4.3.1.4).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any, Protocol, TypeVar
from uuid import UUID

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import StoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicom_ingest.adapters.index_queries import RetrievableInstance
from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.dicom.query import (
    InformationModelValues,
    InvalidQuery,
    Query,
    find_request,
    response_identifier,
    retrieve_query,
)
from dicom_ingest.dicom.query import QueryRetrieveStatusValues as Status
from dicom_ingest.domain.modalities import Modality

log = logging.getLogger(__name__)
T = TypeVar("T")
Response = tuple[int | Dataset, Dataset | None]

PATIENT_ROOT, STUDY_ROOT = InformationModelValues.PATIENT_ROOT, InformationModelValues.STUDY_ROOT
FIND = {PatientRootQueryRetrieveInformationModelFind: PATIENT_ROOT,
        StudyRootQueryRetrieveInformationModelFind: STUDY_ROOT}
MOVE = {PatientRootQueryRetrieveInformationModelMove: PATIENT_ROOT,
        StudyRootQueryRetrieveInformationModelMove: STUDY_ROOT}
GET = {PatientRootQueryRetrieveInformationModelGet: PATIENT_ROOT, StudyRootQueryRetrieveInformationModelGet: STUDY_ROOT}
#: The sub-operation counts (0000,1020)-(0000,1023) are US (PS3.7 Annex E): one request sends at most this many.
MAX_SUB_OPERATIONS = 65535
#: Presentation contexts one association may propose (PS3.8 §9.3.2.2: odd IDs 1-255).
MAX_CONTEXTS = 128
_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_CONVERTIBLE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}


class IndexQueries(Protocol):
    async def find(self, organization_id: UUID, query: Query) -> list[dict[str, Any]]: ...

    async def instances(self, organization_id: UUID, query: Query, limit: int) -> list[RetrievableInstance]: ...


DestinationFinder = Callable[[UUID, str], Modality | None]


@dataclass
class QueryRetrieveSCP:
    ae_title: str
    storage: InstanceStorage
    index: IndexQueries
    find_destination: DestinationFinder
    page_size: int = 500
    #: Runs a coroutine on the service's event loop and returns its result (set when the SCP starts).
    run: Callable[[Awaitable[Any]], Any] | None = None

    @staticmethod
    def abstract_syntaxes() -> list[str]:
        return [*FIND, *MOVE, *GET]

    def find(self, event: Any, modality: Modality | None) -> Iterator[Response]:
        """EVT_C_FIND: Pending responses, one per match, then pynetdicom's final Success."""
        context = _context(event, "C-FIND")
        if modality is None:  # cannot happen on an association the SCP screened
            yield _failure(Status.UNABLE_TO_PROCESS, "the association has no registered modality"), None
            return
        try:
            request = find_request(event.identifier, FIND[event.context.abstract_syntax])
        except InvalidQuery as error:
            log.warning("C-FIND refused: %s", error, extra=context)
            yield _failure(Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(error), error.offending_element), None
            return
        except Exception:
            log.exception("C-FIND refused: the identifier could not be read", extra=context)
            yield _failure(Status.UNABLE_TO_PROCESS, "the identifier could not be read"), None
            return
        status = int(Status.PENDING_WITH_UNSUPPORTED_OPTIONAL_KEYS if request.unsupported_keys else Status.PENDING)
        extra = {"RetrieveAETitle": self.ae_title, "InstanceAvailability": "ONLINE"}
        found, offset = 0, 0
        while True:
            try:
                rows = self._run(self.index.find(modality.organization_id,
                                                 request.query.page(self.page_size, offset)))
            except Exception:
                log.exception("C-FIND failed: the index could not be searched", extra=context)
                yield _failure(Status.UNABLE_TO_PROCESS, "the index could not be searched"), None
                return
            for row in rows:
                if event.is_cancelled:
                    log.info("C-FIND cancelled after %d matches", found, extra=context)
                    yield int(Status.CANCEL), None
                    return
                found += 1
                yield status, response_identifier(request, row, extra)
            if len(rows) < self.page_size:
                break
            offset += self.page_size
        log.info("C-FIND answered: %d %s level matches", found, request.query.level.value,
                 extra={**context, "matches": found})

    def move(self, event: Any, modality: Modality | None) -> Iterator[Any]:
        """EVT_C_MOVE: the destination (or (None, None): 0xA801), the number of sub-operations, the data sets."""
        context = {**_context(event, "C-MOVE"), "move_destination": str(event.move_destination or "")}
        destination = None if modality is None else self.find_destination(
            modality.organization_id, str(event.move_destination or ""))
        if modality is None or destination is None or destination.destination is None:
            log.warning("C-MOVE refused: the Move Destination is not registered for the organisation",
                        extra=context)
            yield None, None
            return
        instances, failure = self._matching(event, MOVE, modality, context)
        address, port = destination.destination
        # pynetdicom answers a failure only after associating with the destination: offer it what any
        # storage SCP accepts some of, or the request would be answered 0xA801 instead
        contexts = _storage_contexts(instances) if failure is None else _any_storage_contexts()
        yield address, port, {"contexts": contexts}
        yield from self._retrieve(event, instances, failure, context)

    def get(self, event: Any, modality: Modality | None) -> Iterator[Any]:
        """EVT_C_GET: the number of sub-operations, then the data sets, sent back on this association."""
        context = _context(event, "C-GET")
        instances: list[RetrievableInstance] = []
        if modality is None:
            failure: Dataset | None = _failure(Status.UNABLE_TO_PROCESS, "the association has no registered modality")
        else:
            instances, failure = self._matching(event, GET, modality, context)
        yield from self._retrieve(event, instances, failure, context)

    def _matching(self, event: Any, models: dict[str, InformationModelValues], modality: Modality,
                  context: dict[str, Any]) -> tuple[list[RetrievableInstance], Dataset | None]:
        try:
            query = retrieve_query(event.identifier, models[event.context.abstract_syntax])
        except InvalidQuery as error:
            log.warning("%s refused: %s", context["operation"], error, extra=context)
            return [], _failure(Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(error), error.offending_element)
        except Exception:
            log.exception("%s refused: the identifier could not be read", context["operation"], extra=context)
            return [], _failure(Status.UNABLE_TO_PROCESS, "the identifier could not be read")
        try:
            instances: list[RetrievableInstance] = self._run(
                self.index.instances(modality.organization_id, query, MAX_SUB_OPERATIONS + 1))
        except Exception:
            log.exception("%s failed: the index could not be searched", context["operation"], extra=context)
            return [], _failure(Status.UNABLE_TO_CALCULATE_NUMBER_OF_MATCHES, "the index could not be searched")
        if len(instances) > MAX_SUB_OPERATIONS:
            log.warning("%s refused: more than %d instances match", context["operation"], MAX_SUB_OPERATIONS,
                        extra=context)
            return [], _failure(Status.UNABLE_TO_PERFORM_SUB_OPERATIONS,
                                f"more than {MAX_SUB_OPERATIONS} instances match; retrieve fewer at once")
        return instances, None

    def _retrieve(self, event: Any, instances: list[RetrievableInstance], failure: Dataset | None,
                  context: dict[str, Any]) -> Iterator[Any]:
        if failure is not None:
            # pynetdicom sends a failure status only once sub-operations are announced: announce one
            yield 1
            yield failure, None
            return
        yield len(instances)
        log.info("%s: %d sub-operations", context["operation"], len(instances),
                 extra={**context, "sub_operations": len(instances)})
        for instance in instances:
            if event.is_cancelled:
                log.info("%s cancelled", context["operation"], extra=context)
                yield int(Status.CANCEL), None
                return
            yield int(Status.PENDING), self._dataset(instance, context)

    def _dataset(self, instance: RetrievableInstance, context: dict[str, Any]) -> Dataset:
        """The stored instance; if it cannot be read, a stand-in pynetdicom cannot send, so the sub-operation
        counts as failed and its SOP Instance UID joins the Failed SOP Instance UID List."""
        try:
            return dcmread(BytesIO(self.storage.get(instance.storage_key)))
        except Exception:
            log.exception("sub-operation failed: the stored file could not be read",
                          extra={**context, "sop_instance_uid": instance.sop_instance_uid,
                                 "storage_key": instance.storage_key})
            unreadable = Dataset()
            unreadable.SOPClassUID = instance.sop_class_uid
            unreadable.SOPInstanceUID = instance.sop_instance_uid
            return unreadable

    def _run(self, work: Awaitable[T]) -> T:
        if self.run is None:
            raise RuntimeError("the Query/Retrieve SCP is not started")
        result: T = self.run(work)
        return result


def _storage_contexts(instances: list[RetrievableInstance]) -> list[PresentationContext]:
    """Contexts for the sub-association: per SOP Class one of the uncompressed syntaxes (pynetdicom
    converts between them), and one per other stored transfer syntax, which is sent as stored."""
    wanted: dict[tuple[str, tuple[str, ...]], None] = {}
    for instance in instances:
        wanted[(instance.sop_class_uid, _UNCOMPRESSED)] = None
        if instance.transfer_syntax_uid not in _CONVERTIBLE:
            wanted[(instance.sop_class_uid, (instance.transfer_syntax_uid,))] = None
    if len(wanted) > MAX_CONTEXTS:
        log.warning("C-MOVE: %d presentation contexts needed, %d proposed; instances beyond them will fail",
                    len(wanted), MAX_CONTEXTS)
    return [build_context(sop_class, list(syntaxes)) for sop_class, syntaxes in list(wanted)[:MAX_CONTEXTS]]


def _any_storage_contexts() -> list[PresentationContext]:
    return [build_context(Verification), *StoragePresentationContexts[:MAX_CONTEXTS - 1]]


def _failure(status: Status, comment: str, offending_element: int | None = None) -> Dataset:
    """A status data set with (0000,0902) Error Comment and, when known, (0000,0901) Offending Element."""
    ds = Dataset()
    ds.Status = int(status)
    ds.ErrorComment = comment[:64]  # VR LO
    if offending_element is not None:
        ds.OffendingElement = [offending_element]
    return ds


def _context(event: Any, operation: str) -> dict[str, Any]:
    requestor = event.assoc.requestor
    return {"operation": operation, "calling_ae_title": str(requestor.ae_title).strip(),
            "address": requestor.address, "sop_class_uid": str(event.context.abstract_syntax)}
