"""Events signature consumes: what may be signed, signers' printed names, ended sessions."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from radcommon.auth import record_session_ended
from radcommon.canonical import canonical_json
from radcommon.consumer import EventHandler
from radcommon.contracts import Event, ReportSubmittedV1, SessionEndedV1, UserRegisteredV1
from radcommon.messaging import PermanentFailure
from signature.domain.model import SignableVersion
from signature.service_layer.unit_of_work import SignatureUnitOfWork

log = logging.getLogger(__name__)


async def keep_submitted_version(event: ReportSubmittedV1, uow: SignatureUnitOfWork) -> None:
    """Keep the version exactly as submitted; a version that does not hash to its own digest, or that comes
    back with other content, is never signable (dead-lettered for an operator to look at)."""
    what = f"version {event.version} of report {event.report_id}" + (
        f" (addendum {event.addendum_id})" if event.addendum_id else "")
    if event.content is None or event.content_sha256 is None:
        raise PermanentFailure(f"{what} was submitted without its content and digest: nothing to sign")
    try:
        canonical = canonical_json(event.content)
    except ValueError as error:
        raise PermanentFailure(f"{what}: {error}") from error
    if hashlib.sha256(canonical).hexdigest() != event.content_sha256:
        raise PermanentFailure(f"{what}: the content does not hash to the digest sent with it")
    known = await uow.versions.get(event.organization_id, event.report_id, event.addendum_id, event.version)
    if known is not None:
        if known.content_sha256 != event.content_sha256:
            raise PermanentFailure(f"{what} was submitted before with other content; the first one stands")
        return
    uow.versions.add(SignableVersion(
        organization_id=event.organization_id, report_id=event.report_id, addendum_id=event.addendum_id,
        version=event.version, content=canonical.decode(), content_sha256=event.content_sha256,
        author_id=event.author_id, accession_number=event.accession_number,
        study_instance_uid=event.study_instance_uid, submitted_at=event.occurred_at))
    log.info("version kept for signing", extra={"report_id": str(event.report_id), "version": event.version})


async def know_signer(event: UserRegisteredV1, uow: SignatureUnitOfWork) -> None:
    await uow.signers.save(event.organization_id, event.user_id, event.full_name, event.email)


EVENT_HANDLERS: dict[type[Event], Sequence[EventHandler]] = {
    ReportSubmittedV1: [keep_submitted_version],
    UserRegisteredV1: [know_signer],
    SessionEndedV1: [record_session_ended],
}
