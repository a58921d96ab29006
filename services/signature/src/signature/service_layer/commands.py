"""What people ask of the signature service: sign a version, rotate and revoke keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

from radcommon.auth import Principal, TokenVerifier
from radcommon.canonical import canonical_json
from radcommon.contracts import ReportSignedV1, SignatureMeaningValues
from signature.adapters.tables import SigningKeyRow
from signature.domain.audit import AuditActionValues, AuditEntry
from signature.domain.model import (
    ALGORITHM,
    SignableVersion,
    Signature,
    SignatureError,
    StepUpRefused,
    UnknownVersion,
    check_may_sign,
    manifest_claims,
)
from signature.service_layer.keyring import Actor, KeyRing
from signature.service_layer.step_up import verified_step_up
from signature.service_layer.unit_of_work import SignatureUnitOfWork

NAME_LENGTH = 200


@dataclass(frozen=True)
class SignReport:
    signer: Principal
    step_up_token: str | None
    report_id: UUID
    version: int
    addendum_id: UUID | None
    meaning: SignatureMeaningValues


async def sign_report(uow: SignatureUnitOfWork, keyring: KeyRing, verifier: TokenVerifier, cmd: SignReport,
                      now: datetime | None = None) -> tuple[Signature, SignableVersion]:
    """Sign the version (returned with it), or refuse; a refusal of a known version is written to the audit trail, and a
    step-up token that got as far as being checked is spent either way."""
    now = now or datetime.now(UTC)
    signer, organization_id = cmd.signer, cmd.signer.organization_id
    step_up: Principal | None = None
    refusal: StepUpRefused | None = None
    try:
        step_up = await verified_step_up(verifier, cmd.step_up_token, signer)
    except StepUpRefused as error:
        refusal = error
    async with uow:
        subject = await uow.versions.get(organization_id, cmd.report_id, cmd.addendum_id, cmd.version, lock=True)
        name = ((await uow.signers.printed_name(organization_id, signer.user_id)) or signer.email)[:NAME_LENGTH]
        try:
            if refusal is not None:
                raise refusal
            if subject is None:
                raise UnknownVersion(f"no submitted version {cmd.version} of this report in your organisation")
            assert step_up is not None
            if not await uow.step_ups.spend(step_up.token_id, signer.user_id, organization_id, step_up.expires_at,
                                            now):
                raise StepUpRefused("step_up_reused", "This step-up token was used already: re-authenticate to "
                                                      "sign again.")
            newest = await uow.versions.newest(organization_id, cmd.report_id, cmd.addendum_id) or subject.version
            existing = await uow.signatures.of_version(organization_id, cmd.report_id, cmd.addendum_id, cmd.version)
            check_may_sign(subject, newest, existing, signer.user_id, cmd.meaning)
        except SignatureError as error:
            if subject is not None:
                uow.audit.append(_entry(subject, AuditActionValues.REFUSED, signer.user_id, name, cmd.meaning, now,
                                        reason=error.code, detail=str(error)))
                await uow.commit()
            raise
        key_id, private_key = await keyring.signing_key(uow)
        signature_id = uuid4()
        manifest = canonical_json(manifest_claims(
            signature_id=signature_id, organization_id=organization_id, report_id=subject.report_id,
            version=subject.version, addendum_id=subject.addendum_id, content_sha256=subject.content_sha256,
            signer_id=signer.user_id, signer_name=name, meaning=cmd.meaning, signed_at=now, key_id=key_id,
            algorithm=ALGORITHM))
        signature = Signature(
            id=signature_id, organization_id=organization_id, report_id=subject.report_id,
            addendum_id=subject.addendum_id, version=subject.version, content_sha256=subject.content_sha256,
            signer_id=signer.user_id, signer_name=name, meaning=cmd.meaning, signed_at=now, key_id=key_id,
            algorithm=ALGORITHM, manifest=manifest, signature=private_key.sign(manifest))
        uow.signatures.add(signature)
        uow.audit.append(_entry(subject, AuditActionValues.SIGNED, signer.user_id, name, cmd.meaning, now,
                                signature_id=signature_id, key_id=key_id))
        uow.publish(ReportSignedV1(
            organization_id=organization_id, signature_id=signature_id, report_id=subject.report_id,
            version=subject.version, addendum_id=subject.addendum_id, content_sha256=subject.content_sha256,
            signer_id=signer.user_id, signer_name=name, meaning=cmd.meaning, signed_at=now, key_id=key_id))
        await uow.commit()
    return signature, subject


def _entry(subject: SignableVersion, action: AuditActionValues, actor_id: UUID, actor_name: str,
           meaning: SignatureMeaningValues, now: datetime, *, signature_id: UUID | None = None, key_id: str = "",
           reason: str = "", detail: str = "") -> AuditEntry:
    return AuditEntry(organization_id=subject.organization_id, report_id=subject.report_id,
                      addendum_id=subject.addendum_id, version=subject.version, action=action, actor_id=actor_id,
                      actor_name=actor_name, meaning=meaning, occurred_at=now, content_sha256=subject.content_sha256,
                      signature_id=signature_id, key_id=key_id, reason=reason, detail=detail)


async def actor_of(uow: SignatureUnitOfWork, principal: Principal) -> Actor:
    name = await uow.signers.printed_name(principal.organization_id, principal.user_id)
    return Actor(principal.user_id, principal.organization_id, name or principal.email)


async def rotate_keys(uow: SignatureUnitOfWork, keyring: KeyRing, principal: Principal,
                      now: datetime | None = None) -> SigningKeyRow:
    async with uow:
        key = await keyring.rotate(uow, now or datetime.now(UTC), await actor_of(uow, principal))
        await uow.commit()
    return key


async def revoke_key(uow: SignatureUnitOfWork, keyring: KeyRing, principal: Principal, kid: str, reason: str,
                     now: datetime | None = None) -> SigningKeyRow:
    async with uow:
        key = await keyring.revoke(uow, kid, reason, now or datetime.now(UTC), await actor_of(uow, principal))
        await uow.commit()
    return key


async def ensure_signing_key(uow: SignatureUnitOfWork, keyring: KeyRing, now: datetime | None = None) -> None:
    async with uow:
        await keyring.ensure_key(uow, now or datetime.now(UTC))
        await uow.commit()


async def rotate_if_due(uow: SignatureUnitOfWork, keyring: KeyRing, now: datetime | None = None) -> bool:
    async with uow:
        rotated = await keyring.rotate_if_due(uow, now or datetime.now(UTC))
        await uow.commit()
    return rotated is not None
