"""The steps of an N-way reconciliation run (a spec with ``sources:``), for ``recon run`` and
the Dagster assets alike:

    take_system_snapshot(s) for each system -> match_records -> find_discrepancies -> update_tracker

Kept apart from pipeline.py (the two-source steps) so both can change without touching the
other; the scope is always the whole of each system (no windows, samples or key lists yet).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recon_pipelines.engine import ComparisonError, Side
from recon_pipelines.engine.nway import RECORDS, NWayResult, NWayStats, compare_systems, evaluate_systems, match_systems, summary_of
from recon_pipelines.snapshots import partial_path, snapshot_side, write_snapshot
from recon_pipelines.sources.base import require_columns
from recon_pipelines.sources.files import FileConnector
from recon_pipelines.spec.models import FileSource
from recon_pipelines.spec.nway import NWaySpec, active_filter
from recon_pipelines.sqlutil import duckdb_connect, sql_literal

STATS_KEY = "recon_nway_stats"
RECORDS_FILE = "matched_records.parquet"
DISCREPANCIES_FILE = "discrepancies.parquet"


def snapshot_file(folder: Path, system: str) -> Path:
    return folder / f"snapshot_{system}.parquet"


def active_file(folder: Path, system: str) -> Path:
    return folder / f"active_{system}.parquet"


def mapping_file(folder: Path, system: str) -> Path:
    return folder / f"key_mapping_{system}.parquet"


# --------------------------------------------------------------------------- one process (recon run)


def run_nway(spec: NWaySpec, workdir: Path | None = None) -> NWayResult:
    """Files are scanned in place; SQL and HTTP systems are streamed to Parquet snapshots first."""
    with tempfile.TemporaryDirectory(prefix="recon-") as tmp:
        work = Path(workdir or tmp)
        sides, active, mappings = {}, {}, {}
        for system in spec.systems:
            sides[system] = _side(spec, system, work)
            counted = _active_side(spec, system, work)
            if counted is not None:
                active[system] = counted
            if system in spec.key_mappings:
                mappings[system] = _mapping_side(spec, system, work)
        return compare_systems(spec, sides, active, mappings)


def _side(spec: NWaySpec, system: str, work: Path) -> Side:
    source, columns = spec.sources[system], spec.columns_of(system)
    if isinstance(source, FileSource):
        connector = FileConnector(source)
        require_columns(connector.schema(), list(dict.fromkeys(columns.values())), connector.label)
        return Side(connector.scan_sql(), columns, connector.label)
    info = write_snapshot(source, columns, snapshot_file(work, system))
    return snapshot_side(info.path, list(columns), info.label)


def _active_side(spec: NWaySpec, system: str, work: Path) -> Side | None:
    """The keys of a system's active records: its ``active:`` condition pushed to it like a filter."""
    source = spec.sources[system]
    condition = active_filter(source)
    if condition is None:
        return None
    counted = source.model_copy(update={"filter": condition})
    keys = {k.name: k.columns[system] for k in spec.key}
    if isinstance(source, FileSource):
        connector = FileConnector(counted)
        return Side(connector.scan_sql(), keys, f"{connector.label} active")
    info = write_snapshot(counted, keys, active_file(work, system))
    return snapshot_side(info.path, list(keys), f"{info.label} active")


def _mapping_side(spec: NWaySpec, system: str, work: Path) -> Side:
    mapping = spec.key_mappings[system]
    info = write_snapshot(mapping.source, {"key": mapping.key, "id": mapping.id}, mapping_file(work, system))
    return snapshot_side(info.path, ["key", "id"], info.label)


# --------------------------------------------------------------------------- steps (Dagster assets)


def take_system_snapshot(spec: NWaySpec, system: str, folder: Path) -> dict:
    """One system's records (and its active keys, and its key mapping) as Parquet in ``folder``."""
    source, columns = spec.sources[system], spec.columns_of(system)
    info = write_snapshot(source, columns, snapshot_file(folder, system), skip_missing=True)
    if info.missing:
        raise ComparisonError(f"{spec.name}: {system} lacks column(s) {', '.join(info.missing)}")
    out = {"rows": info.rows, "source": info.label}
    condition = active_filter(source)
    if condition is not None:
        keys = {k.name: k.columns[system] for k in spec.key}
        active = write_snapshot(source.model_copy(update={"filter": condition}), keys, active_file(folder, system))
        out["active"] = active.rows
    else:
        active_file(folder, system).unlink(missing_ok=True)
    if system in spec.key_mappings:
        _mapping_side(spec, system, folder)
    return out


