"""A DIMSE peer for tests: associate as a given calling AE title and C-ECHO (pynetdicom, blocking)."""

from __future__ import annotations

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]


def associate(port: int, calling_ae_title: str, timeout: float = 10
              ) -> tuple[bool, tuple[int, int, int] | None, int | None]:
    """(established, (result, source, reason) of an A-ASSOCIATE-RJ, C-ECHO status)."""
    ae = AE(ae_title=calling_ae_title)
    ae.acse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="TELERAD")
    if not assoc.is_established:
        answer = assoc.acceptor.primitive
        return False, (answer.result, answer.result_source, answer.diagnostic) if assoc.is_rejected else None, None
    try:
        return True, None, int(assoc.send_c_echo().Status)
    finally:
        assoc.release()
