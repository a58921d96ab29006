"""dicom-ingest: move destinations (a port on a modality) and the indexes C-FIND and QIDO-RS search by

Revision ID: dicom_ingest_0003
"""
import sqlalchemy as sa
from alembic import op

revision = "dicom_ingest_0003"
down_revision = "dicom_ingest_0002"
branch_labels = None
depends_on = None

INDEXES = (
    ("studies_by_date", "studies", ["organization_id", "study_date"]),
    ("studies_by_accession_number", "studies", ["organization_id", "accession_number"]),
    ("studies_by_patient", "studies", ["patient_ref"]),
    ("series_by_modality", "series", ["organization_id", "modality"]),
)


def upgrade() -> None:
    op.add_column("modalities", sa.Column("port", sa.Integer))
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    # matching on Patient's Name is case-insensitive (PS3.4 §C.2.2.2.1.1): lower() is what it compares
    op.create_index("patients_by_folded_name", "patients", ["organization_id", sa.text("lower(patient_name)")])


def downgrade() -> None:
    op.drop_index("patients_by_folded_name", "patients")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table)
    with op.batch_alter_table("modalities") as batch:
        batch.drop_column("port")
