"""identity: OpenID Connect authorization codes and the RSA keys that sign ID tokens

Revision ID: identity_0003
Revises: identity_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "identity_0003"
down_revision = "identity_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "oidc_authorization_codes",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("nonce", sa.String(512)),
        sa.Column("scope", sa.String(256), nullable=False),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("session_id", sa.Uuid, sa.ForeignKey("sessions.id"), nullable=False, index=True),
        sa.Column("refresh_token_sealed", sa.String(512)),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("expires_at", aware, nullable=False, index=True),
        sa.Column("used_at", aware),
    )
    op.create_table(
        "oidc_signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("private_key_sealed", sa.Text, nullable=False),
        sa.Column("public_jwk", sa.JSON, nullable=False),
        sa.Column("created_at", aware, nullable=False),
        sa.Column("retired_at", aware),
    )


def downgrade() -> None:
    op.drop_table("oidc_signing_keys")
    op.drop_table("oidc_authorization_codes")
