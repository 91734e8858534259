"""What the Dagster UI shows of a reconciliation's results: tables of discrepancies, per-field
and per-kind summaries, snapshot schemas. Values from the data are shown, never interpreted
(``shown`` is the one place that makes a value safe to display)."""

from __future__ import annotations

import re

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from recon_pipelines.engine.compare import value_counts
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.schema import OPEN_STATUSES, discrepancies

TABLE_ROWS = 100
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029|]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "|": "\\|"}
MAX_SHOWN = 200
CELL_CHARS = 60  # table cells stay narrow enough to read; the full values are in the tracker and the Parquet file

DISCREPANCY_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("id", "string", description="Stable id: give it to the discrepancy_action job."),
    dg.TableColumn("status", "string", description="In the tracker (new, acknowledged, escalated, muted, resolved)."),
    dg.TableColumn("severity", "string"),
    dg.TableColumn("kind", "string"),
    dg.TableColumn("key", "string"),
    dg.TableColumn("field", "string"),
    dg.TableColumn("A", "string", description="Side A's raw value (or record)."),
    dg.TableColumn("B", "string", description="Side B's raw value (or record)."),
    dg.TableColumn("detail", "string", description="The reason, and by how much."),
    dg.TableColumn("first_seen", "string", description="When the tracker first saw it (UTC)."),
])


def shown(value, limit: int = MAX_SHOWN) -> str:
    """A value as one safe line: newlines, carriage returns, tabs, other control characters and
    pipes are escaped (a value can neither split a row nor a table cell), long values cut."""
    if value is None:
        return "∅"
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group()) or _code(ord(m.group())), text)


def _code(point: int) -> str:
    return f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}"


def most_severe_first(table: pa.Table, limit: int = TABLE_ROWS) -> list[dict]:
    """The ``limit`` most severe rows (then by kind, key, field); sorted in Arrow, so only the
    rows shown become Python objects."""
    rank = pc.fill_null(pc.index_in(table.column("severity"), value_set=pa.array(list(SEVERITY_ORDER))), len(SEVERITY_ORDER))
    ranked = table.append_column("__rank", rank)
    order = pc.sort_indices(ranked, sort_keys=[("__rank", "ascending"), ("kind", "ascending"), ("key", "ascending"),
                                               ("field", "ascending")])
    return table.take(order[:limit]).to_pylist()


def tracker_rows(tracker: Tracker, ids: list[str]) -> dict[str, dict]:
    """Key, status and first sighting of the given discrepancies (those the tracker holds)."""
    d = discrepancies
    found: dict[str, dict] = {}
    with tracker.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            query = sa.select(d.c.id, d.c.key, d.c.status, d.c.first_seen).where(d.c.id.in_(ids[start:start + 500]))
            found.update({row.id: {"key": row.key, "status": row.status, "first_seen": row.first_seen}
                          for row in conn.execute(query)})
    return found


def discrepancy_table(rows: list[dict], tracked: dict[str, dict]) -> dg.TableMetadataValue:
    """Rows of discrepancies with their tracker state; ``new`` when the tracker has not seen one yet."""
    records = []
    for row in rows:
        state = tracked.get(row["id"], {})
        first_seen = state.get("first_seen")
        detail = ": ".join(str(x) for x in (row.get("reason"), row.get("detail")) if x)
        records.append(dg.TableRecord({
            "id": row["id"], "status": state.get("status", "new"), "severity": row["severity"], "kind": row["kind"],
            "key": shown(row["key"], CELL_CHARS), "field": shown(row["field"]) if row["field"] else "",
            "A": shown(row["value_a"], CELL_CHARS), "B": shown(row["value_b"], CELL_CHARS), "detail": shown(detail, CELL_CHARS),
            "first_seen": first_seen.strftime("%Y-%m-%d %H:%M:%S") if first_seen else "",
        }))
    return dg.MetadataValue.table(records, schema=DISCREPANCY_COLUMNS)


def kind_table(table: pa.Table) -> dg.TableMetadataValue:
    """One row per kind: how many of each severity."""
    counts: dict[str, dict[str, int]] = {}
    for row in table.group_by(["kind", "severity"]).aggregate([("id", "count")]).to_pylist():
        counts.setdefault(row["kind"], {})[row["severity"]] = row["id_count"]
    records = [dg.TableRecord({"kind": kind, **{s: by.get(s, 0) for s in SEVERITY_ORDER}, "total": sum(by.values())})
               for kind, by in sorted(counts.items())]
    schema = dg.TableSchema(columns=[dg.TableColumn("kind", "string"), *(dg.TableColumn(s, "int") for s in SEVERITY_ORDER),
                                     dg.TableColumn("total", "int")])
    return dg.MetadataValue.table(records, schema=schema)


def field_figures(fields: dict, matched: int) -> dict[str, dict]:
    """Per field: ``agree`` (matched pairs on which the field raises nothing, identical or absorbed),
    ``mapped`` (agree only through the rule's value mapping), ``within_tolerance`` (raw values
    differ, absorbed by tolerance, lag or normalisation) and ``mismatches``."""
    return {
        name: {"mismatches": stats.mismatches, "agree": max(matched - stats.mismatches, 0), "mapped": stats.mapped,
               "within_tolerance": stats.within_tolerance, "max_within_tolerance": stats.max_within_tolerance}
        for name, stats in fields.items()
    }


def field_table(figures: dict[str, dict]) -> dg.TableMetadataValue:
    columns = ("mismatches", "agree", "mapped", "within_tolerance")
    records = [dg.TableRecord({"field": shown(name), **{c: f[c] for c in columns},
                               "max_within_tolerance": "" if f["max_within_tolerance"] is None else f"{f['max_within_tolerance']:g}"})
               for name, f in figures.items()]
    schema = dg.TableSchema(columns=[dg.TableColumn("field", "string"), *(dg.TableColumn(c, "int") for c in columns),
                                     dg.TableColumn("max_within_tolerance", "string")])
    return dg.MetadataValue.table(records, schema=schema)


def severity_counts(table: pa.Table) -> dict[str, int]:
    counts = value_counts(table, "severity")
    return {s: counts.get(s, 0) for s in SEVERITY_ORDER}


def open_counts(tracker: Tracker, reconciliation: str) -> dict[str, int]:
    """Open discrepancies by severity, muted ones left out (someone chose to silence them)."""
    d = discrepancies
    unmuted = [s for s in OPEN_STATUSES if s != "muted"]
    query = (sa.select(d.c.severity, sa.func.count()).where(d.c.reconciliation == reconciliation, d.c.status.in_(unmuted))
             .group_by(d.c.severity))
    with tracker.engine.connect() as conn:
        return {severity: count for severity, count in conn.execute(query)}


def open_discrepancies(tracker: Tracker, reconciliation: str, limit: int = TABLE_ROWS) -> list[dict]:
    """The open discrepancies to show first: most severe, then most recently seen."""
    d = discrepancies
    rank = sa.case({s: i for s, i in SEVERITY_ORDER.items()}, value=d.c.severity, else_=len(SEVERITY_ORDER))
    query = (sa.select(d).where(d.c.reconciliation == reconciliation, d.c.status.in_(OPEN_STATUSES))
             .order_by(rank, d.c.last_seen.desc(), d.c.id).limit(limit))
    with tracker.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def column_schema(path) -> dg.TableSchema:
    """A snapshot's columns (the spec's names) and their Arrow types."""
    schema = pq.read_schema(path)
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])
