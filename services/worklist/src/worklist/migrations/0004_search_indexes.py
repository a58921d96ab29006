"""worklist: indexes for searching a large worklist (patient name fragments, open load per radiologist)

Revision ID: worklist_0004
"""
from alembic import op

revision = "worklist_0004"
down_revision = "worklist_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("worklist_items_org_status_assignee", "worklist_items",
                    ["organization_id", "status", "assignee_id"])
    if op.get_bind().dialect.name == "postgresql":
        # "part of the name" is LIKE '%smi%': only a trigram index serves it (pg_trgm is a trusted extension)
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX worklist_items_patient_name_trgm ON worklist_items "
                   "USING gin (lower(patient_name) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("worklist_items_patient_name_trgm", "worklist_items")
    op.drop_index("worklist_items_org_status_assignee", "worklist_items")
