"""dicom-ingest: the study index, outbox and inbox

Revision ID: dicom_ingest_0001
"""
import sqlalchemy as sa
from alembic import op

from radcommon.migrations import create_messaging_tables

revision = "dicom_ingest_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_messaging_tables(op)
    aware = sa.DateTime(timezone=True)
    op.create_table(
        "patients",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(324), nullable=False),
        sa.Column("patient_birth_date", sa.Date),
        sa.Column("patient_sex", sa.String(16), nullable=False),
        sa.UniqueConstraint("organization_id", "patient_id", "issuer_of_patient_id"),
    )
    op.create_table(
        "studies",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("patient_ref", sa.Uuid, sa.ForeignKey("patients.id"), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("study_id", sa.String(16), nullable=False),
        sa.Column("study_date", sa.Date),
        sa.Column("study_time", sa.String(16), nullable=False),
        sa.Column("study_description", sa.String(64), nullable=False),
        sa.Column("referring_physician_name", sa.String(324), nullable=False),
        sa.Column("modalities", sa.JSON, nullable=False),
        sa.Column("body_parts", sa.JSON, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("calling_ae_title", sa.String(16), nullable=False),
        sa.Column("number_of_series", sa.Integer, nullable=False),
        sa.Column("number_of_instances", sa.Integer, nullable=False),
        sa.Column("first_received_at", aware, nullable=False),
        sa.Column("last_received_at", aware, nullable=False),
        sa.Column("announced_instances", sa.Integer, nullable=False),
        sa.Column("announced_at", aware),
        sa.UniqueConstraint("organization_id", "study_instance_uid"),
    )
    op.create_index("studies_unannounced", "studies", ["last_received_at"],
                    postgresql_where=sa.text("announced_instances <> number_of_instances"),
                    sqlite_where=sa.text("announced_instances <> number_of_instances"))
    op.create_table(
        "series",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("study_ref", sa.Uuid, sa.ForeignKey("studies.id"), nullable=False, index=True),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("series_number", sa.Integer),
        sa.Column("series_description", sa.String(64), nullable=False),
        sa.Column("body_part_examined", sa.String(16), nullable=False),
        sa.Column("number_of_instances", sa.Integer, nullable=False),
        sa.UniqueConstraint("organization_id", "series_instance_uid"),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("organization_id", sa.Uuid, nullable=False),
        sa.Column("study_ref", sa.Uuid, sa.ForeignKey("studies.id"), nullable=False, index=True),
        sa.Column("series_ref", sa.Uuid, sa.ForeignKey("series.id"), nullable=False, index=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("instance_number", sa.Integer),
        sa.Column("number_of_frames", sa.Integer),
        sa.Column("storage_key", sa.String(64), nullable=False, index=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("received_at", aware, nullable=False),
        sa.UniqueConstraint("organization_id", "sop_instance_uid"),
    )


def downgrade() -> None:
    for table in ("instances", "series", "studies", "patients", "inbox", "outbox"):
        op.drop_table(table)
