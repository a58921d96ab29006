"""dicom-ingest: the modality registry, and the projection of ended sessions for token checks

Revision ID: dicom_ingest_0002
"""
import sqlalchemy as sa
from alembic import op

from radcommon.auth import create_revocation_table

revision = "dicom_ingest_0002"
down_revision = "dicom_ingest_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "modalities",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("ae_title", sa.String(16), nullable=False),
        sa.Column("host", sa.String(64)),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("ae_title", "host"),
    )
    op.create_index("ix_modalities_organization_id", "modalities", ["organization_id"])
    # NULLs are distinct in a unique constraint: this keeps one host-less row per AE title.
    op.create_index("modalities_ae_title_any_host", "modalities", ["ae_title"], unique=True,
                    postgresql_where=sa.text("host IS NULL"), sqlite_where=sa.text("host IS NULL"))
    create_revocation_table(op)


def downgrade() -> None:
    op.drop_table("revoked_sessions")
    op.drop_table("modalities")
