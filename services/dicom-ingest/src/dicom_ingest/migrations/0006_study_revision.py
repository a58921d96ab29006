"""dicom-ingest: a study's revision, bumped when an instance is replaced, so that it is announced again

Revision ID: dicom_ingest_0006
"""
import sqlalchemy as sa
from alembic import op

revision = "dicom_ingest_0006"
down_revision = "dicom_ingest_0004"
branch_labels = None
depends_on = None

_UNANNOUNCED = "announced_instances <> number_of_instances"
_UNANNOUNCED_OR_REVISED = f"{_UNANNOUNCED} OR announced_revision <> revision"


def upgrade() -> None:
    op.add_column("studies", sa.Column("revision", sa.Integer, nullable=False, server_default="0"))
    op.add_column("studies", sa.Column("announced_revision", sa.Integer, nullable=False, server_default="0"))
    # the settle monitor's query: what is not announced in its present state
    op.drop_index("studies_unannounced", "studies")
    op.create_index("studies_unannounced", "studies", ["last_received_at"],
                    postgresql_where=sa.text(_UNANNOUNCED_OR_REVISED), sqlite_where=sa.text(_UNANNOUNCED_OR_REVISED))


def downgrade() -> None:
    op.drop_index("studies_unannounced", "studies")
    op.create_index("studies_unannounced", "studies", ["last_received_at"],
                    postgresql_where=sa.text(_UNANNOUNCED), sqlite_where=sa.text(_UNANNOUNCED))
    with op.batch_alter_table("studies") as studies:
        studies.drop_column("announced_revision")
        studies.drop_column("revision")
