"""The asset graph of one reconciliation, built from its spec (no per-reconciliation code).

    snapshot_a ─┐
                ├─> matched_pairs ─> discrepancies ─> tracker_state
    snapshot_b ─┘

Each asset runs one step of ``recon_pipelines.pipeline`` (which writes Parquet through
``ReconResource``) and returns metadata the UI plots over time. With ``incremental:`` in
the spec the assets are daily-partitioned: a partition reads the records modified that day
plus their counterparts, and a backfill of a date range runs as one run.
"""

# No `from __future__ import annotations` here: Dagster inspects the context annotation at runtime.
import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines import pipeline
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.engine.compare import unique_by_bitmap, value_counts
from recon_pipelines.engine.keys import invalid_key_sql
from recon_pipelines.remediation.notifications import notification_writer
from recon_pipelines.snapshots import snapshot_columns
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal

STEPS = ("snapshot_a", "snapshot_b", "matched_pairs", "discrepancies", "tracker_state")
RECON_TAG = "recon/reconciliation"
# Dagster's run monitoring (run_monitoring.enabled in dagster.yaml) ends a run older than this many seconds.
MAX_RUNTIME_TAG = "dagster/max_runtime"


def run_tags(spec: ReconciliationSpec) -> dict[str, str]:
    """Tags of every job of a reconciliation, and so of the runs launched from them."""
    return {RECON_TAG: spec.name, MAX_RUNTIME_TAG: str(int(spec.max_runtime))}
SAMPLE_ROWS = 20
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def asset_key(spec: ReconciliationSpec, step: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, step])


def partitions_def(spec: ReconciliationSpec) -> dg.DailyPartitionsDefinition | None:
    if spec.incremental is None:
        return None
    return dg.DailyPartitionsDefinition(start_date=spec.incremental.start.isoformat(), timezone=spec.incremental.timezone)


def run_scope(context: dg.AssetExecutionContext) -> pipeline.RunScope:
    """A partition (or a range of them, in a single-run backfill) is a time window."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return pipeline.RunScope.full()
    keys = context.partition_key_range
    window = context.partition_time_window
    label = keys.start if keys.start == keys.end else f"{keys.start}..{keys.end}"
    return pipeline.RunScope.of_window(window.start, window.end, label)


def common_asset_args(spec: ReconciliationSpec) -> dict:
    """What every asset of a reconciliation shares: group, partitions, the spec's tags and owner."""
    owner = spec.owner or ""
    owners = [owner] if "@" in owner or owner.startswith("team:") else None  # Dagster's accepted forms
    partitions = partitions_def(spec)
    return {
        "group_name": spec.name,
        "tags": dict(spec.tags),
        "owners": owners,
        "partitions_def": partitions,
        # A date range is read as one window: one run, not one per day.
        "backfill_policy": dg.BackfillPolicy.single_run() if partitions else None,
    }


def build_reconciliation_assets(spec: ReconciliationSpec) -> list[dg.AssetsDefinition]:
    return [_snapshot_asset(spec, "a"), _snapshot_asset(spec, "b"), _matched_pairs_asset(spec),
            _discrepancies_asset(spec), _tracker_state_asset(spec)]


def reconciliation_job(spec: ReconciliationSpec):
    return dg.define_asset_job(
        f"reconcile_{spec.name}",
        selection=dg.AssetSelection.groups(spec.name),
        description=spec.description or f"Compare {spec.source_names[0]} with {spec.source_names[1]} and update the tracker.",
        tags=run_tags(spec),
    )


# --------------------------------------------------------------------------- snapshots


