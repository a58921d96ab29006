"""A-ASSOCIATE-RQ PDUs decoded once and kept by their bytes (dicom_ingest.adapters.associate_cache), over
real associations of pynetdicom's SCU to the hardened server with the C-STORE lane."""

import logging
from collections.abc import Iterator
from typing import Any

import pynetdicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification  # type: ignore[attr-defined]

from dicom_ingest.adapters import associate_cache
from dicom_ingest.adapters.associate_cache import AssociateRequestCache, copy_primitive
from dicom_ingest.adapters.direct_store import Lane
from dicom_ingest.adapters.hardened_transport import HardenedAssociationServer, TransportLimits, start_hardened_server
from dicom_ingest.dicom.storage_classes import STORAGE_SOP_CLASS_UIDS
from dicom_ingest.entrypoints.scp import quiet_standard_handlers


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> AssociateRequestCache:
    fresh = AssociateRequestCache(maximum_entries=4)
    monkeypatch.setattr(associate_cache, "ASSOCIATE_REQUESTS", fresh)
    monkeypatch.setattr("dicom_ingest.adapters.direct_store.ASSOCIATE_REQUESTS", fresh)
    return fresh


#: The calling AE title of each A-ASSOCIATE-RQ as the server's EVT_REQUESTED handler saw it.
Callers = list[str]


@pytest.fixture
def callers() -> Callers:
    return []


@pytest.fixture
def server(callers: Callers) -> Iterator[HardenedAssociationServer]:
    ae = AE(ae_title="TELERAD")
    ae.add_supported_context(Verification)
    for sop_class in (CTImageStorage, MRImageStorage):
        ae.add_supported_context(sop_class, ALL_TRANSFER_SYNTAXES)
    lanes = lambda: Lane(lambda *_: 0x0000, STORAGE_SOP_CLASS_UIDS, 2**31)  # noqa: E731
    server = start_hardened_server(ae, ("127.0.0.1", 0), TransportLimits(network_timeout=5),
                                   [(evt.EVT_C_ECHO, lambda event: 0x0000),
                                    (evt.EVT_REQUESTED, lambda event: callers.append(
                                        str(event.assoc.requestor.primitive.calling_ae_title)))], lane=lanes)
    yield server
    server.shutdown()


