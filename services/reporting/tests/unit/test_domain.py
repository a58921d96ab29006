from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from radcommon.canonical import content_sha256
from radcommon.contracts import SignatureMeaningValues, WorklistStatusValues
from reporting.domain.default_templates import default_templates
from reporting.domain.quality import RadpeerScoreValues, radpeer_summary
from reporting.domain.report import (
    EditedElsewhere,
    Integrity,
    MissingSections,
    NotClaimed,
    Report,
    ReportIsFinal,
    ReportStatusValues,
    Signature,
)
from reporting.domain.templates import (
    ContentInvalid,
    Section,
    SectionKindValues,
    Template,
    TemplateError,
    missing_sections,
    normalized_content,
)
from reporting.domain.worklist import WorklistItem
from reporting.entrypoints.http import negotiate

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ALICE, ORG = uuid4(), uuid4()


def a_template() -> Template:
    return next(t for t in default_templates(ORG, NOW) if t.name == "CT Head")


def an_item(**changes: object) -> WorklistItem:
    item = WorklistItem(id=uuid4(), organization_id=ORG, sequence=1, study_instance_uid="1.2.3",
                        status=WorklistStatusValues.IN_PROGRESS, claimed_by=ALICE,
                        claim_expires_at=NOW + timedelta(minutes=5))
    for name, value in changes.items():
        setattr(item, name, value)
    return item


def a_signature(report: Report, version: int, digest: str) -> Signature:
    return Signature(uuid4(), ORG, report.id, None, version, digest, ALICE, "Dr A", SignatureMeaningValues.AUTHORED,
                     NOW)


@pytest.mark.parametrize("changes", [{"claimed_by": uuid4()}, {"status": WorklistStatusValues.ASSIGNED},
                                     {"claim_expires_at": NOW}])
def test_a_report_needs_a_live_claim(changes: dict[str, object]) -> None:
    with pytest.raises(NotClaimed):
        Report.start(an_item(**changes), a_template(), ALICE, NOW)


def test_versions_follow_one_another_and_a_signature_must_match_the_submission() -> None:
    template = a_template()
    report, first = Report.start(an_item(), template, ALICE, NOW)
    assert first.content == template.default_content() and first.content_sha256 == content_sha256(first.content)
    assert report.save_draft(ALICE, dict(first.content), 1, first, NOW) is None  # nothing new
    changed = normalized_content(template, {"sections": {"findings": "x", "impression": "y"}})
    second = report.save_draft(ALICE, changed, 1, first, NOW)
    assert second is not None and second.version == report.version == 2
    with pytest.raises(EditedElsewhere):
        report.save_draft(ALICE, changed, 1, second, NOW)
    assert report.submit(ALICE, 2, second, [], NOW)
    assert not report.submit(ALICE, 2, second, [], NOW)  # the same version again: nothing to announce
    assert not report.sign(a_signature(report, 1, first.content_sha256))
    assert not report.sign(a_signature(report, 2, first.content_sha256))
    assert report.sign(a_signature(report, 2, second.content_sha256))
    assert (report.status, report.final_version) == (ReportStatusValues.FINAL, 2)
    assert not report.sign(a_signature(report, 2, second.content_sha256))
    with pytest.raises(ReportIsFinal):
        report.save_draft(ALICE, changed, 2, second, NOW)


def test_required_sections_are_checked_on_submission() -> None:
    template = next(t for t in default_templates(ORG, NOW) if t.name == "General")
    report, first = Report.start(an_item(), template, ALICE, NOW)
    assert missing_sections(template, first.content) == ["findings", "impression"]
    with pytest.raises(MissingSections):
        report.submit(ALICE, 1, first, missing_sections(template, first.content), NOW)
    assert report.status is ReportStatusValues.DRAFT


@pytest.mark.parametrize("content", [
    {"sections": {"nope": "x"}}, {"sections": {"contrast": "oral"}}, {"sections": {"findings": 1}},
    {"sections": {}, "annotations": [{"kind": "line", "sop_instance_uid": "1.2", "coordinates": [[1, 2]]}]},
    {"sections": {}, "annotations": [{"kind": "point", "sop_instance_uid": "x", "coordinates": [[1, 2]]}]},
    {"sections": {}, "annotations": [{"kind": "point", "sop_instance_uid": "1.2", "coordinates": [[1, True]]}]},
    {"sections": {}, "annotations": [{"kind": "point", "sop_instance_uid": "1.2", "coordinates": [[1, 2]],
                                      "frame_number": 0}]},
    {"sections": {}, "extra": 1},
])
def test_content_the_template_does_not_allow_is_refused(content: dict[str, object]) -> None:
    with pytest.raises(ContentInvalid):
        normalized_content(a_template(), content)


def test_numbers_must_be_finite_and_exact_in_json() -> None:
    levels = Section("levels", "Levels", SectionKindValues.NUMBER)
    for bad in (float("nan"), float("inf"), 2**60, True, "3"):
        with pytest.raises(ContentInvalid):
            levels.check(bad)
    levels.check(3.5)
    with pytest.raises(TemplateError):
        Section("levels", "Levels", SectionKindValues.NUMBER, default="five")


def test_integrity_compares_the_signed_digest_with_the_content_now() -> None:
    content = {"sections": {"findings": "Normal."}, "annotations": []}
    assert Integrity.of(content_sha256(content), content).intact
    assert not Integrity.of(content_sha256(content), {**content, "sections": {"findings": "Abnormal."}}).intact


def test_radpeer_summary_counts_significant_discrepancies() -> None:
    summary = radpeer_summary([RadpeerScoreValues("1"), RadpeerScoreValues("2a"), RadpeerScoreValues("2b"),
                               RadpeerScoreValues("3b")])
    assert (summary["reviews"], summary["significant"], summary["significant_share"]) == (4, 2, 0.5)
    assert radpeer_summary([])["significant_share"] is None


@pytest.mark.parametrize(("accept", "chosen"), [
    ("", "text/plain"), ("*/*", "text/plain"), ("text/html", "text/html"),
    ("text/html,application/xhtml+xml,*/*;q=0.8", "text/html"), ("text/html;q=0.5, text/plain", "text/plain"),
    ("text/*;q=0.1, text/html", "text/html"), ("application/json", None), ("text/plain;q=0, text/html;q=0", None),
])
def test_the_rendering_is_negotiated(accept: str, chosen: str | None) -> None:
    assert negotiate(accept) == chosen