def _snapshot_asset(spec: ReconciliationSpec, side: str) -> dg.AssetsDefinition:
    key = asset_key(spec, f"snapshot_{side}")
    source = spec.source_a if side == "a" else spec.source_b
    system = spec.source_names[0 if side == "a" else 1]
    columns = snapshot_columns(spec, side)
    keys = [k.name for k in spec.key]
    checks = [
        dg.AssetCheckSpec("required_columns", asset=key, blocking=True,
                          description="Every key and compared column exists in the source."),
        dg.AssetCheckSpec("key_not_null", asset=key,
                          description="No record lacks its key, null or blank (such records cannot be matched)."),
        dg.AssetCheckSpec("key_unique", asset=key, description="No key appears twice (duplicates are never paired)."),
    ]

    @dg.asset(
        key=key,
        check_specs=checks,
        kinds={source.type, "parquet"},
        description=f"Snapshot of {system}: the key and compared fields, under the spec's names "
        "(in a partition: the records modified that day on either side, and their counterparts).",
        **common_asset_args(spec),
    )
    def snapshot(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = run_scope(context)
        folder = recon.folder(spec, scope)
        result = pipeline.take_snapshot(spec, side, scope, folder)
        missing = [columns[name] for name in result.pop("missing")]
        metadata = {**result, "scope": scope.label, "path": dg.MetadataValue.path(str(folder[f"snapshot_{side}"]))}
        checks = [dg.AssetCheckResult(
            check_name="required_columns", passed=not missing, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"missing_columns": ", ".join(missing) or "none"},
        )]
        if set(keys) & {name for name, src in columns.items() if src in missing}:
            checks += [dg.AssetCheckResult(check_name=name, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={"reason": "key column missing"})
                       for name in ("key_not_null", "key_unique")]
        else:
            nulls, duplicates = _key_health(folder[f"snapshot_{side}"], keys)
            checks += [
                dg.AssetCheckResult(check_name="key_not_null", passed=nulls == 0, severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"records_without_key": nulls}),
                dg.AssetCheckResult(check_name="key_unique", passed=duplicates == 0, severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"duplicated_keys": duplicates}),
            ]
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return snapshot


