"""A view of what is wrong now, for BI tools and downstream systems.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE VIEW recon_open_discrepancies AS SELECT * FROM recon_discrepancies "
        "WHERE status IN ('new', 'acknowledged', 'escalated', 'muted')"
    )


def downgrade() -> None:
    op.execute("DROP VIEW recon_open_discrepancies")
