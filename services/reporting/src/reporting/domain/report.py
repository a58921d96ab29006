"""A report and its versions: drafted, submitted (preliminary), signed (final), amended by addenda.

Every saved change is a new immutable version. What is signed is one version's canonical content
(RFC 8785) by its SHA-256; the report becomes final only on a signature of exactly the version it
submitted last, digest and all. After that its text never changes: corrections are addenda, each
signed on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from radcommon.canonical import content_sha256
from radcommon.contracts import CriticalFindingCategoryValues, ReportSignedV1, SignatureMeaningValues
from reporting.domain.templates import ContentInvalid, Template
from reporting.domain.worklist import WorklistItem

MAX_ADDENDUM = 20_000


class ReportStatusValues(StrEnum):
    DRAFT = "draft"
    PRELIMINARY = "preliminary"  # submitted, waiting for its signature
    FINAL = "final"
    AMENDED = "amended"  # final, with at least one signed addendum


SIGNED = frozenset({ReportStatusValues.FINAL, ReportStatusValues.AMENDED})


class ReportError(Exception):
    pass


class NotClaimed(ReportError):
    pass


class OpenReportExists(ReportError):
    pass


class EditedElsewhere(ReportError):
    pass


class ReportIsFinal(ReportError):
    pass


class NotSigned(ReportError):
    pass


class NotTheAuthor(ReportError):
    pass


class MissingSections(ContentInvalid):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReportVersion:
    report_id: UUID
    version: int
    author_id: UUID
    content: dict[str, Any]
    content_sha256: str
    created_at: datetime

    @classmethod
    def of(cls, report_id: UUID, version: int, author_id: UUID, content: dict[str, Any],
           now: datetime) -> ReportVersion:
        return cls(report_id, version, author_id, content, content_sha256(content), now)


@dataclass(frozen=True)
class Signature:
    """What a signature event tells of a signing (21 CFR 11.50: printed name, date and time, meaning)."""

    signature_id: UUID
    organization_id: UUID
    report_id: UUID
    addendum_id: UUID | None
    version: int
    content_sha256: str
    signer_id: UUID
    signer_name: str
    meaning: SignatureMeaningValues
    signed_at: datetime

    @classmethod
    def from_event(cls, event: ReportSignedV1) -> Signature:
        return cls(event.signature_id, event.organization_id, event.report_id, event.addendum_id, event.version,
                   event.content_sha256, event.signer_id, event.signer_name, event.meaning,
                   event.signed_at.astimezone(UTC))


@dataclass(frozen=True)
class Integrity:
    """Whether stored content still hashes to what was signed (a row changed behind our back does not)."""

    signed_digest: str
    current_digest: str

    @property
    def intact(self) -> bool:
        return self.signed_digest == self.current_digest

    @classmethod
    def of(cls, signed_digest: str, stored_content: Any) -> Integrity:
        try:
            current = content_sha256(stored_content)
        except ValueError:
            current = "not canonicalisable"
        return cls(signed_digest, current)


class AddendumStatusValues(StrEnum):
    PENDING = "pending"  # waiting for its signature
    SIGNED = "signed"


@dataclass
class Addendum:
    organization_id: UUID
    report_id: UUID
    author_id: UUID
    text: str
    of_version: int
    created_at: datetime = field(default_factory=_now)
    id: UUID = field(default_factory=uuid4)
    status: AddendumStatusValues = AddendumStatusValues.PENDING
    content_sha256: str = ""
    signature_id: UUID | None = None
    signed_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.text.strip() or len(self.text) > MAX_ADDENDUM:
            raise ContentInvalid(f"an addendum has 1 to {MAX_ADDENDUM} characters")
        self.content_sha256 = self.content_sha256 or content_sha256(self.content)

    @property
    def content(self) -> dict[str, Any]:
        """What its signature covers: the text, and which report and final version it amends."""
        return {"addendum": self.text, "report_id": str(self.report_id), "of_version": self.of_version}


@dataclass
class CriticalFinding:
    organization_id: UUID
    report_id: UUID
    category: CriticalFindingCategoryValues
    description: str
    referring_physician_name: str
    referring_physician_contact: str
    flagged_by: UUID
    flagged_at: datetime = field(default_factory=_now)
    id: UUID = field(default_factory=uuid4)


@dataclass
class Report:
    organization_id: UUID
    worklist_item_id: UUID
    study_instance_uid: str
    accession_number: str
    patient_name: str
    patient_id: str
    referring_physician_name: str
    template_id: UUID
    template_version: int
    author_id: UUID
    id: UUID = field(default_factory=uuid4)
    status: ReportStatusValues = ReportStatusValues.DRAFT
    version: int = 1  # the newest
    submitted_version: int | None = None
    submitted_sha256: str | None = None
    final_version: int | None = None
    signature_id: UUID | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    submitted_at: datetime | None = None
    finalized_at: datetime | None = None

    @classmethod
    def start(cls, item: WorklistItem, template: Template, author_id: UUID,
              now: datetime) -> tuple[Report, ReportVersion]:
        """Version 1 is the template's defaults; only the radiologist holding the item's claim starts it."""
        if not item.claimed_by_now(author_id, now):
            raise NotClaimed("claim it first: the worklist does not show this study claimed by you "
                             "(a claim made a moment ago can take a second to arrive)")
        report = cls(organization_id=item.organization_id, worklist_item_id=item.id,
                     study_instance_uid=item.study_instance_uid, accession_number=item.accession_number,
                     patient_name=item.patient_name, patient_id=item.patient_id,
                     referring_physician_name=item.referring_physician_name, template_id=template.id,
                     template_version=template.version, author_id=author_id, created_at=now, updated_at=now)
        return report, ReportVersion.of(report.id, 1, author_id, template.default_content(), now)

    @property
    def signed(self) -> bool:
        return self.status in SIGNED

    def save_draft(self, author_id: UUID, content: dict[str, Any], base_version: int, newest: ReportVersion,
                   now: datetime) -> ReportVersion | None:
        """The next version; ``base_version`` is the one the author edited, which must be the newest.
        None when ``content`` is the newest version's (an autosave with nothing new saves nothing)."""
        self._editable_by(author_id)
        self._newest(base_version)
        if content_sha256(content) == newest.content_sha256:
            return None
        self.version += 1
        self.updated_at = now
        return ReportVersion.of(self.id, self.version, author_id, content, now)

    def submit(self, author_id: UUID, version: int, newest: ReportVersion, missing: list[str], now: datetime) -> bool:
        """Preliminary, waiting for a signature of ``version`` (the newest); False when it was submitted already."""
        self._editable_by(author_id)
        self._newest(version)
        if missing:
            raise MissingSections(f"required sections are empty: {', '.join(missing)}")
        if self.status is ReportStatusValues.PRELIMINARY and self.submitted_version == version:
            return False
        self.status = ReportStatusValues.PRELIMINARY
        self.submitted_version, self.submitted_sha256 = newest.version, newest.content_sha256
        self.submitted_at = self.updated_at = now
        return True

    def sign(self, signature: Signature) -> bool:
        """Final, when ``signature`` covers exactly the submitted version as its author's or approver's; a
        "reviewed" signature, or anything else, changes nothing (21 CFR 11.50: the meaning matters)."""
        if (self.status is not ReportStatusValues.PRELIMINARY or signature.meaning == SignatureMeaningValues.REVIEWED
                or (signature.version, signature.content_sha256) != (self.submitted_version, self.submitted_sha256)):
            return False
        self.status = ReportStatusValues.FINAL
        self.final_version, self.signature_id = signature.version, signature.signature_id
        self.finalized_at = self.updated_at = signature.signed_at
        return True

    def add_addendum(self, author_id: UUID, text: str, now: datetime) -> Addendum:
        if not self.signed or self.final_version is None:
            raise NotSigned("only a final report takes addenda: until then, edit the draft")
        return Addendum(self.organization_id, self.id, author_id, text, self.final_version, created_at=now)

    def sign_addendum(self, addendum: Addendum, signature: Signature) -> bool:
        if (addendum.report_id != self.id or addendum.status is AddendumStatusValues.SIGNED
                or signature.content_sha256 != addendum.content_sha256):
            return False
        addendum.status = AddendumStatusValues.SIGNED
        addendum.signature_id, addendum.signed_at = signature.signature_id, signature.signed_at
        self.status = ReportStatusValues.AMENDED
        self.updated_at = signature.signed_at
        return True

    def flag_critical_finding(self, flagged_by: UUID, category: CriticalFindingCategoryValues, description: str,
                              referring_physician_name: str, referring_physician_contact: str,
                              now: datetime) -> CriticalFinding:
        if flagged_by != self.author_id:
            raise NotTheAuthor("only the report's author flags its critical findings")
        if not description.strip():
            raise ContentInvalid("describe the finding")
        return CriticalFinding(self.organization_id, self.id, category, description,
                               referring_physician_name or self.referring_physician_name,
                               referring_physician_contact, flagged_by, flagged_at=now)

    def _editable_by(self, author_id: UUID) -> None:
        if self.signed:
            raise ReportIsFinal("final: add an addendum")
        if author_id != self.author_id:
            raise NotTheAuthor("only the report's author edits or submits it")

    def _newest(self, version: int) -> None:
        if version != self.version:
            raise EditedElsewhere(f"edited elsewhere: version {self.version} is the newest, not {version}; "
                                  "reload it and apply your change again")