def _key_health(path, keys: list[str]) -> tuple[int, int]:
    """Records whose key is invalid as the engine defines it (null, or blank text), and valid
    keys that appear more than once (an integer key is proven unique with one bitmap pass, as
    the engine does, before anything is grouped)."""
    key_list = ", ".join(map(quote_ident, keys))
    scan = f"read_parquet({sql_literal(str(path))})"
    with duckdb_connect() as con:
        types = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT {key_list} FROM {scan}").fetchall()}
        invalid = invalid_key_sql(keys, types)
        invalid_rows = con.execute(f"SELECT count(*) FROM {scan} WHERE {invalid}").fetchall()[0][0]
        if len(keys) == 1 and unique_by_bitmap(con, quote_ident(keys[0]), types[keys[0]], scan, f"NOT {invalid}"):
            return invalid_rows, 0
        duplicates = con.execute(f"SELECT count(*) FROM (SELECT {key_list} FROM {scan} WHERE NOT {invalid} "
                                 "GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
        return invalid_rows, duplicates


# --------------------------------------------------------------------------- matched pairs


def _matched_pairs_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    key = asset_key(spec, "matched_pairs")

    @dg.asset(
        key=key,
        deps=[asset_key(spec, "snapshot_a"), asset_key(spec, "snapshot_b")],
        kinds={"duckdb", "parquet"},
        check_specs=[dg.AssetCheckSpec("summaries_match", asset=key, description=(
            "Counts, sums of the summary fields and content hashes agree on both sides (summary before records)."))]
        if pipeline.wants_summaries(spec) else None,
        description="Records paired by key. Stores the pairs that differ in any way and the key anomalies; "
        "identical pairs are counted, not stored.",
        **common_asset_args(spec),
    )
    def matched_pairs(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        folder = recon.folder(spec, run_scope(context))
        stats = pipeline.match_pairs(spec, folder, recon.duckdb_memory_limit, recon.spill_dir())
        checks = []
        if pipeline.wants_summaries(spec):
            sums = {k: v for k, v in stats.items() if k.startswith(("count_", "sum_"))}
            checks.append(dg.AssetCheckResult(check_name="summaries_match", passed=bool(stats["summaries_match"]),
                                              severity=dg.AssetCheckSeverity.WARN, metadata=sums))
        metadata = {k: v for k, v in stats.items() if not k.startswith("content_hash")}
        metadata["path"] = dg.MetadataValue.path(str(folder["pairs"]))
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return matched_pairs


# --------------------------------------------------------------------------- discrepancies


def _discrepancies_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(spec, "discrepancies"),
        deps=[asset_key(spec, "matched_pairs")],
        kinds={"duckdb", "parquet"},
        description="Every disagreement under the spec's field rules: one row per record and field, both raw values, "
        "the reason, a severity and a stable id. Records still in flight (propagation_lag) are held back.",
        **common_asset_args(spec),
    )
    def discrepancies(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        folder = recon.folder(spec, run_scope(context))
        found = pipeline.find_discrepancies(spec, folder, memory_limit=recon.duckdb_memory_limit,
                                            spill_dir=recon.spill_dir())
        return dg.MaterializeResult(metadata=discrepancy_metadata(found, folder))

    return discrepancies


def discrepancy_metadata(found: pipeline.Found, folder: pipeline.RunFolder) -> dict:
    table = found.table
    severities = value_counts(table, "severity")
    metadata: dict = {"discrepancies": table.num_rows, "in_flight": len(found.in_flight)}
    metadata.update({f"kind/{k}": n for k, n in value_counts(table, "kind").items()})
    metadata.update({f"severity/{s}": severities.get(s, 0) for s in _SEVERITY_ORDER})
    for name, stats in found.fields.items():
        metadata[f"field/{name}/mismatches"] = stats.mismatches
        metadata[f"field/{name}/within_tolerance"] = stats.within_tolerance
        if stats.max_within_tolerance is not None:
            metadata[f"field/{name}/max_within_tolerance"] = float(stats.max_within_tolerance)
    metadata["sample"] = dg.MetadataValue.md(sample_markdown(table))
    metadata["path"] = dg.MetadataValue.path(str(folder["discrepancies"]))
    return metadata


def sample_markdown(table: pa.Table, limit: int = SAMPLE_ROWS) -> str:
    if table.num_rows == 0:
        return "No discrepancies: the two sides agree."
    # Sorted in Arrow, so only the rows shown become Python objects.
    rank = pc.fill_null(pc.index_in(table.column("severity"), value_set=pa.array(list(_SEVERITY_ORDER))), len(_SEVERITY_ORDER))
    ranked = table.append_column("__rank", rank)
    order = pc.sort_indices(ranked, sort_keys=[("__rank", "ascending"), ("kind", "ascending"), ("key", "ascending")])
    rows = table.take(order[:limit]).to_pylist()
    header = "| severity | kind | key | field | A | B | reason |\n|---|---|---|---|---|---|---|"
    lines = [
        "| " + " | ".join(_md_cell(r[c]) for c in ("severity", "kind", "key", "field", "value_a", "value_b", "reason")) + " |"
        for r in rows
    ]
    more = f"\n\n{table.num_rows - len(rows)} more in the discrepancies file." if table.num_rows > len(rows) else ""
    return "\n".join([header, *lines]) + more


def _md_cell(value) -> str:
    """Data values are shown, never interpreted: no table breaks, links or HTML from the data."""
    if value is None:
        return "∅"
    text = str(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    for ch in "\\|`*_[]<>#":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", " ")


# --------------------------------------------------------------------------- tracker state


def _tracker_state_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    key = asset_key(spec, "tracker_state")
    # The guard judges full runs only (tracker/guard.py), so partitioned graphs have no check.
    guarded = partitions_def(spec) is None
    checks = [dg.AssetCheckSpec(
        "export_guard", asset=key, blocking=True,
        description="No side is empty or shrank by more than guard.max_shrink since the previous run "
        "(otherwise the run is held as suspicious: nothing is resolved or opened until `recon runs accept`).",
    )] if guarded else None

    @dg.asset(
        key=key,
        deps=[asset_key(spec, "discrepancies")],
        check_specs=checks,
        kinds={"sql"},
        # One writer per reconciliation at a time, across runs (the tracker also locks).
        pool=f"recon_{spec.name}",
        description="The tracker after this run: new discrepancies inserted, those seen again refreshed, "
        "those no longer seen (among the keys this run compared) resolved.",
        **common_asset_args(spec),
    )
    def tracker_state(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = run_scope(context)
        outcome = pipeline.update_tracker(spec, recon.folder(spec, scope), scope, recon.tracker(),
                                          run_id=f"{context.run.run_id}:{scope.label}",
                                          on_outcome=notification_writer(spec))  # the outbox, in the same transaction
        results = [export_guard_result(outcome)] if guarded else []
        return dg.MaterializeResult(metadata=tracker_metadata(recon, spec, outcome), check_results=results)

    return tracker_state


def export_guard_result(outcome) -> dg.AssetCheckResult:
    """Blocking and ERROR: a held run fails, and says in one line why and how to accept it."""
    return dg.AssetCheckResult(
        check_name="export_guard", passed=not outcome.held, severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.held, metadata={"held": outcome.held or "no", "run_id": outcome.run_id},
    )


def tracker_metadata(recon: ReconResource, spec: ReconciliationSpec, outcome) -> dict:
    tracker = recon.tracker()
    counts = tracker.status_counts(spec.name)
    open_by_severity = tracker.open_severity_counts(spec.name)
    return {
        "held": outcome.held or "no",
        "new": len(outcome.new_ids),
        "reopened": len(outcome.reopened_ids),
        "seen_again": outcome.seen_again,
        "resolved": len(outcome.resolved_ids),
        "escalated": len(outcome.escalated_ids),
        "open": outcome.open_count,
        **{f"status/{s}": counts.get(s, 0) for s in ("new", "acknowledged", "escalated", "muted", "resolved")},
        **{f"open_severity/{s}": open_by_severity.get(s, 0) for s in _SEVERITY_ORDER},
        "tracker": tracker.url,
    }
