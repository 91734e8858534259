"""What a discrepancy is, for every part of the engine: its columns, its stable id and its key text.

A leaf of the engine package, so the pairing (compare.py) and the group rules (groups.py) share it
without importing each other.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pyarrow as pa

DISCREPANCY_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("reconciliation", pa.string()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("value_a", pa.string()),
        ("value_b", pa.string()),
        ("difference", pa.float64()),
        ("relative_difference", pa.float64()),
        ("severity", pa.string()),
        ("detail", pa.string()),
    ]
)
_SEP = "\x1f"  # unit separator: cannot occur in a rendered key by accident


def discrepancy_id(reconciliation: str, kind: str, key: str, field: str | None) -> str:
    """Stable id of a disagreement: the same record, field and kind give the same id on every run."""
    raw = _SEP.join([reconciliation, kind, key, field or ""])
    return hashlib.md5(raw.encode("utf-8")).hexdigest()[:24]


def render_key(values: list) -> str:
    """The key as stored in the tracker: the bare value for one key field, a JSON list for several."""
    if len(values) == 1:
        return "<null>" if values[0] is None else str(values[0])
    return json.dumps([None if v is None else str(v) for v in values], separators=(",", ":"))


def key_text(columns: list[str]) -> str:
    """SQL twin of ``render_key``."""
    if len(columns) == 1:
        return f"coalesce(CAST({columns[0]} AS VARCHAR), '<null>')"
    return f"to_json([{', '.join(f'CAST({c} AS VARCHAR)' for c in columns)}])::VARCHAR"


def relation_types(con: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
