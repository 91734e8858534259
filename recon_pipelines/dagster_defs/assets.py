"""The asset graph of one reconciliation, built from its spec (no per-reconciliation code).

    snapshot_a ─┐
                ├─> matched_pairs ─> discrepancies ─> tracker_state
    snapshot_b ─┘

Each asset runs one step of ``recon_pipelines.pipeline`` (which writes Parquet through
``ReconResource``) and returns metadata the UI plots over time. With ``incremental:`` in
the spec the assets are daily-partitioned: a partition reads the records modified that day
plus their counterparts, and a backfill of a date range runs as one run. That run still gives
each partition its own day's figures (``day_runs``): the figures a run of that day alone shows,
computed from the range's snapshots; the range's totals go to the run's log.
"""

# No `from __future__ import annotations` here: Dagster inspects the context annotation at runtime.
import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines import expectations, pipeline
from recon_pipelines.dagster_defs import metadata as shown_in_ui
from recon_pipelines.dagster_defs import dbt as dbt_lineage
from recon_pipelines.dagster_defs import schema_drift
from recon_pipelines.dagster_defs.metadata import SEVERITY_ORDER
from recon_pipelines.dagster_defs.resources import ReconResource, SparkEngine
from recon_pipelines.dagster_defs.result_checks import (
    freshness_policy,
    mismatch_rate_check,
    open_discrepancies_check,
)
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


def day_runs(context: dg.AssetExecutionContext, recon: ReconResource,
             spec: ReconciliationSpec) -> list[tuple[pipeline.RunScope, pipeline.RunFolder]]:
    """The days of a single-run backfill over several daily partitions, each with the folder a run
    of that day alone uses; empty for any other run."""
    if not context.has_partition_key_range or len(context.partition_keys) < 2:
        return []
    partitions = partitions_def(spec)
    days = []
    for key in context.partition_keys:
        window = partitions.time_window_for_partition_key(key)
        day = pipeline.RunScope.of_window(window.start, window.end, key)
        days.append((day, recon.folder(spec, day)))
    return days


def report(context: dg.AssetExecutionContext, scope: pipeline.RunScope, metadata: dict, by_day: dict[str, dict],
           check_results=()) -> dg.MaterializeResult:
    """The materialization: in a range run each partition gets its own day's figures (plotted per
    day), and the range's totals go to the run's log rather than onto every day."""
    if not by_day:
        return dg.MaterializeResult(metadata=metadata, check_results=list(check_results))
    for label, day_metadata in by_day.items():
        context.add_asset_metadata({**day_metadata, "scope": label, "backfill_range": scope.label}, partition_key=label)
    totals = ", ".join(f"{k}={v}" for k, v in metadata.items() if isinstance(v, int | float) and not isinstance(v, bool))
    context.log.info(f"{context.asset_key.to_user_string()}, whole range {scope.label}: {totals}")
    return dg.MaterializeResult(check_results=list(check_results))


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
        schema_drift.check_spec(spec, key),
    ] + [
        # error: blocking, so a failure stops the downstream assets; warn: reported only.
        dg.AssetCheckSpec(e.check_name, asset=key, blocking=e.severity == "error",
                          description=f"{e.kind} expectation ({e.severity}) from source_{side}.expect.")
        for e in source.expect
    ]

    @dg.asset(
        key=key,
        deps=dbt_lineage.upstream_keys(source),  # a dbt model's asset, when the side is one
        check_specs=checks,
        kinds={source.type, "parquet"},
        description=f"Snapshot of {system}: the key and compared fields, under the spec's names "
        "(in a partition: the records modified that day on either side, and their counterparts).",
        **common_asset_args(spec),
    )
    def snapshot(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = run_scope(context)
        folder = recon.folder(spec, scope)
        days = day_runs(context, recon, spec)
        choice = asset_strategy(spec, scope)
        result = pipeline.take_snapshot(spec, side, scope, folder, days, choice=choice)
        if result.get("strategy"):  # paired where the data lives: nothing copied
            return _at_source_snapshot(context, recon, spec, side, result, scope)
        by_day = {day.label: snapshot_metadata(result["days"][day.label], day_folder, side) for day, day_folder in days}
        missing = [columns[name] for name in result.pop("missing")]
        metadata = snapshot_metadata(result, folder, side)
        drift_metadata, drift_check = schema_drift.observe(spec, side, recon.tracker(),
                                                           pipeline.tracker_run_id(spec.name, context.run.run_id),
                                                           metadata["dagster/column_schema"].schema)
        metadata = {**metadata, **drift_metadata, "scope": scope.label,
                    **({"strategy": choice.name, "strategy_reason": choice.reason} if choice else {})}
        checks = [drift_check, dg.AssetCheckResult(
            check_name="required_columns", passed=not missing, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"missing_columns": ", ".join(missing) or "none"},
        )]
        if set(keys) & {name for name, src in columns.items() if src in missing}:
            checks += [dg.AssetCheckResult(check_name=name, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                           metadata={"reason": "key column missing"})
                       for name in ("key_not_null", "key_unique")]
        else:
            checks += key_check_results(*_key_health(folder[f"snapshot_{side}"], keys))
        checks += expectation_results(spec, side, folder[f"snapshot_{side}"], missing)
        return report(context, scope, metadata, by_day, checks)

    return snapshot


