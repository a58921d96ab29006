"""STOW-RS: the instances of one request, each stored exactly as a C-STORE would store it (PS3.18 §10.5).

An instance arrives as a PS3.10 file. Its File Meta Information is read (:mod:`dicom_ingest.dicom.part10`),
then its data set goes through the C-STORE checks (:func:`~dicom_ingest.dicom.attributes.read_instance`,
the same SOP classes and transfer syntaxes the SCP accepts), the file is written content-addressed,
and the index transaction (``index_instance`` with its retry) records it. An instance that fails
anywhere leaves no file and no row behind; the others are stored regardless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from enum import IntEnum
from typing import Any
from uuid import UUID

from pynetdicom import ALL_TRANSFER_SYNTAXES

from dicom_ingest.adapters.storage import InstanceStorage
from dicom_ingest.dicom.attributes import InstanceAttributes, InvalidInstance, StoreStatusValues, read_instance
from dicom_ingest.dicom.dicom_json import element, sequence
from dicom_ingest.dicom.part10 import FileMeta, MalformedFile, read_file_meta
from dicom_ingest.dicom.storage_classes import STORAGE_SOP_CLASS_UIDS
from dicom_ingest.domain.model import Discarder, Indexer, IndexOutcomeValues, StoreInstance, unreferenced_storage_key

log = logging.getLogger(__name__)

#: What the index records as the sender of instances that came over STOW-RS (no AE title there).
STOW_CALLING_AE_TITLE = "STOW-RS"
STORAGE_SOP_CLASSES = frozenset(STORAGE_SOP_CLASS_UIDS)
TRANSFER_SYNTAXES = frozenset(str(uid) for uid in ALL_TRANSFER_SYNTAXES)



class FailureReasonValues(IntEnum):
    """Failure Reason (0008,1197) of a STOW-RS response (PS3.18 §I.2.2, Table I.2-2).

    Under the ``overwrite`` duplicate policy, a copy of a held SOP Instance UID that names another Study
    or Series Instance UID is refused with ``DATA_SET_DOES_NOT_MATCH_SOP_CLASS`` (0xA900), as over C-STORE
    (``IndexOutcomeValues.CONFLICT``): the data set is understood but contradicts the instance it claims to be.
    """

    PROCESSING_FAILURE = 0x0110
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    REFERENCED_TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
    #: Implementation-specific, in the "cannot understand" range: the instance's Study Instance UID
    #: is not the one of the resource it was posted to (PS3.18 §10.5.1).
    STUDY_INSTANCE_UID_MISMATCH = 0xC409


@dataclass(frozen=True)
class StowResult:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    failure_reason: FailureReasonValues | None = None

    @property
    def stored(self) -> bool:
        return self.failure_reason is None


class RejectedInstance(ValueError):
    def __init__(self, detail: str, reason: FailureReasonValues, sop_class_uid: str = "",
                 sop_instance_uid: str = "") -> None:
        super().__init__(detail)
        self.reason, self.sop_class_uid, self.sop_instance_uid = reason, sop_class_uid, sop_instance_uid


@dataclass(frozen=True)
class StowPorts:
    storage: InstanceStorage
    index: Indexer
    discard_if_unreferenced: Discarder
    executor: Executor | None = None


def check_instance(data: bytes, study_instance_uid: str | None = None) -> tuple[FileMeta, InstanceAttributes]:
    """The checks of a C-STORE, on a PS3.10 file; blocking (it walks the whole data set).

    Raises
    ------
    RejectedInstance
        With the Failure Reason to report.
    """
    try:
        meta = read_file_meta(data)
    except MalformedFile as error:
        raise RejectedInstance(str(error), FailureReasonValues.CANNOT_UNDERSTAND) from None
    uids = (meta.media_storage_sop_class_uid, meta.media_storage_sop_instance_uid)
    if meta.transfer_syntax_uid not in TRANSFER_SYNTAXES:
        raise RejectedInstance(f"transfer syntax {meta.transfer_syntax_uid[:64]} is not supported",
                               FailureReasonValues.REFERENCED_TRANSFER_SYNTAX_NOT_SUPPORTED, *uids)
    try:  # a view, not a copy: the walk reads it through memoryview and struct alone
        attributes = read_instance(memoryview(data)[meta.dataset_offset:], meta.transfer_syntax_uid)  # type: ignore[arg-type]
    except InvalidInstance as error:
        reason = FailureReasonValues.CANNOT_UNDERSTAND if error.status == StoreStatusValues.CANNOT_UNDERSTAND \
            else FailureReasonValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS
        raise RejectedInstance(str(error), reason, *uids) from None
    uids = (attributes.sop_class_uid, attributes.sop_instance_uid)
    if attributes.sop_class_uid not in STORAGE_SOP_CLASSES:
        raise RejectedInstance(f"SOP class {attributes.sop_class_uid} is not a storage SOP class we accept",
                               FailureReasonValues.REFERENCED_SOP_CLASS_NOT_SUPPORTED, *uids)
    if (meta.media_storage_sop_class_uid, meta.media_storage_sop_instance_uid) != uids:
        raise RejectedInstance("the File Meta Information names another SOP instance or class than the data set",
                               FailureReasonValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS, *uids)
    if study_instance_uid is not None and attributes.study_instance_uid != study_instance_uid:
        raise RejectedInstance("the instance belongs to another study than the one it was posted to",
                               FailureReasonValues.STUDY_INSTANCE_UID_MISMATCH, *uids)
    return meta, attributes


async def store_instance(data: bytes, organization_id: UUID, ports: StowPorts,
                         study_instance_uid: str | None = None) -> StowResult:
    """Check, write and index one instance for ``organization_id``; never raises for a bad instance."""
    loop = asyncio.get_running_loop()
    try:
        meta, attributes = await loop.run_in_executor(ports.executor, check_instance, data, study_instance_uid)
    except RejectedInstance as error:
        log.warning("STOW-RS instance rejected: %s", error, extra={"failure_reason": f"0x{error.reason:04X}",
                                                                  "sop_instance_uid": error.sop_instance_uid[:64]})
        return StowResult(error.sop_class_uid[:64], error.sop_instance_uid[:64], failure_reason=error.reason)
    except Exception:
        log.exception("STOW-RS instance rejected: unreadable data set")
        return StowResult("", "", failure_reason=FailureReasonValues.CANNOT_UNDERSTAND)
    result = StowResult(attributes.sop_class_uid, attributes.sop_instance_uid, attributes.study_instance_uid,
                        attributes.series_instance_uid)
    context = {"sop_instance_uid": attributes.sop_instance_uid, "organization_id": str(organization_id)}
    try:
        key = await loop.run_in_executor(ports.executor, ports.storage.put, data)
    except Exception:
        log.exception("STOW-RS failed: could not write the file", extra=context)
        return _failed(result, FailureReasonValues.OUT_OF_RESOURCES)
    command = StoreInstance(organization_id, attributes, meta.transfer_syntax_uid, key, len(data),
                            STOW_CALLING_AE_TITLE)
    try:
        outcome = await ports.index(command)
    except Exception:
        log.exception("STOW-RS failed: could not index the instance", extra=context)
        await _discard(ports, key)
        return _failed(result, FailureReasonValues.PROCESSING_FAILURE)
    if outcome == IndexOutcomeValues.DUPLICATE:
        log.info("duplicate SOP Instance UID: the copy held is kept", extra=context)
    elif outcome == IndexOutcomeValues.REPLACED:
        log.info("duplicate SOP Instance UID: this copy replaced the one held", extra=context)
    unreferenced = unreferenced_storage_key(outcome, key)
    if unreferenced is not None:  # only now, the index committed: never a file a row still points at
        await _discard(ports, unreferenced)
    if outcome == IndexOutcomeValues.CONFLICT:
        log.warning("STOW-RS instance refused: its SOP Instance UID is held in another study or series",
                    extra=context)
        return _failed(result, FailureReasonValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
    return result


def store_instances_response(results: list[StowResult], study_url: Callable[[str], str],
                             instance_url: Callable[[StowResult], str]) -> dict[str, Any]:
    """The Store Instances Response Module (PS3.18 Annex I) in the DICOM JSON Model."""
    stored = [r for r in results if r.stored]
    failed = [r for r in results if not r.stored]
    studies = {r.study_instance_uid for r in stored}
    document: dict[str, Any] = {"00081190": element("UR", *([study_url(studies.pop())] if len(studies) == 1 else []))}
    if failed:
        document["00081198"] = sequence([{
            "00081150": element("UI", *_present(r.sop_class_uid)),
            "00081155": element("UI", *_present(r.sop_instance_uid)),
            "00081197": element("US", int(r.failure_reason or FailureReasonValues.PROCESSING_FAILURE)),
        } for r in failed])
    if stored:
        document["00081199"] = sequence([{
            "00081150": element("UI", r.sop_class_uid), "00081155": element("UI", r.sop_instance_uid),
            "00081190": element("UR", instance_url(r)),
        } for r in stored])
    return document


def response_status(results: list[StowResult]) -> int:
    """200 when every instance was stored, 202 when some were, 409 when none was (PS3.18 §10.5.3)."""
    stored = sum(r.stored for r in results)
    return 200 if stored == len(results) else 202 if stored else 409


def _failed(result: StowResult, reason: FailureReasonValues) -> StowResult:
    return StowResult(result.sop_class_uid, result.sop_instance_uid, failure_reason=reason)


def _present(value: str) -> list[str]:
    return [value] if value else []


async def _discard(ports: StowPorts, key: str) -> None:
    try:
        await ports.discard_if_unreferenced(key)
    except Exception:
        log.exception("could not discard an unindexed file", extra={"storage_key": key})
