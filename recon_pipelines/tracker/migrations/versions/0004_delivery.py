"""Delivery fencing and wider field names.

- ``recon_outbox.claims``: how many times a row was claimed. Each claim's number is its
  fencing token: only the holder of the latest claim may mark the row (remediation/outbox.py).
- ``field`` becomes TEXT wherever it was VARCHAR(128): a spec may compare any column, and
  PostgreSQL refused longer names on every run (SQLite never enforced the length, so it
  needs no change). The ``recon_open_discrepancies`` view depends on the column, so it is
  dropped and created again around the change.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_VIEW = ("CREATE VIEW recon_open_discrepancies AS SELECT * FROM recon_discrepancies "
         "WHERE status IN ('new', 'acknowledged', 'escalated', 'muted')")
_FIELD_TABLES = ("recon_discrepancies", "recon_staging", "recon_fixes")


def upgrade() -> None:
    op.add_column("recon_outbox", sa.Column("claims", sa.Integer, nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        _retype_field(sa.Text())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _retype_field(sa.String(128))
    with op.batch_alter_table("recon_outbox") as batch:
        batch.drop_column("claims")


def _retype_field(type_) -> None:
    op.execute("DROP VIEW recon_open_discrepancies")
    for table in _FIELD_TABLES:
        op.alter_column(table, "field", type_=type_)
    op.execute(_VIEW)