def associate(server: HardenedAssociationServer, calling: str = "CT1", *, mr: bool = True) -> Any:
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, [JPEG2000Lossless, ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    if mr:
        ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", server.server_address[1], ae_title="TELERAD")
    assert assoc.is_established
    return assoc


def negotiated(assoc: Any) -> list[tuple[int, str, str]]:
    return sorted((int(cx.context_id), str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                  for cx in assoc.accepted_contexts)


def test_the_same_request_again_is_not_decoded_again_and_negotiates_the_same(
        server: HardenedAssociationServer, cache: AssociateRequestCache) -> None:
    outcomes = []
    for _ in range(3):
        assoc = associate(server)
        try:
            assert assoc.send_c_echo().Status == 0x0000
            outcomes.append(negotiated(assoc))
        finally:
            assoc.release()
    assert len(cache) == 1 and cache.hits == 2
    assert outcomes[0] == outcomes[1] == outcomes[2]
    # pynetdicom's own acceptor takes the first of its transfer syntaxes offered (StorageSCP reorders them)
    assert [ts for _, syntax, ts in outcomes[0] if syntax == CTImageStorage] == [ImplicitVRLittleEndian]


def test_a_different_request_is_decoded_for_itself(server: HardenedAssociationServer,
                                                   cache: AssociateRequestCache, callers: Callers) -> None:
    first = associate(server, "CT1")
    first.release()
    other = associate(server, "CT1", mr=False)  # one context fewer: other bytes, its own negotiation
    try:
        assert [syntax for _, syntax, _ in negotiated(other)] == [Verification, CTImageStorage]
    finally:
        other.release()
    associate(server, "CT2").release()  # the AE titles are in the bytes: a caller is never taken for another
    associate(server, "CT1").release()
    assert callers == ["CT1", "CT1", "CT2", "CT1"]
    assert len(cache) == 3 and cache.hits == 1


def test_a_copy_shares_nothing_anyone_changes() -> None:
    kept = decoded_request(request("CT1")).to_primitive()
    copied = copy_primitive(kept)
    copied.presentation_context_definition_list[0].add_transfer_syntax(ImplicitVRLittleEndian)
    copied.user_information[0].maximum_length_received = 0
    copied.presentation_context_definition_results_list.append(copied.presentation_context_definition_list[0])
    assert kept.presentation_context_definition_list[0].transfer_syntax == [ExplicitVRLittleEndian]
    assert kept.presentation_context_definition_results_list == []
    assert kept.user_information[0].maximum_length_received == 16384
    again = copy_primitive(kept)
    assert again.presentation_context_definition_list[0] is not kept.presentation_context_definition_list[0]
    assert (again.calling_ae_title, again.called_ae_title) == ("CT1", "TELERAD")


def test_the_cache_is_bounded_and_keeps_the_most_recently_used() -> None:
    decoded: list[bytes] = []

    def decode(data: bytes | bytearray) -> tuple[Any, str]:
        decoded.append(bytes(data))
        if data[:1] != b"\x01":
            return object(), "Evt10"  # P-DATA-TF
        return decoded_request(data), associate_cache.ASSOCIATE_RQ_EVENT

    cache = AssociateRequestCache(maximum_entries=2)
    a, b, c = (request(title) for title in ("A", "B", "C"))
    for data in (a, b, a, c, a, b):  # c evicts b (a was used after b); b comes back, evicting c
        cache.decode(data, decode)
    assert decoded == [a, b, c, b]
    assert len(cache) == 2 and cache.hits == 2
    cache.decode(b"\x04\x00\x00\x00\x00\x02\x00\x00", decode)  # not an A-ASSOCIATE-RQ: always decoded
    cache.decode(b"\x04\x00\x00\x00\x00\x02\x00\x00", decode)
    assert decoded[-2:] == [b"\x04\x00\x00\x00\x00\x02\x00\x00"] * 2


def test_with_pynetdicom_debugging_every_request_is_decoded(cache: AssociateRequestCache,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def decode(data: bytes | bytearray) -> tuple[Any, str]:
        calls.append(data)
        return decoded_request(data), associate_cache.ASSOCIATE_RQ_EVENT

    data = request("A")
    with caplog.at_level(logging.DEBUG, logger="pynetdicom"):
        cache.decode(data, decode)
        cache.decode(data, decode)
    assert len(calls) == 2 and len(cache) == 0


def request(calling: str) -> bytes:
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    primitive = A_ASSOCIATE()
    primitive.calling_ae_title, primitive.called_ae_title = calling, "TELERAD"
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    contexts = ae.requested_contexts
    contexts[0].context_id = 1
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def decoded_request(data: bytes | bytearray) -> A_ASSOCIATE_RQ:
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(bytes(data))
    return pdu


@pytest.mark.parametrize(("level", "expected"), [(logging.INFO, "none"), (logging.DEBUG, "standard")])
def test_pynetdicoms_describing_handlers_are_bound_only_when_debugging(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, level: int, expected: str) -> None:
    monkeypatch.setattr(pynetdicom._config, "LOG_HANDLER_LEVEL", "standard")
    with caplog.at_level(level, logger="pynetdicom"):
        quiet_standard_handlers()
    assert pynetdicom._config.LOG_HANDLER_LEVEL == expected
    ae = AE(ae_title="TELERAD")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:  # pynetdicom binds its describing handler to a server's associations at "standard" only
        assert (evt.EVT_PDU_RECV in server.get_events()) is (expected == "standard")
    finally:
        server.shutdown()
