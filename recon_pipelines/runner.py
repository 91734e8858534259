"""Run one reconciliation end to end without Dagster (``recon run``, tests, the benchmark).

The Dagster assets run the same steps one asset at a time (see dagster_defs/assets.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from recon_pipelines.engine import ComparisonError, ComparisonResult, Side, compare, side_columns
from recon_pipelines.snapshots import direct_side, snapshot_side, write_snapshot
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect


def open_side(spec: ReconciliationSpec, side: str, workdir: Path) -> Side:
    """Files are scanned in place; SQL and HTTP sources are streamed to a Parquet snapshot first."""
    direct = direct_side(spec, side)
    if direct is not None:
        return direct
    source = spec.source_a if side == "a" else spec.source_b
    columns = side_columns(spec, side)
    info = write_snapshot(source, columns, workdir / f"snapshot_{side}.parquet")
    return snapshot_side(info.path, list(columns), info.label)


def open_mapping(spec: ReconciliationSpec, workdir: Path) -> Side | None:
    mapping = spec.key_mapping
    if mapping is None:
        return None
    info = write_snapshot(mapping.source, {"a": mapping.a, "b": mapping.b}, workdir / "key_mapping.parquet")
    return snapshot_side(info.path, ["a", "b"], info.label)


def run_reconciliation(spec: ReconciliationSpec, workdir: Path | None = None) -> ComparisonResult:
    if spec.pushdown:  # two PostgreSQL tables: compare in the database, fetch only what differs
        from recon_pipelines.engine.pushdown import compare_in_database

        result = compare_in_database(spec)
        if result is not None:
            return result
    with tempfile.TemporaryDirectory(prefix="recon-") as tmp:
        work = Path(workdir or tmp)
        side_a, side_b = open_side(spec, "a", work), open_side(spec, "b", work)
        mapping = open_mapping(spec, work)
        try:
            return compare(spec, side_a, side_b, mapping)
        except duckdb.Error as exc:
            raise ComparisonError(_blame(exc, [side_a, side_b, mapping])) from None


def _blame(exc: duckdb.Error, sides: list[Side | None]) -> str:
    """DuckDB does not always say which input failed (a corrupt Parquet page reads as "don't
    know what type"): read each side whole, once the comparison has failed, to name it."""
    with duckdb_connect() as con:
        for side in sides:
            if side is None:
                continue
            try:
                con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {side.scan}").fetchall()
            except duckdb.Error as side_exc:
                return f"{side.label}: cannot read: {side_exc}"
    return str(exc)
