"""N-way reconciliations: the systems each discrepancy names.

``systems`` (the systems holding the record, comma-separated), ``odd_ones_out`` (those that
disagree with the reference), ``reference_system`` (the one judged right for the field) and
``system_values`` (JSON: system -> value). Null for two-source discrepancies. The open view is
recreated so that PostgreSQL's (whose ``*`` was expanded when it was made) shows them too.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = ("systems", "odd_ones_out", "reference_system", "system_values")
_OPEN_VIEW = ("CREATE VIEW recon_open_discrepancies AS SELECT * FROM recon_discrepancies "
              "WHERE status IN ('new', 'acknowledged', 'escalated', 'muted')")


def _columns() -> list[sa.Column]:
    return [sa.Column("systems", sa.Text), sa.Column("odd_ones_out", sa.Text),
            sa.Column("reference_system", sa.String(64)), sa.Column("system_values", sa.Text)]


def upgrade() -> None:
    op.execute("DROP VIEW recon_open_discrepancies")
    for table in ("recon_discrepancies", "recon_staging"):
        for column in _columns():
            op.add_column(table, column)  # plain ADD COLUMN: no table rebuild under the view
    op.execute(_OPEN_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW recon_open_discrepancies")
    for table in ("recon_discrepancies", "recon_staging"):
        with op.batch_alter_table(table) as batch:
            for column in reversed(_COLUMNS):
                batch.drop_column(column)
    op.execute(_OPEN_VIEW)
