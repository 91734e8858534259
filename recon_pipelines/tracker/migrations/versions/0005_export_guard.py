"""The export guard: runs held as suspicious, their key samples, and who accepted them.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recon_runs") as table:
        table.add_column(sa.Column("guard_note", sa.Text))  # why the run was held (outcome 'suspicious')
        table.add_column(sa.Column("key_sample", sa.JSON))  # per side: row count and the bottom-k key hashes
        table.add_column(sa.Column("accepted_by", sa.String(128)))
        table.add_column(sa.Column("accepted_at", sa.DateTime(timezone=True)))
    op.create_index("ix_recon_runs_reconciliation_scope", "recon_runs", ["reconciliation", "scope", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_recon_runs_reconciliation_scope", "recon_runs")
    with op.batch_alter_table("recon_runs") as table:
        for column in ("accepted_at", "accepted_by", "key_sample", "guard_note"):
            table.drop_column(column)