# Strategies whose sides the snapshot assets can describe without a copy (schema, key health at the source).
AT_SOURCE_IN_ASSETS = ("postgres_join", "bucket_summaries")


def asset_strategy(spec: ReconciliationSpec, scope: pipeline.RunScope):
    """The run's pairing strategy, or None for the local path. A full scope whose tables are
    paired in PostgreSQL takes no snapshot; partitions (windows) always pair locally."""
    if not scope.is_full:
        return None
    choice = pipeline.choose_strategy(spec, scope)
    return choice if choice.name in AT_SOURCE_IN_ASSETS else None


def _at_source_snapshot(context, recon: ReconResource, spec: ReconciliationSpec, side: str, result: dict,
                        scope: pipeline.RunScope) -> dg.MaterializeResult:
    """The snapshot of a side paired at its source: its schema and key health, read there."""
    from recon_pipelines.engine import pushdown

    source_schema = pipeline.source_schema(spec, side)
    schema = dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in source_schema])
    missing = [src for name, src in snapshot_columns(spec, side).items() if name not in source_schema.names]
    nulls, duplicates = pushdown.key_health(spec, side)
    drift_metadata, drift_check = schema_drift.observe(spec, side, recon.tracker(),
                                                       pipeline.tracker_run_id(spec.name, context.run.run_id), schema)
    metadata = {"source": result["source"], "scope": scope.label, "strategy": result["strategy"],
                "strategy_reason": result["strategy_reason"], "rows_moved": 0,
                "dagster/column_schema": dg.MetadataValue.table_schema(schema), **drift_metadata}
    checks = [drift_check,
              dg.AssetCheckResult(check_name="required_columns", passed=not missing, severity=dg.AssetCheckSeverity.ERROR,
                                  metadata={"missing_columns": ", ".join(missing) or "none"}),
              *key_check_results(nulls, duplicates)]
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def key_check_results(nulls: int, duplicates: int) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(check_name="key_not_null", passed=nulls == 0, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"records_without_key": nulls}),
        dg.AssetCheckResult(check_name="key_unique", passed=duplicates == 0, severity=dg.AssetCheckSeverity.WARN,
                            metadata={"duplicated_keys": duplicates}),
    ]


def pairing_metadata_for_ui(pairing) -> dict:
    """Which strategy paired the records, why, and the rows it moved per side."""
    if pairing is None:
        return {}
    return {"strategy": pairing.strategy, "strategy_reason": pairing.reason,
            "rows_moved_a": int(pairing.rows_moved.get("a", 0)), "rows_moved_b": int(pairing.rows_moved.get("b", 0))}


def expectation_results(spec: ReconciliationSpec, side: str, path, missing: list[str]) -> list[dg.AssetCheckResult]:
    """The side's expectations as asset check results (evaluated by ``recon_pipelines.expectations``)."""
    source = spec.source_a if side == "a" else spec.source_b
    if not source.expect:
        return []
    severity = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}
    if missing:  # required_columns already failed; the expectations cannot be judged
        return [dg.AssetCheckResult(check_name=e.check_name, passed=False, severity=severity[e.severity],
                                    metadata={"reason": "snapshot lacks a required column"}) for e in source.expect]
    return [dg.AssetCheckResult(check_name=o.check_name, passed=o.passed, severity=severity[o.severity],
                                metadata=o.metadata())
            for o in expectations.evaluate_snapshot(spec, side, path)]


