"""dicom-ingest: the indexes QIDO-RS pages by (newest study first) and matches Patient's Name prefixes by

Revision ID: dicom_ingest_0005
"""
import sqlalchemy as sa
from alembic import op

revision = "dicom_ingest_0005"
down_revision = "dicom_ingest_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    # the order of SqlIndexQueries.find(newest_first=True): a page of 50 is the first 50 entries of this index.
    # SQLite puts NULLs last in descending order already, and takes no NULLS LAST in an index.
    op.create_index("studies_newest_first", "studies", [
        "organization_id", sa.text("study_date DESC NULLS LAST" if postgres else "study_date DESC"),
        sa.text("study_time DESC"), "study_instance_uid"])
    if postgres:  # PatientName=SMITH* is lower(patient_name) LIKE 'smith%': a btree serves it only in C order
        op.create_index("patients_by_folded_name_prefix", "patients",
                        ["organization_id", sa.text("lower(patient_name) text_pattern_ops")])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("patients_by_folded_name_prefix", "patients")
    op.drop_index("studies_newest_first", "studies")
