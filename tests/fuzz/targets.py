"""The properties every fuzzer checks, one function per entry point of received bytes.

Each takes one raw input (see :mod:`.inputs`) and returns what the code under test made of it: the
instance's attributes, or the clean rejection the code documents (:class:`InvalidInstance` for a
C-STORE data set, :class:`RejectedInstance` for a STOW-RS part, the ``ValueError`` subclasses of
:mod:`dicom_ingest.dicom.multipart` for a request body). Anything else escapes as an exception, and
so does an accepted instance the index or the ``study.received`` event could not hold, an input of
at most :data:`SMALL_INPUT` bytes that took more than :data:`SLOW_SECONDS`, or one that made more
than :data:`MAX_LOG_RECORDS` log records (a sender must not be able to flood the logs).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from aiohttp import StreamReader

from dicom_ingest.adapters.tables import InstanceRow, PatientRow, SeriesRow, StudyRow
from dicom_ingest.dicom.attributes import (
    UID_PATTERN,
    InstanceAttributes,
    InvalidInstance,
    StoreStatusValues,
    read_instance,
)
from dicom_ingest.dicom.multipart import (
    Limits,
    MalformedMultipart,
    PayloadTooLarge,
    UnsupportedMediaType,
    receive_parts,
)
from dicom_ingest.service_layer.stow import FailureReasonValues, RejectedInstance, check_instance
from radcommon.contracts import StudyReceivedV1

from .inputs import DICOM, multipart_arguments, read_instance_arguments

SMALL_INPUT = 64 * 1024
SLOW_SECONDS = 1.0
MAX_LOG_RECORDS = 200
REJECTION_STATUSES = frozenset(
    {StoreStatusValues.CANNOT_UNDERSTAND, StoreStatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS})
MULTIPART_LIMITS = Limits(max_part_bytes=256 * 1024, max_request_bytes=1024**2, max_parts=16)
MULTIPART_REJECTIONS = (MalformedMultipart, UnsupportedMediaType, PayloadTooLarge)
UIDS = ("sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid")
T = TypeVar("T")


class NotCleanlyHandled(AssertionError):
    """The input was accepted in a form that cannot be stored, or took too long."""


def _column_lengths() -> dict[str, int]:
    lengths: dict[str, int] = {}
    for table in (PatientRow, StudyRow, SeriesRow, InstanceRow):
        for column in table.__table__.columns:  # type: ignore[attr-defined]
            length = getattr(column.type, "length", None)
            if length is not None:
                lengths.setdefault(column.name, length)
    return lengths


COLUMN_LENGTHS = _column_lengths()


class _LogCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def bounded(size: int, work: Callable[[], T]) -> T:
    """``work()``, which must take at most SLOW_SECONDS for a small input and log at most MAX_LOG_RECORDS."""
    counter, root = _LogCounter(), logging.getLogger()
    root.addHandler(counter)
    started = time.perf_counter()
    try:
        return work()
    finally:
        elapsed = time.perf_counter() - started
        root.removeHandler(counter)
        if size <= SMALL_INPUT and elapsed > SLOW_SECONDS:
            raise NotCleanlyHandled(f"{size} bytes took {elapsed:.2f} s")
        if counter.count > MAX_LOG_RECORDS:
            raise NotCleanlyHandled(f"{size} bytes made {counter.count} log records")


def check_indexable(attributes: InstanceAttributes) -> None:
    """An accepted instance fits the index tables (PostgreSQL: no NUL, valid UTF-8, within the column
    lengths) and the ``study.received`` event."""
    for uid in UIDS:
        value = getattr(attributes, uid)
        if not (0 < len(value) <= 64 and UID_PATTERN.fullmatch(value)):
            raise NotCleanlyHandled(f"accepted with {uid} {value!r}")
    for field in fields(attributes):
        value = getattr(attributes, field.name)
        if isinstance(value, str):
            if "\x00" in value:
                raise NotCleanlyHandled(f"accepted with a NUL in {field.name}: {value!r}")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                raise NotCleanlyHandled(f"accepted with {field.name} not UTF-8: {value!r}") from error
            if len(value) > COLUMN_LENGTHS.get(field.name, 64):
                raise NotCleanlyHandled(f"accepted with {field.name} of {len(value)} characters")
        elif isinstance(value, int) and not -(2**31) <= value < 2**31:
            raise NotCleanlyHandled(f"accepted with {field.name} = {value}")
    StudyReceivedV1(
        organization_id=uuid.uuid4(), study_instance_uid=attributes.study_instance_uid,
        patient_id=attributes.patient_id, patient_name=attributes.patient_name,
        patient_birth_date=attributes.patient_birth_date, patient_sex=attributes.patient_sex,
        accession_number=attributes.accession_number, study_date=attributes.study_date,
        study_description=attributes.study_description, referring_physician_name=attributes.referring_physician_name,
        modalities=[attributes.modality], body_parts=[attributes.body_part_examined],
        number_of_series=1, number_of_instances=1, calling_ae_title="FUZZ").model_dump_json()


def read_instance_outcome(data: bytes) -> InstanceAttributes | InvalidInstance:
    """What the C-STORE handler's :func:`read_instance` makes of a ``read_instance`` input."""
    data_set, transfer_syntax = read_instance_arguments(data)

    def work() -> InstanceAttributes | InvalidInstance:
        try:
            attributes = read_instance(data_set, transfer_syntax)  # type: ignore[arg-type]
        except InvalidInstance as rejection:
            if rejection.status not in REJECTION_STATUSES:
                raise NotCleanlyHandled(f"rejected with status {rejection.status!r}") from rejection
            return rejection
        check_indexable(attributes)
        return attributes

    return bounded(len(data), work)


