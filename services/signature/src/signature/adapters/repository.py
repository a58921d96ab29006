from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import delete, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from radcommon.contracts import SignatureMeaningValues
from signature.adapters.tables import REPORT_ITSELF, SignableVersionRow, SignatureRow, SignerRow, UsedStepUpRow
from signature.domain.model import SignableVersion, Signature

#: Spent step-up tokens are kept this long past their expiry, beyond the verifier's leeway for clock skew.
FORGET_AFTER = timedelta(minutes=5)


def as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; everything stored is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def addendum_key(addendum_id: UUID | None) -> str:
    return REPORT_ITSELF if addendum_id is None else str(addendum_id)


def addendum_of(key: str) -> UUID | None:
    return None if key == REPORT_ITSELF else UUID(key)


class SqlVersionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, organization_id: UUID, report_id: UUID, addendum_id: UUID | None, version: int,
                  *, lock: bool = False) -> SignableVersion | None:
        """The version; ``lock`` holds it until the transaction ends (PostgreSQL), so signings of it queue up."""
        statement = select(SignableVersionRow).where(
            col(SignableVersionRow.organization_id) == organization_id,
            col(SignableVersionRow.report_id) == report_id,
            col(SignableVersionRow.addendum_key) == addendum_key(addendum_id),
            col(SignableVersionRow.version) == version)
        row = (await self.session.execute(statement.with_for_update() if lock else statement)).scalar_one_or_none()
        return None if row is None else to_version(row)

    async def newest(self, organization_id: UUID, report_id: UUID, addendum_id: UUID | None) -> int | None:
        return await self.session.scalar(select(func.max(SignableVersionRow.version)).where(
            col(SignableVersionRow.organization_id) == organization_id,
            col(SignableVersionRow.report_id) == report_id,
            col(SignableVersionRow.addendum_key) == addendum_key(addendum_id)))

    def add(self, version: SignableVersion) -> None:
        self.session.add(SignableVersionRow(
            organization_id=version.organization_id, report_id=version.report_id,
            addendum_key=addendum_key(version.addendum_id), version=version.version, content=version.content,
            content_sha256=version.content_sha256, author_id=version.author_id,
            accession_number=version.accession_number, study_instance_uid=version.study_instance_uid,
            submitted_at=version.submitted_at))


def to_version(row: SignableVersionRow) -> SignableVersion:
    return SignableVersion(
        organization_id=row.organization_id, report_id=row.report_id, addendum_id=addendum_of(row.addendum_key),
        version=row.version, content=row.content, content_sha256=row.content_sha256, author_id=row.author_id,
        accession_number=row.accession_number, study_instance_uid=row.study_instance_uid,
        submitted_at=as_utc(row.submitted_at))


class SqlSignatureRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_version(self, organization_id: UUID, report_id: UUID, addendum_id: UUID | None,
                         version: int) -> list[Signature]:
        rows = (await self.session.execute(select(SignatureRow).where(
            col(SignatureRow.organization_id) == organization_id, col(SignatureRow.report_id) == report_id,
            col(SignatureRow.addendum_key) == addendum_key(addendum_id), col(SignatureRow.version) == version)
            .order_by(col(SignatureRow.signed_at)))).scalars()
        return [to_signature(row) for row in rows]

    def add(self, signature: Signature) -> None:
        self.session.add(SignatureRow(
            id=signature.id, organization_id=signature.organization_id, report_id=signature.report_id,
            addendum_key=addendum_key(signature.addendum_id), version=signature.version,
            content_sha256=signature.content_sha256, signer_id=signature.signer_id,
            signer_name=signature.signer_name, meaning=signature.meaning.value, signed_at=signature.signed_at,
            key_id=signature.key_id, algorithm=signature.algorithm, manifest=signature.manifest.decode(),
            signature=signature.signature))


def to_signature(row: SignatureRow) -> Signature:
    return Signature(
        id=row.id, organization_id=row.organization_id, report_id=row.report_id,
        addendum_id=addendum_of(row.addendum_key), version=row.version, content_sha256=row.content_sha256,
        signer_id=row.signer_id, signer_name=row.signer_name, meaning=SignatureMeaningValues(row.meaning),
        signed_at=as_utc(row.signed_at), key_id=row.key_id, algorithm=row.algorithm, manifest=row.manifest.encode(),
        signature=bytes(row.signature))


class SqlSignerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def printed_name(self, organization_id: UUID, user_id: UUID) -> str | None:
        """The full name identity knows, else the e-mail address; None when identity has not told us of them."""
        row = await self.session.get(SignerRow, (organization_id, user_id))
        return None if row is None else (row.full_name or row.email or None)

    async def save(self, organization_id: UUID, user_id: UUID, full_name: str, email: str) -> None:
        await self.session.merge(SignerRow(organization_id=organization_id, user_id=user_id, full_name=full_name,
                                           email=email))


class SqlStepUpLedger:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def spend(self, token_id: str, user_id: UUID, organization_id: UUID, expires_at: datetime,
                    now: datetime) -> bool:
        """Record the token as used; False when it was used before. A concurrent transaction spending the
        same token waits for this one (PostgreSQL, unique key) and then finds it spent."""
        table = UsedStepUpRow.__table__  # type: ignore[attr-defined]
        dialect = postgresql if self.session.get_bind().dialect.name == "postgresql" else sqlite
        statement = dialect.insert(table).values(token_id=token_id, user_id=user_id, organization_id=organization_id,
                                                 used_at=now, expires_at=expires_at)
        spent = await self.session.execute(
            statement.on_conflict_do_nothing(index_elements=[table.c.token_id]).returning(table.c.token_id))
        first = spent.first() is not None
        await self.session.execute(delete(UsedStepUpRow).where(col(UsedStepUpRow.expires_at) < now - FORGET_AFTER))
        return first