def snapshot_metadata(figures: dict, folder: pipeline.RunFolder, side: str) -> dict:
    path = folder[f"snapshot_{side}"]
    metadata = {k: v for k, v in figures.items() if k not in ("missing", "days")}
    return {**metadata, "dagster/row_count": figures["rows"],
            "dagster/column_schema": dg.MetadataValue.table_schema(shown_in_ui.column_schema(path)), "path": dg.MetadataValue.path(str(path))}


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

    asset = dg.asset(
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
        return pair(context, recon, None)

    def pair(context: dg.AssetExecutionContext, recon: ReconResource, spark: SparkEngine | None) -> dg.MaterializeResult:
        scope = run_scope(context)
        folder = recon.folder(spec, scope)
        confirmed = pipeline.MatchDecisions.of(recon.tracker(), spec).confirmed  # suggested pairs an operator confirmed
        spark_pairing = spark.strategy(spec) if spark is not None else None  # the resource's master
        choice = pipeline.choose_strategy(spec, scope, spark_pairing) if spark_pairing is not None else None
        stats = pipeline.match_pairs(spec, folder, recon.duckdb_memory_limit, recon.spill_dir(), confirmed, choice=choice)
        checks = []
        if pipeline.wants_summaries(spec):
            sums = {k: v for k, v in stats.items() if k.startswith(("count_", "sum_"))}
            checks.append(dg.AssetCheckResult(check_name="summaries_match", passed=bool(stats["summaries_match"]),
                                              severity=dg.AssetCheckSeverity.WARN, metadata=sums))
        types = schema_drift.type_differences(spec, recon.tracker())  # the sources', the same on every day
        by_day = {day.label: {**pairs_metadata(pipeline.match_pairs(spec, day_folder, recon.duckdb_memory_limit,
                                                                    recon.spill_dir(), confirmed, choice=choice), day_folder), **types}
                  for day, day_folder in day_runs(context, recon, spec)}
        return report(context, scope, {**pairs_metadata(stats, folder), **types}, by_day, checks)

    if spec.engine.type == "spark":  # only a spark spec needs the Spark resource (its master, conf)
        def matched_pairs_on_spark(context: dg.AssetExecutionContext, recon: ReconResource,
                                   spark: SparkEngine) -> dg.MaterializeResult:
            return pair(context, recon, spark)

        matched_pairs_on_spark.__name__ = "matched_pairs"
        return asset(matched_pairs_on_spark)
    return asset(matched_pairs)


def pairs_metadata(stats: dict, folder: pipeline.RunFolder) -> dict:
    metadata = {k: v for k, v in stats.items() if not k.startswith("content_hash") and k != "groups"}
    # match: group and window rules: groups matched, with sums that differ, ambiguous, lines left unmatched
    metadata.update({f"groups/{k}": v for k, v in stats.get("groups", {}).items()})
    metadata["path"] = dg.MetadataValue.path(str(folder["pairs"]))
    return metadata


# --------------------------------------------------------------------------- discrepancies


def _discrepancies_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    key = asset_key(spec, "discrepancies")

    @dg.asset(
        key=key,
        deps=[asset_key(spec, "matched_pairs")],
        kinds={"duckdb", "parquet"},
        check_specs=[dg.AssetCheckSpec("mismatch_rate", asset=key, description=(
            "The share of compared records with a discrepancy stays within the spec's expect.max_mismatch_rate."))],
        description="Every disagreement under the spec's field rules: one row per record and field, both raw values, "
        "the reason, a severity and a stable id. Records still in flight (propagation_lag) are held back.",
        freshness_policy=freshness_policy(spec),
        **common_asset_args(spec),
    )
    def discrepancies(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = run_scope(context)
        folder = recon.folder(spec, scope)
        decided = pipeline.MatchDecisions.of(recon.tracker(), spec)
        judged = dict(memory_limit=recon.duckdb_memory_limit, spill_dir=recon.spill_dir(),
                      decided=decided.confirmed + decided.rejected, confirmed=decided.confirmed)
        found = pipeline.find_discrepancies(spec, folder, **judged)
        by_day = {}
        for day, day_folder in day_runs(context, recon, spec):
            day_found = pipeline.find_discrepancies(spec, day_folder, **judged)
            by_day[day.label] = discrepancy_metadata(day_found, day_folder, recon.tracker())
        metadata = discrepancy_metadata(found, folder, recon.tracker())
        return report(context, scope, metadata, by_day, [mismatch_rate_check(spec, metadata)])

    return discrepancies


def discrepancy_metadata(found: pipeline.Found, folder: pipeline.RunFolder, tracker=None) -> dict:
    """Figures to plot, and the tables to read: the most severe discrepancies (with their tracker
    state when ``tracker`` is given), and counts per kind and per field."""
    table = found.table
    matched = pipeline.read_match_stats(folder["pairs"])
    metadata: dict = {"discrepancies": table.num_rows, "in_flight": len(found.in_flight),
                      "records_compared": matched["matched"] + matched["only_in_a"] + matched["only_in_b"],
                      "records_with_discrepancies": _records_with_discrepancies(table)}
    metadata.update({f"kind/{k}": n for k, n in value_counts(table, "kind").items()})
    metadata.update({f"severity/{s}": n for s, n in shown_in_ui.severity_counts(table).items()})
    figures = shown_in_ui.field_figures(found.fields, matched["matched"])
    for name, stats in figures.items():
        for figure in ("mismatches", "agree", "mapped", "within_tolerance"):
            metadata[f"field/{name}/{figure}"] = stats[figure]
        if stats["max_within_tolerance"] is not None:
            metadata[f"field/{name}/max_within_tolerance"] = float(f"{stats['max_within_tolerance']:.9g}")  # no float noise
    rows = shown_in_ui.most_severe_first(table)
    tracked = shown_in_ui.tracker_rows(tracker, [r["id"] for r in rows]) if tracker is not None else {}
    metadata["most_severe"] = shown_in_ui.discrepancy_table(rows, tracked)
    metadata["by_kind"] = shown_in_ui.kind_table(table)
    metadata["by_field"] = shown_in_ui.field_table(figures)
    metadata["path"] = dg.MetadataValue.path(str(folder["discrepancies"]))
    if found.sample is not None:
        metadata.update({f"sample/{k}": v for k, v in found.sample.items() if v is not None})
    if found.suggestions is not None:
        metadata.update({f"suggestions/{k}": v for k, v in found.suggestions.items()})
    return metadata


def _records_with_discrepancies(table: pa.Table) -> int:
    """Compared records (pairs, and records on one side only) with at least one discrepancy."""
    compared = table.filter(pc.is_in(table.column("kind"), pa.array(["field_mismatch", "only_in_a", "only_in_b", "unmatched_a", "unmatched_b"])))
    return pc.count_distinct(compared.column("key")).as_py()


# --------------------------------------------------------------------------- tracker state


def _tracker_state_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    key = asset_key(spec, "tracker_state")
    # The guard judges full runs only (tracker/guard.py), so partitioned graphs have no check.
    guarded = partitions_def(spec) is None
    checks = [dg.AssetCheckSpec(
        "export_guard", asset=key, blocking=True,
        description="No side is empty or shrank by more than guard.max_shrink since the previous run "
        "(otherwise the run is held as suspicious: nothing is resolved or opened until `recon runs accept`).",
    )] if guarded else []

    @dg.asset(
        key=key,
        deps=[asset_key(spec, "discrepancies")],
        kinds={"sql"},
        # One writer per reconciliation at a time, across runs (the tracker also locks).
        pool=f"recon_{spec.name}",
        check_specs=[dg.AssetCheckSpec("open_discrepancies", asset=key, description=(
            "Fails while more critical discrepancies are open than the spec's expect.max_open_critical (default 0); "
            "warns past expect.max_open_warning. Muted ones do not count.")), *checks],
        description="The tracker after this run: new discrepancies inserted, those seen again refreshed, "
        "those no longer seen (among the keys this run compared) resolved.",
        freshness_policy=freshness_policy(spec),
        **common_asset_args(spec),
    )
    def tracker_state(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = run_scope(context)
        outcome = pipeline.update_tracker(spec, recon.folder(spec, scope), scope, recon.tracker(),
                                          run_id=f"{context.run.run_id}:{scope.label}",
                                          on_outcome=notification_writer(spec))  # the outbox, in the same transaction
        days = day_runs(context, recon, spec)
        resolved = shown_in_ui.tracker_rows(recon.tracker(), outcome.resolved_ids) if days else {}
        resolved_keys = {i: row["key"] for i, row in resolved.items()}
        by_day = {day.label: tracker_metadata(recon, spec, pipeline.day_outcome(outcome, day_folder, resolved_keys))
                  for day, day_folder in days}
        return report(context, scope, tracker_metadata(recon, spec, outcome), by_day,
                      [open_discrepancies_check(spec, shown_in_ui.open_counts(recon.tracker(), spec.name)),
                       *([export_guard_result(outcome)] if guarded else [])])

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
        **{f"open_severity/{s}": open_by_severity.get(s, 0) for s in SEVERITY_ORDER},
        "open_discrepancies": shown_in_ui.discrepancy_table(*_with_state(shown_in_ui.open_discrepancies(tracker, spec.name))),
        "tracker": tracker.url,
    }


def _with_state(rows: list[dict]) -> tuple[list[dict], dict[str, dict]]:
    return rows, {r["id"]: {"status": r["status"], "first_seen": r["first_seen"]} for r in rows}
