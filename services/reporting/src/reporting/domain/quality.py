"""Quality of final reports: disputes raised by their readers, and peer review (ACR RADPEER)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from radcommon.contracts import DisputeOutcomeValues
from reporting.domain.report import NotSigned, NotTheAuthor, Report, ReportError
from reporting.domain.templates import ContentInvalid

MAX_TEXT = 2000


def _now() -> datetime:
    return datetime.now(UTC)


def _text(value: str, what: str) -> str:
    if not value.strip() or len(value) > MAX_TEXT:
        raise ContentInvalid(f"{what}: 1 to {MAX_TEXT} characters")
    return value


class DisputeClosed(ReportError):
    pass


class DisputeStatusValues(StrEnum):
    OPEN = "open"
    ANSWERED = "answered"  # the author responded; a manager decides
    CLOSED = "closed"


@dataclass
class Dispute:
    organization_id: UUID
    report_id: UUID
    raised_by: UUID
    reason: str
    raised_at: datetime = field(default_factory=_now)
    id: UUID = field(default_factory=uuid4)
    status: DisputeStatusValues = DisputeStatusValues.OPEN
    response: str | None = None
    responded_by: UUID | None = None
    responded_at: datetime | None = None
    outcome: DisputeOutcomeValues | None = None
    note: str | None = None
    resolved_by: UUID | None = None
    resolved_at: datetime | None = None

    @classmethod
    def raise_against(cls, report: Report, raised_by: UUID, reason: str, now: datetime) -> Dispute:
        if not report.signed:
            raise NotSigned("only a final report can be disputed")
        return cls(report.organization_id, report.id, raised_by, _text(reason, "a reason"), raised_at=now)

    def respond(self, report: Report, author_id: UUID, text: str, now: datetime) -> None:
        """The author's answer; a later answer replaces an earlier one while the dispute is undecided."""
        if author_id != report.author_id:
            raise NotTheAuthor("only the report's author responds to a dispute")
        self._undecided()
        self.response, self.responded_by, self.responded_at = _text(text, "a response"), author_id, now
        self.status = DisputeStatusValues.ANSWERED

    def resolve(self, manager_id: UUID, outcome: DisputeOutcomeValues, note: str, now: datetime) -> None:
        self._undecided()
        if len(note) > MAX_TEXT:
            raise ContentInvalid(f"a note has at most {MAX_TEXT} characters")
        self.outcome, self.note, self.resolved_by, self.resolved_at = outcome, note, manager_id, now
        self.status = DisputeStatusValues.CLOSED

    def _undecided(self) -> None:
        if self.status is DisputeStatusValues.CLOSED:
            raise DisputeClosed(f"the dispute was decided already ({self.outcome})")


class RadpeerScoreValues(StrEnum):
    """ACR RADPEER scores of a reviewer's agreement with the original interpretation.

    1: concur. 2: a discrepancy in interpretation, the finding not ordinarily expected to be made
    (an understandable miss). 3: a discrepancy that should be made most of the time. The letter says
    whether the discrepancy is unlikely (a) or likely (b) to be clinically significant.
    """

    CONCUR = "1"
    UNDERSTANDABLE_MISS = "2a"
    UNDERSTANDABLE_MISS_SIGNIFICANT = "2b"
    MISS = "3a"
    MISS_SIGNIFICANT = "3b"


#: The discrepancies a programme reports on: clinically significant, or ones that should have been made.
SIGNIFICANT = frozenset({RadpeerScoreValues.UNDERSTANDABLE_MISS_SIGNIFICANT, RadpeerScoreValues.MISS,
                         RadpeerScoreValues.MISS_SIGNIFICANT})


class SelfReview(ReportError):
    pass


class AlreadyReviewed(ReportError):
    pass


@dataclass
class PeerReview:
    organization_id: UUID
    report_id: UUID
    radiologist_id: UUID  # whose interpretation is scored: the report's author
    reviewer_id: UUID
    score: RadpeerScoreValues
    comment: str
    reviewed_at: datetime = field(default_factory=_now)
    id: UUID = field(default_factory=uuid4)

    @classmethod
    def of(cls, report: Report, reviewer_id: UUID, score: RadpeerScoreValues, comment: str,
           earlier_reviewers: Iterable[UUID], now: datetime) -> PeerReview:
        if reviewer_id == report.author_id:
            raise SelfReview("a radiologist does not peer-review their own report")
        if not report.signed:
            raise NotSigned("only a final report is peer-reviewed")
        if reviewer_id in set(earlier_reviewers):
            raise AlreadyReviewed("you reviewed this report already")
        if len(comment) > MAX_TEXT:
            raise ContentInvalid(f"a comment has at most {MAX_TEXT} characters")
        return cls(report.organization_id, report.id, report.author_id, reviewer_id, score, comment, reviewed_at=now)


def radpeer_summary(scores: Iterable[RadpeerScoreValues]) -> dict[str, Any]:
    """Counts per score and the share of significant discrepancies (2b, 3a, 3b)."""
    counts = {score.value: 0 for score in RadpeerScoreValues}
    for score in scores:
        counts[score.value] += 1
    total = sum(counts.values())
    significant = sum(counts[s.value] for s in SIGNIFICANT)
    return {"reviews": total, "scores": counts, "significant": significant,
            "significant_share": round(significant / total, 4) if total else None}
