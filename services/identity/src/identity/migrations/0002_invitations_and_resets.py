"""identity: invitations and password resets (single-use tokens kept as SHA-256 digests)

Revision ID: identity_0002
Revises: identity_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "identity_0002"
down_revision = "identity_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("organization_id", sa.Uuid, sa.ForeignKey("organizations.id"), nullable=False, index=True),
        sa.Column("email", sa.String(254), nullable=False, index=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("invited_by", sa.Uuid, nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("expires_at", aware, nullable=False),
        sa.Column("accepted_at", aware),
        sa.Column("user_id", sa.Uuid),
    )
    op.create_table(
        "password_resets",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("expires_at", aware, nullable=False),
        sa.Column("used_at", aware),
    )


def downgrade() -> None:
    op.drop_table("password_resets")
    op.drop_table("invitations")