def stow_outcome(data: bytes, study_instance_uid: str | None = None) -> InstanceAttributes | RejectedInstance:
    """What STOW-RS's :func:`check_instance` makes of one PS3.10 file."""

    def work() -> InstanceAttributes | RejectedInstance:
        try:
            _, attributes = check_instance(data, study_instance_uid)
        except RejectedInstance as rejection:
            if not isinstance(rejection.reason, FailureReasonValues):
                raise NotCleanlyHandled(f"rejected with reason {rejection.reason!r}") from rejection
            return rejection
        check_indexable(attributes)
        return attributes

    return bounded(len(data), work)


class _Protocol:
    """The little of aiohttp's protocol that a StreamReader fed by hand touches."""

    _reading_paused = False

    def pause_reading(self, *args: object, **kwargs: object) -> None:
        pass

    def resume_reading(self, *args: object, **kwargs: object) -> None:
        pass


async def _receive(content_type: str, body: bytes) -> list[bytes] | ValueError:
    stream = StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]
    for start in range(0, len(body), 4096):
        stream.feed_data(body[start:start + 4096])
    stream.feed_eof()
    try:
        spooled = await receive_parts({"Content-Type": content_type}, stream, DICOM, MULTIPART_LIMITS)
    except MULTIPART_REJECTIONS as rejection:
        return rejection
    try:
        return [spooled.read(part) for part in spooled.parts]
    finally:
        spooled.close()


_loop: asyncio.AbstractEventLoop | None = None


def multipart_outcome(data: bytes) -> list[InstanceAttributes | RejectedInstance] | ValueError:
    """What STOW-RS makes of a request: its rejection, or the outcome of each part (as :func:`stow_outcome`)."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
    content_type, body = multipart_arguments(data)
    received = bounded(len(data), lambda: _loop.run_until_complete(_receive(content_type, body)))  # type: ignore[union-attr]
    if isinstance(received, ValueError):
        return received
    return [stow_outcome(part) for part in received]


OUTCOMES: dict[str, Callable[[bytes], Any]] = {
    "read_instance": read_instance_outcome, "stow": stow_outcome, "multipart": multipart_outcome}
#: Bugs found and reported but not fixed yet (their crash inputs are in crashes/, replayed as expected failures):
#: the atheris harness passes over them, so that a long run finds the next bug instead of this one again.
KNOWN_OPEN: dict[str, Callable[[BaseException], bool]] = {}
