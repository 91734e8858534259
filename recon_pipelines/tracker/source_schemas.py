"""Each side's source schema as the last run saw it (``recon_source_schemas``, migration 0009).

Stored as plain JSON (name, type, family per column) so that the history is readable with SQL
and does not depend on the code that computed it (``schema_diff.py`` interprets it).
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from recon_pipelines.tracker.schema import source_schemas


def previous_columns(engine: sa.Engine, reconciliation: str, side: str) -> list[dict] | None:
    """The columns recorded by the last run of this side, or None before any run."""
    t = source_schemas
    with engine.connect() as conn:
        row = conn.execute(sa.select(t.c.columns).where(t.c.reconciliation == reconciliation, t.c.side == side)).first()
    return list(row.columns) if row is not None else None


def record_columns(engine: sa.Engine, reconciliation: str, side: str, source: str, columns: list[dict],
                   run_id: str | None) -> None:
    """Replace the side's baseline with what this run saw (one row per side: an upsert)."""
    values = {"reconciliation": reconciliation, "side": side, "source": source, "columns": columns,
              "run_id": run_id, "recorded_at": datetime.now(timezone.utc)}
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(source_schemas)
    statement = insert.values(**values).on_conflict_do_update(
        index_elements=["reconciliation", "side"],
        set_={k: v for k, v in values.items() if k not in ("reconciliation", "side")})
    with engine.begin() as conn:
        conn.execute(statement)
