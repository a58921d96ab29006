"""worklist: deadlines and alerts, assignment and claims, SLA policies, priority rules, readers, the change feed

Revision ID: worklist_0003
"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "worklist_0003"
down_revision = "worklist_0002"
branch_labels = None
depends_on = None

OPEN = "status IN ('received', 'assigned', 'in_progress', 'preliminary')"


def moment(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("worklist_items") as batch:
        batch.add_column(sa.Column("referring_physician_name", sa.String(324), nullable=False, server_default=""))
        batch.add_column(sa.Column("calling_ae_title", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("priority_rank", sa.Integer, nullable=False, server_default="2"))
        for name in ("deadline", "warn_at", "warned_at", "breached_at", "assigned_at", "claimed_at",
                     "claim_expires_at", "preliminary_at", "finalized_at"):
            batch.add_column(moment(name))
        for name in ("assignee_id", "claimed_by", "reported_by"):
            batch.add_column(sa.Column(name, sa.Uuid, nullable=True))
    items = sa.table("worklist_items", sa.column("id", sa.Uuid), sa.column("received_at", sa.DateTime(timezone=True)),
                     sa.column("deadline", sa.DateTime(timezone=True)), sa.column("warn_at", sa.DateTime(timezone=True)))
    bind = op.get_bind()
    for item_id, received_at in bind.execute(sa.select(items.c.id, items.c.received_at)).all():
        # items from before SLAs existed: the routine default of a day
        bind.execute(items.update().where(items.c.id == item_id).values(
            deadline=received_at + timedelta(hours=24), warn_at=received_at + timedelta(hours=18)))
    with op.batch_alter_table("worklist_items") as batch:
        batch.alter_column("deadline", nullable=False)
        batch.alter_column("warn_at", nullable=False)
    op.create_index("worklist_items_org_status_deadline", "worklist_items",
                    ["organization_id", "status", "deadline"])
    op.create_index("worklist_items_org_priority_deadline", "worklist_items",
                    ["organization_id", "priority_rank", "deadline"])
    op.create_index("worklist_items_org_deadline", "worklist_items", ["organization_id", "deadline"])
    op.create_index("worklist_items_org_assignee", "worklist_items", ["organization_id", "assignee_id", "status"])
    op.create_index("worklist_items_org_accession", "worklist_items", ["organization_id", "accession_number"])
    op.create_index("worklist_items_org_patient", "worklist_items", ["organization_id", "patient_id"])
    op.create_index("worklist_items_org_finalized", "worklist_items", ["organization_id", "finalized_at"])
    op.create_index("worklist_items_due_warning", "worklist_items", ["warn_at"],
                    postgresql_where=sa.text(f"warned_at IS NULL AND {OPEN}"),
                    sqlite_where=sa.text(f"warned_at IS NULL AND {OPEN}"))
    op.create_index("worklist_items_due_breach", "worklist_items", ["deadline"],
                    postgresql_where=sa.text(f"breached_at IS NULL AND {OPEN}"),
                    sqlite_where=sa.text(f"breached_at IS NULL AND {OPEN}"))
    op.create_index("worklist_items_claims", "worklist_items", ["claim_expires_at"],
                    postgresql_where=sa.text("claimed_by IS NOT NULL"), sqlite_where=sa.text("claimed_by IS NOT NULL"))
    op.create_index("worklist_items_unassigned", "worklist_items", ["organization_id", "received_at"],
                    postgresql_where=sa.text("status = 'received'"), sqlite_where=sa.text("status = 'received'"))

    op.create_table(
        "sla_policies",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False, index=True),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("minutes", sa.Float, nullable=False),
        sa.Column("warning_fraction", sa.Float, nullable=False),
        sa.UniqueConstraint("organization_id", "priority", "modality"),
    )
    op.create_table(
        "priority_rules",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False, index=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("body_part", sa.String(64), nullable=False),
        sa.Column("description_contains", sa.String(64), nullable=False),
        sa.Column("calling_ae_title", sa.String(16), nullable=False),
    )
    op.create_table(
        "readers",
        sa.Column("organization_id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("modalities", sa.JSON, nullable=False),
        sa.Column("body_parts", sa.JSON, nullable=False),
        sa.Column("available", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("max_open", sa.Integer, nullable=True),
        moment("last_assigned_at"),
    )
    op.create_table(
        "organization_sequences",
        sa.Column("organization_id", sa.Uuid, primary_key=True),
        sa.Column("last_sequence", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "worklist_changes",
        sa.Column("organization_id", sa.Uuid, primary_key=True),
        sa.Column("sequence", sa.BigInteger, primary_key=True),
        sa.Column("item_id", sa.Uuid, nullable=False),
        sa.Column("change", sa.String(32), nullable=False),
        sa.Column("item", sa.JSON, nullable=False),
        moment("occurred_at", nullable=False),
    )
    op.create_index("worklist_changes_occurred", "worklist_changes", ["occurred_at"])


def downgrade() -> None:
    for table in ("worklist_changes", "organization_sequences", "readers", "priority_rules", "sla_policies"):
        op.drop_table(table)
    for index in ("worklist_items_org_status_deadline", "worklist_items_org_priority_deadline",
                  "worklist_items_org_deadline", "worklist_items_org_assignee", "worklist_items_org_accession",
                  "worklist_items_org_patient", "worklist_items_org_finalized", "worklist_items_due_warning",
                  "worklist_items_due_breach", "worklist_items_claims", "worklist_items_unassigned"):
        op.drop_index(index, "worklist_items")
    with op.batch_alter_table("worklist_items") as batch:
        for name in ("referring_physician_name", "calling_ae_title", "priority_rank", "deadline", "warn_at",
                     "warned_at", "breached_at", "assigned_at", "claimed_at", "claim_expires_at", "preliminary_at",
                     "finalized_at", "assignee_id", "claimed_by", "reported_by"):
            batch.drop_column(name)
