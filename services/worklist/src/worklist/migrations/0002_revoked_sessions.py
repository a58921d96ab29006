"""worklist: the projection of ended sessions, so tokens of a signed-out session are refused here too

Revision ID: worklist_0002
"""
from alembic import op

from radcommon.auth import create_revocation_table

revision = "worklist_0002"
down_revision = "worklist_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_revocation_table(op)


def downgrade() -> None:
    op.drop_table("revoked_sessions")