def match_records(spec: NWaySpec, folder: Path) -> NWayStats:
    """Group every system's snapshot by key into ``matched_records.parquet`` (stats inside)."""
    con = duckdb_connect()
    keys = [k.name for k in spec.key]
    sides = {s: snapshot_side(snapshot_file(folder, s), list(spec.columns_of(s)), f"snapshot_{s}") for s in spec.systems}
    active = {s: snapshot_side(active_file(folder, s), keys, f"active_{s}")
              for s in spec.systems if active_file(folder, s).exists()}
    mappings = {s: snapshot_side(mapping_file(folder, s), ["key", "id"], f"key_mapping_{s}") for s in spec.key_mappings}
    stats = match_systems(con, spec, sides, active, mappings)
    out = folder / RECORDS_FILE
    partial = partial_path(out)
    con.execute(f"COPY {RECORDS} TO {sql_literal(str(partial))} (FORMAT parquet, "
                f"KV_METADATA {{{STATS_KEY}: {sql_literal(json.dumps(stats.to_json()))}}})")
    partial.replace(out)
    return stats


def read_stats(folder: Path) -> NWayStats:
    return NWayStats.from_json(json.loads((pq.read_metadata(folder / RECORDS_FILE).metadata or {})[STATS_KEY.encode()]))


@dataclass
class FoundNWay:
    table: pa.Table
    fields: dict[str, int]


def find_discrepancies(spec: NWaySpec, folder: Path) -> FoundNWay:
    con = duckdb_connect()
    table, fields = evaluate_systems(con, spec, f"read_parquet({sql_literal(str(folder / RECORDS_FILE))})")
    out = folder / DISCREPANCIES_FILE
    partial = partial_path(out)
    pq.write_table(table, partial)
    partial.replace(out)
    return FoundNWay(table, fields)


def update_tracker(spec: NWaySpec, folder: Path, tracker, run_id: str, on_outcome=None, started_at=None):
    """Fold the run into the tracker: a full scope (every system is read whole)."""
    from recon_pipelines.pipeline import tracker_run_id
    from recon_pipelines.tracker import Scope

    found = pq.read_table(folder / DISCREPANCIES_FILE)
    stats = read_stats(folder)
    summary = summary_of(stats, found, {})
    # The runs table's two-side columns: the keys compared as rows_a (so a run-level share rule
    # divides by the records compared); the per-system counts are in the summary.
    summary.update(rows_a=stats.keys, rows_b=0, matched=0)
    return tracker.apply_run(spec.name, run_id=tracker_run_id(spec.name, run_id), found=found, scope=Scope.full(),
                             summary=summary, started_at=started_at, escalation=spec.escalation, on_outcome=on_outcome)


# --------------------------------------------------------------------------- the summary users read first


def counts_line(stats: NWayStats) -> str:
    """``active: crm 847 / billing 839 / warehouse 851`` (rows when no system declares active:)."""
    systems = stats.systems
    if any(s.active is not None for s in systems.values()):
        return "active: " + " / ".join(f"{name} {s.active:,}" if s.active is not None else f"{name} -"
                                       for name, s in systems.items())
    return "rows: " + " / ".join(f"{name} {s.rows:,}" for name, s in systems.items())


def breakdown_lines(stats: NWayStats) -> list[str]:
    """Why the active counts differ, one line per pattern: ``5 active in crm, warehouse; missing in billing``."""
    lines = []
    for entry in stats.active_breakdown:
        parts = [f"active in {', '.join(entry['active'])}" if entry["active"] else "active nowhere"]
        if entry["inactive"]:
            parts.append(f"inactive in {', '.join(entry['inactive'])}")
        if entry["missing"]:
            parts.append(f"missing in {', '.join(entry['missing'])}")
        lines.append(f"{entry['records']:,} {'; '.join(parts)}")
    return lines
