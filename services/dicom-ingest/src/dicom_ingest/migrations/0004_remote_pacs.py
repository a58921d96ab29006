"""dicom-ingest: remote PACS of each organisation, and the retrieve and send jobs run against them

Revision ID: dicom_ingest_0004
"""
import sqlalchemy as sa
from alembic import op

revision = "dicom_ingest_0004"
# after QIDO-RS's 0005, the newest revision when this one was written (0005 chains after 0003)
down_revision = "dicom_ingest_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "remote_pacs",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("ae_title", sa.String(16), nullable=False),
        sa.Column("host", sa.String(253), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("calling_ae_title", sa.String(16)),
        sa.Column("modality_id", sa.Uuid),
        sa.Column("created_at", aware, nullable=False),
        sa.UniqueConstraint("organization_id", "ae_title"),
    )
    op.create_index("ix_remote_pacs_organization_id", "remote_pacs", ["organization_id"])
    op.create_table(
        "remote_pacs_jobs",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("remote_pacs_id", sa.Uuid, nullable=False),
        sa.Column("remote_ae_title", sa.String(16), nullable=False),
        sa.Column("operation", sa.String(8), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64)),
        sa.Column("requested_by", sa.Uuid),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("started_at", aware),
        sa.Column("finished_at", aware),
        sa.Column("heartbeat_at", aware, nullable=False),
        sa.Column("completed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("warning", sa.Integer, nullable=False),
        sa.Column("remaining", sa.Integer),
        sa.Column("failures", sa.JSON, nullable=False),
        sa.Column("final_status", sa.Integer),
        sa.Column("detail", sa.String(1024)),
    )
    op.create_index("remote_pacs_jobs_by_organization", "remote_pacs_jobs", ["organization_id", "created_at"])
    op.create_index("remote_pacs_jobs_by_status", "remote_pacs_jobs", ["status", "heartbeat_at"])


def downgrade() -> None:
    op.drop_table("remote_pacs_jobs")
    op.drop_table("remote_pacs")
