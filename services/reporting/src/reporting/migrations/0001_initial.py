"""reporting: templates, reports and their versions, addenda, signatures, critical findings, disputes,
peer reviews; the worklist and ended-sessions projections; outbox and inbox

Revision ID: reporting_0001
"""
import sqlalchemy as sa
from alembic import op

from radcommon.auth import create_revocation_table
from radcommon.migrations import create_messaging_tables

revision = "reporting_0001"
down_revision = None
branch_labels = None
depends_on = None

OPEN_REPORT = "status IN ('draft', 'preliminary')"
TABLES = ("peer_reviews", "report_disputes", "critical_findings", "report_signatures", "report_addenda",
          "report_versions", "reports", "reporting_worklist_items", "report_template_seeds",
          "report_template_versions", "report_templates", "revoked_sessions", "inbox", "outbox")


def moment(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def org() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("organization_id", sa.Uuid, nullable=False)


def upgrade() -> None:
    create_messaging_tables(op)
    create_revocation_table(op)
    op.create_table(
        "report_templates",
        sa.Column("id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        moment("updated_at", nullable=False),
        sa.UniqueConstraint("organization_id", "name"),
    )
    op.create_table(
        "report_template_versions",
        sa.Column("template_id", sa.Uuid, sa.ForeignKey("report_templates.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        org(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("sections", sa.JSON, nullable=False),
        sa.Column("created_by", sa.Uuid, nullable=True),
        moment("created_at", nullable=False),
    )
    op.create_table(
        "report_template_seeds",
        sa.Column("organization_id", sa.Uuid, primary_key=True),
        moment("seeded_at", nullable=False),
    )
    op.create_table(
        "reporting_worklist_items",
        sa.Column("id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee_id", sa.Uuid, nullable=True),
        sa.Column("claimed_by", sa.Uuid, nullable=True),
        moment("claim_expires_at"),
        sa.Column("modalities", sa.JSON, nullable=False),
        sa.Column("body_parts", sa.JSON, nullable=False),
        sa.Column("referring_physician_name", sa.String(324), nullable=False),
        sa.Column("patient_name", sa.String(324), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
    )
    op.create_index("reporting_worklist_items_org", "reporting_worklist_items", ["organization_id"])
    op.create_table(
        "reports",
        sa.Column("id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("worklist_item_id", sa.Uuid, nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("patient_name", sa.String(324), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("referring_physician_name", sa.String(324), nullable=False),
        sa.Column("template_id", sa.Uuid, nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("author_id", sa.Uuid, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("submitted_version", sa.Integer, nullable=True),
        sa.Column("submitted_sha256", sa.String(64), nullable=True),
        sa.Column("final_version", sa.Integer, nullable=True),
        sa.Column("signature_id", sa.Uuid, nullable=True),
        moment("created_at", nullable=False),
        moment("updated_at", nullable=False),
        moment("submitted_at"),
        moment("finalized_at"),
        sa.ForeignKeyConstraint(["template_id", "template_version"],
                                ["report_template_versions.template_id", "report_template_versions.version"]),
    )
    op.create_index("reports_one_open_per_study", "reports", ["organization_id", "study_instance_uid"], unique=True,
                    postgresql_where=sa.text(OPEN_REPORT), sqlite_where=sa.text(OPEN_REPORT))
    op.create_index("reports_org_study", "reports", ["organization_id", "study_instance_uid"])
    op.create_index("reports_org_status", "reports", ["organization_id", "status", "updated_at"])
    op.create_table(
        "report_versions",
        sa.Column("report_id", sa.Uuid, sa.ForeignKey("reports.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        org(),
        sa.Column("author_id", sa.Uuid, nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        moment("created_at", nullable=False),
    )
    op.create_table(
        "report_addenda",
        sa.Column("id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("report_id", sa.Uuid, sa.ForeignKey("reports.id"), nullable=False, index=True),
        sa.Column("author_id", sa.Uuid, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("of_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("signature_id", sa.Uuid, nullable=True),
        moment("created_at", nullable=False),
        moment("signed_at"),
    )
    op.create_table(
        "report_signatures",
        sa.Column("signature_id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("report_id", sa.Uuid, sa.ForeignKey("reports.id"), nullable=False, index=True),
        sa.Column("addendum_id", sa.Uuid, sa.ForeignKey("report_addenda.id"), nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("signer_id", sa.Uuid, nullable=False),
        sa.Column("signer_name", sa.String(200), nullable=False),
        sa.Column("meaning", sa.String(16), nullable=False),
        moment("signed_at", nullable=False),
    )
    op.create_table(
        "critical_findings",
        sa.Column("id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("report_id", sa.Uuid, sa.ForeignKey("reports.id"), nullable=False, index=True),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("description", sa.String(2000), nullable=False),
        sa.Column("referring_physician_name", sa.String(324), nullable=False),
        sa.Column("referring_physician_contact", sa.String(254), nullable=False),
        sa.Column("flagged_by", sa.Uuid, nullable=False),
        moment("flagged_at", nullable=False),
    )
    op.create_table(
        "report_disputes",
        sa.Column("id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("report_id", sa.Uuid, sa.ForeignKey("reports.id"), nullable=False, index=True),
        sa.Column("raised_by", sa.Uuid, nullable=False),
        sa.Column("reason", sa.String(2000), nullable=False),
        moment("raised_at", nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("response", sa.String(2000), nullable=True),
        sa.Column("responded_by", sa.Uuid, nullable=True),
        moment("responded_at"),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("note", sa.String(2000), nullable=True),
        sa.Column("resolved_by", sa.Uuid, nullable=True),
        moment("resolved_at"),
    )
    op.create_table(
        "peer_reviews",
        sa.Column("id", sa.Uuid, primary_key=True),
        org(),
        sa.Column("report_id", sa.Uuid, sa.ForeignKey("reports.id"), nullable=False),
        sa.Column("radiologist_id", sa.Uuid, nullable=False),
        sa.Column("reviewer_id", sa.Uuid, nullable=False),
        sa.Column("score", sa.String(2), nullable=False),
        sa.Column("comment", sa.String(2000), nullable=False),
        moment("reviewed_at", nullable=False),
        sa.UniqueConstraint("report_id", "reviewer_id"),
    )
    op.create_index("peer_reviews_org_radiologist", "peer_reviews", ["organization_id", "radiologist_id"])


def downgrade() -> None:
    for table in TABLES:
        op.drop_table(table)
