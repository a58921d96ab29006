"""worklist: items, outbox and inbox

Revision ID: worklist_0001
"""
import sqlalchemy as sa
from alembic import op

from radcommon.migrations import create_messaging_tables

revision = "worklist_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op)
    op.create_table(
        "worklist_items",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False, index=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(324), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("study_date", sa.Date, nullable=True),
        sa.Column("study_description", sa.String(64), nullable=False),
        sa.Column("modalities", sa.JSON, nullable=False),
        sa.Column("body_parts", sa.JSON, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("number_of_series", sa.Integer, nullable=False),
        sa.Column("number_of_instances", sa.Integer, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("organization_id", "study_instance_uid"),
    )
    op.create_index("worklist_items_org_received", "worklist_items", ["organization_id", "received_at"])


def downgrade() -> None:
    op.drop_table("worklist_items")
    op.drop_table("inbox")
    op.drop_table("outbox")
