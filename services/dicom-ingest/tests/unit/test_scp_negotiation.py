"""Presentation context negotiation of the SCP (PS3.8 §9.3.2.2, PS3.7 D.3.3.4) over real associations."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, StoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext

from dicom_ingest.adapters.storage import FileStorage
from dicom_ingest.config import DicomIngestSettings
from dicom_ingest.domain.modalities import Modality
from dicom_ingest.entrypoints.scp import StorageSCP, prefer_proposed_transfer_syntaxes

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
CR = "1.2.840.10008.5.1.4.1.1.1"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"  # not in pynetdicom's StoragePresentationContexts
ULTRASOUND_RETIRED = "1.2.840.10008.5.1.4.1.1.6"  # not in its AllStoragePresentationContexts; old scanners send it
SENDER = Modality(id=uuid4(), organization_id=UUID(int=1), ae_title="CT1", host=None, description="",
                  created_at=datetime.now(UTC))


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    async def never(*_: Any) -> Any:
        raise AssertionError("not reached")

    scp = StorageSCP(DicomIngestSettings(dicom_port=0), FileStorage(tmp_path), never, never, lambda *_: SENDER)
    scp.start()
    yield scp.port
    scp.stop()


def negotiate(port: int, contexts: list[PresentationContext]) -> dict[int, str | None]:
    """The transfer syntax accepted for each proposed context (None: rejected), by context ID."""
    ae = AE(ae_title="CT1")
    ae.requested_contexts = contexts
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    assert assoc.is_established
    try:
        accepted = {cx.context_id: str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        return {cx.context_id: accepted.get(cx.context_id) for cx in assoc.requestor.requested_contexts}
    finally:
        assoc.release()


async def test_the_callers_first_transfer_syntax_is_accepted_not_pynetdicoms(port: int) -> None:
    offers = [
        [JPEG2000Lossless, ExplicitVRLittleEndian, ImplicitVRLittleEndian],
        [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
        [JPEGLSLossless, RLELossless],
        ["1.2.3.4.5.6.7", JPEGBaseline8Bit, ImplicitVRLittleEndian],  # one we do not know, then lossy
    ]
    contexts = [build_context(sop_class, offer) for sop_class, offer in zip((CT, MR, US, CR), offers, strict=True)]
    accepted = await asyncio.to_thread(negotiate, port, contexts)
    assert list(accepted.values()) == [JPEG2000Lossless, ExplicitVRLittleEndian, JPEGLSLossless, JPEGBaseline8Bit]


async def test_every_storage_sop_class_pynetdicom_knows_is_accepted(port: int) -> None:
    accepted = await asyncio.to_thread(negotiate, port, [build_context(PARAMETRIC_MAP, ExplicitVRLittleEndian),
                                                         build_context(ULTRASOUND_RETIRED, ImplicitVRLittleEndian)])
    assert list(accepted.values()) == [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def test_the_order_follows_the_first_context_that_proposes_an_abstract_syntax() -> None:
    supported = [build_context(c.abstract_syntax, [ImplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless])
                 for c in StoragePresentationContexts[:3]]
    supported[0].scu_role, supported[0].scp_role = True, True
    proposed = [build_context(supported[0].abstract_syntax, [RLELossless]),
                build_context(supported[0].abstract_syntax, [ExplicitVRLittleEndian, RLELossless])]
    ordered = prefer_proposed_transfer_syntaxes(supported, proposed)
    assert ordered[0].transfer_syntax == [RLELossless, ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    assert (ordered[0].scu_role, ordered[0].scp_role) == (True, True)  # role selection kept (C-GET)
    assert ordered[1:] == supported[1:]  # not proposed: untouched


def test_each_association_gets_its_own_copy_of_the_servers_contexts() -> None:
    import copy

    from dicom_ingest.adapters.hardened_transport import CheaplyCopiedContexts

    original = build_context(CT, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    original.scu_role, original.scp_role = True, True
    contexts = CheaplyCopiedContexts([original])
    copied = copy.deepcopy(contexts)
    assert isinstance(copied, CheaplyCopiedContexts) and copied[0] is not original
    assert (copied[0].abstract_syntax, copied[0].transfer_syntax, copied[0].scu_role, copied[0].scp_role) == (
        CT, [ImplicitVRLittleEndian, ExplicitVRLittleEndian], True, True)
    copied[0].transfer_syntax.append(JPEG2000Lossless)
    copied[0].context_id = 3
    assert original.transfer_syntax == [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
    assert original.context_id is None
