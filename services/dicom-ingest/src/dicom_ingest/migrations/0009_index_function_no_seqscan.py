"""dicom-ingest: the index function never plans a sequential scan of a table it looks rows up in

Migration 0008 runs ``dicom_index_keep_first`` with ``plan_cache_mode = force_generic_plan``: each of its
statements is planned once per session, at the session's first call. A writer connection opened on a fresh
archive therefore plans on empty tables, where a sequential scan of ``studies`` or ``series`` costs the
planner no more than an index probe, and keeps that plan while the tables grow (until autovacuum's next
ANALYZE invalidates it, which on a busy new archive is a minute or more away). Measured: the counter updates
scanned every study of the archive on every call, 0.3 ms at 200 studies and growing with the archive.

Every statement of the function finds its rows by key (an id or a unique key), so sequential scans are
switched off for its statements: the generic plans probe indexes whatever the table sizes were when they
were made. ``tests/unit/test_index_function.py`` checks the plans a session made on empty tables.

Revision ID: dicom_ingest_0009
"""
from alembic import op

revision = "dicom_ingest_0009"
down_revision = "dicom_ingest_0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION dicom_index_keep_first(jsonb) SET enable_seqscan = off")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION dicom_index_keep_first(jsonb) RESET enable_seqscan")
