"""signature: signable versions, signatures, signers, the key ring, spent step-up tokens, the audit trail

Revision ID: signature_0001
"""
import sqlalchemy as sa
from alembic import op

from radcommon.auth import create_revocation_table
from radcommon.migrations import create_messaging_tables

revision = "signature_0001"
down_revision = None
branch_labels = None
depends_on = None


def _moment(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    create_messaging_tables(op)
    create_revocation_table(op)
    op.create_table(
        "signable_versions",
        sa.Column("organization_id", sa.Uuid, primary_key=True),
        sa.Column("report_id", sa.Uuid, primary_key=True),
        sa.Column("addendum_key", sa.String(36), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("author_id", sa.Uuid, nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        _moment("submitted_at"),
    )
    op.create_table(
        "signatures",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False, index=True),
        sa.Column("report_id", sa.Uuid, nullable=False),
        sa.Column("addendum_key", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("signer_id", sa.Uuid, nullable=False),
        sa.Column("signer_name", sa.String(200), nullable=False),
        sa.Column("meaning", sa.String(16), nullable=False),
        _moment("signed_at"),
        sa.Column("key_id", sa.String(64), nullable=False, index=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("organization_id", "report_id", "addendum_key", "version", "signer_id", "meaning"),
    )
    op.create_index("signatures_one_author", "signatures", ["organization_id", "report_id", "addendum_key", "version"],
                    unique=True, postgresql_where=sa.text("meaning = 'authored'"),
                    sqlite_where=sa.text("meaning = 'authored'"))
    op.create_table(
        "signers",
        sa.Column("organization_id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, primary_key=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
    )
    op.create_table(
        "signature_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("private_key_sealed", sa.Text, nullable=False),
        _moment("created_at"),
        _moment("retired_at", nullable=True),
        _moment("revoked_at", nullable=True),
        sa.Column("revocation_reason", sa.String(500), nullable=False),
    )
    op.create_table(
        "signature_key_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kid", sa.String(64), nullable=False, index=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.Uuid, nullable=True),
        sa.Column("actor_organization_id", sa.Uuid, nullable=True),
        sa.Column("actor_name", sa.String(254), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        _moment("occurred_at"),
    )
    op.create_table(
        "used_step_up_tokens",
        sa.Column("token_id", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        _moment("used_at"),
        _moment("expires_at"),
    )
    op.create_index("used_step_up_tokens_expires_at", "used_step_up_tokens", ["expires_at"])
    op.create_table(
        "signature_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("report_id", sa.Uuid, nullable=False),
        sa.Column("addendum_key", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(500), nullable=False),
        sa.Column("signature_id", sa.Uuid, nullable=True),
        sa.Column("actor_id", sa.Uuid, nullable=False),
        sa.Column("actor_name", sa.String(254), nullable=False),
        sa.Column("meaning", sa.String(16), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        _moment("occurred_at"),
    )
    op.create_index("signature_audit_report", "signature_audit", ["organization_id", "report_id", "id"])


def downgrade() -> None:
    for table in ("signature_audit", "used_step_up_tokens", "signature_key_events", "signature_keys", "signers",
                  "signatures", "signable_versions", "revoked_sessions", "inbox", "outbox"):
        op.drop_table(table)
