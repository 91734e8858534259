"""Each side's source schema as the last run saw it, so the next run can say what changed.

``recon_source_schemas`` holds one row per (reconciliation, side): the source's columns in order
(name, the type the source declares, and its family), the run that recorded them and when. Kept in
the tracker rather than in Dagster's materialization metadata so that ``recon run --track`` and the
Dagster assets share one history (docs/spec-reference.md, "Schema drift").

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
# The chain ended at 0007 when this was written; 0008 and 0009 are taken by work in progress
# elsewhere: whoever lands after them points this at the newest one.
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recon_source_schemas",
        sa.Column("reconciliation", sa.String(128), primary_key=True),
        sa.Column("side", sa.String(1), primary_key=True),  # 'a' or 'b'
        sa.Column("source", sa.Text, nullable=False),  # the connector's label (no credentials)
        sa.Column("columns", sa.JSON, nullable=False),  # [{"name", "type", "family"}, ...] in source order
        sa.Column("run_id", sa.String(64)),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("recon_source_schemas")
