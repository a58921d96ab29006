"""A-ASSOCIATE-RQ PDUs the SCP has decoded before, kept by their bytes.

A modality sends the same A-ASSOCIATE-RQ for every association: the same AE titles, the same
presentation contexts, the same user information. pynetdicom decodes each one afresh, building and
validating a pydicom ``UID`` for every abstract and transfer syntax: with dcmtk's storescu, which
proposes 128 contexts unless told otherwise, that was about half the CPU of setting up an
association (3-4 ms of 7 on this VM), paid again by every CR, DX or US modality sending each image on
an association of its own. Here the first decoding of a given PDU is kept, and the same bytes again get
a copy of its A-ASSOCIATE primitive, made in a fraction of the time: new primitive and presentation
context objects (pynetdicom may set attributes on them), sharing the UIDs, which are immutable strings.

Only the primitive is kept: whatever the association decides (the caller's registration, the
negotiation, the answer) is decided for each association as before. The cache holds
``MAXIMUM_ENTRIES`` PDUs at most, least recently used out first, so a stream of requests that differ
only churns it. It is bypassed while pynetdicom's logger is enabled for DEBUG, so that the logging
handlers, which describe each PDU decoded, still see one.

Version coupling: pynetdicom 3.0's ``DULServiceProvider._decode_pdu`` returns ``(pdu, event)``, and
the state machine's action AE-6 reads only ``protocol_version`` and ``to_primitive()`` of an
A-ASSOCIATE-RQ PDU (tests/unit/test_associate_cache.py runs associations through it).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections import OrderedDict
from typing import Any

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

#: The state machine's event for a received A-ASSOCIATE-RQ PDU (PS3.8 §9.2, Table 9-10: Evt6).
ASSOCIATE_RQ_EVENT = "Evt6"
MAXIMUM_ENTRIES = 64
PYNETDICOM_LOG = logging.getLogger("pynetdicom")


class DecodedRequest:
    """What AE-6 needs of a decoded A-ASSOCIATE-RQ PDU, from a kept primitive."""

    def __init__(self, protocol_version: int, primitive: A_ASSOCIATE) -> None:
        self.protocol_version = protocol_version
        self._primitive = primitive

    def to_primitive(self) -> A_ASSOCIATE:
        return copy_primitive(self._primitive)


def copy_context(context: PresentationContext) -> PresentationContext:
    copied: PresentationContext = PresentationContext.__new__(PresentationContext)
    copied.__dict__.update(context.__dict__)
    copied._transfer_syntax = list(context._transfer_syntax)
    return copied


def copy_primitive(primitive: A_ASSOCIATE) -> A_ASSOCIATE:
    """A new A-ASSOCIATE primitive equal to ``primitive``: new objects around the same immutable values."""
    copied: A_ASSOCIATE = A_ASSOCIATE.__new__(A_ASSOCIATE)
    copied.__dict__.update({name: list(value) if isinstance(value, list) else value
                            for name, value in primitive.__dict__.items()})
    copied._presentation_context_definition_list = [
        copy_context(context) for context in primitive.presentation_context_definition_list]
    copied._user_information = [copy.copy(item) for item in primitive.user_information]
    return copied


class AssociateRequestCache:
    """The last ``MAXIMUM_ENTRIES`` A-ASSOCIATE-RQ PDUs decoded, by their bytes (thread-safe)."""

    def __init__(self, maximum_entries: int = MAXIMUM_ENTRIES) -> None:
        self.maximum_entries = maximum_entries
        self._entries: OrderedDict[bytes, DecodedRequest] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def decode(self, bytestream: bytes | bytearray, decode: Any) -> tuple[Any, str]:
        """``decode(bytestream)`` (pynetdicom's ``_decode_pdu``), or the kept result for the same bytes."""
        if bytestream[:1] != b"\x01" or PYNETDICOM_LOG.isEnabledFor(logging.DEBUG):
            return decode(bytestream)  # type: ignore[no-any-return]
        key = bytes(bytestream)
        with self._lock:
            kept = self._entries.get(key)
            if kept is not None:
                self._entries.move_to_end(key)
                self.hits += 1
        if kept is not None:
            return kept, ASSOCIATE_RQ_EVENT
        pdu, event = decode(bytestream)
        if isinstance(pdu, A_ASSOCIATE_RQ) and event == ASSOCIATE_RQ_EVENT:
            request = DecodedRequest(pdu.protocol_version, copy_primitive(pdu.to_primitive()))
            with self._lock:
                self._entries[key] = request
                self._entries.move_to_end(key)
                while len(self._entries) > self.maximum_entries:
                    self._entries.popitem(last=False)
        return pdu, event


#: One per process: a modality's request is the same whichever association it comes on.
ASSOCIATE_REQUESTS = AssociateRequestCache()
