"""identity: organisations, users, sessions, refresh tokens, signing keys, outbox and inbox

Revision ID: identity_0001
"""
import sqlalchemy as sa
from alembic import op

from radcommon.migrations import create_messaging_tables

revision = "identity_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op)
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "organizations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False, unique=True),
        sa.Column("require_2fa_roles", sa.JSON, nullable=False),
        sa.Column("idle_timeout_minutes", sa.Integer, nullable=False),
        sa.Column("max_concurrent_sessions", sa.Integer, nullable=False),
        sa.Column("password_min_length", sa.Integer, nullable=False),
        sa.Column("created_at", aware, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, sa.ForeignKey("organizations.id"), nullable=False, index=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("full_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(512), nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("totp_secret_sealed", sa.String(512)),
        sa.Column("totp_enabled", sa.Boolean, nullable=False),
        sa.Column("totp_last_step", sa.BigInteger),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("last_failed_at", aware),
        sa.Column("created_at", aware, nullable=False),
    )
    op.create_table(
        "backup_codes",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("code_hash", sa.String(128), nullable=False),
        sa.Column("used_at", aware),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False, index=True),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("amr", sa.JSON, nullable=False),
        sa.Column("source_address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(256), nullable=False),
        sa.Column("started_at", aware, nullable=False),
        sa.Column("last_seen_at", aware, nullable=False),
        sa.Column("ended_at", aware),
        sa.Column("end_reason", sa.String(32)),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("session_id", sa.Uuid, sa.ForeignKey("sessions.id"), nullable=False, index=True),
        sa.Column("issued_at", aware, nullable=False),
        sa.Column("expires_at", aware, nullable=False),
        sa.Column("used_at", aware),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_key_sealed", sa.Text, nullable=False),
        sa.Column("public_jwk", sa.JSON, nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("retired_at", aware),
    )
    op.create_table(
        "address_attempts",
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_failure_at", aware, nullable=False),
    )


def downgrade() -> None:
    for table in ("address_attempts", "signing_keys", "refresh_tokens", "sessions", "backup_codes", "users",
                  "organizations", "inbox", "outbox"):
        op.drop_table(table)
