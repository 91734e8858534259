"""Keys whose window passed: re-check them and report what is still wrong as ``not_propagated``.

The re-check is the ordinary key-scoped run (pipeline.py): both sides are read for those keys
and compared under the spec's rules, so a counterpart that arrived late, or whose values differ
only within a tolerance, reports nothing. Whatever the comparison still finds for such a key
(missing on one side, a field mismatch) is reported with kind ``not_propagated``, its original
kind and both event times in ``detail``; the tracker then handles it like any discrepancy.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recon_pipelines import pipeline
from recon_pipelines.engine.compare import discrepancy_id
from recon_pipelines.engine.severity import severity_sql
from recon_pipelines.snapshots import partial_path
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect
from recon_pipelines.streams.expectations import Expectation, ExpectationStore
from recon_pipelines.tracker import Tracker

NOT_PROPAGATED = "not_propagated"


def relabel_not_propagated(spec: ReconciliationSpec, folder: pipeline.RunFolder,
                           expected: dict[str, Expectation]) -> int:
    """Rewrite the run's discrepancies for keys with an expired expectation; returns how many."""
    table = pq.read_table(folder["discrepancies"])
    if not expected or table.num_rows == 0:
        return 0
    rows, was = table.to_pylist(), []
    for row in rows:
        expectation = expected.get(row["key"])
        was.append(None if expectation is None else row["kind"])
        if expectation is None:
            continue
        detail = {"was": row["kind"], "written_on": expectation.written_on, "op": expectation.op,
                  "event_at": expectation.event_at.isoformat(), "due_at": expectation.due_at.isoformat(),
                  "counterpart_at": expectation.counterpart_at.isoformat() if expectation.counterpart_at else None}
        if row.get("detail"):
            detail["detail"] = row["detail"]
        row.update(kind=NOT_PROPAGATED, id=discrepancy_id(spec.name, NOT_PROPAGATED, row["key"], row["field"]),
                   detail=json.dumps(detail, separators=(",", ":")))
    partial = partial_path(folder["discrepancies"])
    pq.write_table(_rated(spec, pa.Table.from_pylist(rows, schema=table.schema), was), partial)
    partial.replace(folder["discrepancies"])
    return sum(kind is not None for kind in was)


def _rated(spec: ReconciliationSpec, table: pa.Table, was: list[str | None]) -> pa.Table:
    """The relabelled rows' severity by the spec's rules, first match wins, where a rule's ``kind``
    matches ``not_propagated`` or the kind the row had (a rule for only_in_a still rates a late one)."""
    con = duckdb_connect()
    con.register("found", table.append_column("was", pa.array(was, pa.string())))
    tier = severity_sql(spec.severity, ("kind", "was"), "field", "difference", "relative_difference")
    return con.sql(f"""SELECT * EXCLUDE (was) REPLACE (CASE WHEN was IS NULL THEN severity ELSE {tier} END AS severity)
                       FROM found ORDER BY kind, key, field""").to_arrow_table().cast(table.schema)


def expired(store: ExpectationStore, keys, as_of: datetime) -> dict[str, Expectation]:
    """The keys' expectations whose window had passed by ``as_of`` (the re-check's start)."""
    return {k: e for k, e in store.expectations(keys).items() if e.due_at <= as_of}


def recheck_expired(spec: ReconciliationSpec, tracker: Tracker, store: ExpectationStore, keys: list[str],
                    storage_dir: str | Path, run_id: str, as_of: datetime | None = None):
    """The re-check run in this process (``pipeline.run``, as the Dagster job runs it, see
    dagster_defs/runs.py); closes the keys' expectations once the tracker has the outcome."""
    as_of = as_of or datetime.now(timezone.utc)
    expected = expired(store, keys, as_of)
    outcome = pipeline.run(spec, pipeline.RunScope.of_keys(keys), storage_dir, tracker, run_id=run_id,
                           before_tracker=lambda folder: relabel_not_propagated(spec, folder, expected)).outcome
    store.settle(keys, as_of)
    return outcome
