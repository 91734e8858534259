"""The asset graph of one reconciliation, built from its spec (no per-reconciliation code).

    snapshot_a ─┐
                ├─> matched_pairs ─> discrepancies ─> tracker_state
    snapshot_b ─┘

Each asset writes its result as Parquet through ``ReconResource`` and returns
metadata the UI plots over time; the snapshots carry asset checks that flag a
bad side before anything is compared.
"""


import json
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.engine import connect, evaluate, match, side_columns
from recon_pipelines.snapshots import snapshot_columns, snapshot_side, write_snapshot
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal
from recon_pipelines.tracker import Scope

STEPS = ("snapshot_a", "snapshot_b", "matched_pairs", "discrepancies", "tracker_state")
RECON_TAG = "recon/reconciliation"
MATCH_STATS_KEY = "recon_match_stats"
SAMPLE_ROWS = 20
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def asset_key(spec: ReconciliationSpec, step: str) -> dg.AssetKey:
    return dg.AssetKey([spec.name, step])


def scope_of(context: dg.AssetExecutionContext) -> str:
    """The folder a run's files go to: one per partition, ``full`` for unpartitioned runs."""
    return context.partition_key if context.has_partition_key else "full"


def common_asset_args(spec: ReconciliationSpec) -> dict:
    """What every asset of a reconciliation shares: its group, the spec's tags and owner."""
    owner = spec.owner or ""
    owners = [owner] if "@" in owner or owner.startswith("team:") else None  # Dagster's accepted forms
    return {"group_name": spec.name, "tags": dict(spec.tags), "owners": owners}


def build_reconciliation_assets(spec: ReconciliationSpec) -> list[dg.AssetsDefinition]:
    return [_snapshot_asset(spec, "a"), _snapshot_asset(spec, "b"), _matched_pairs_asset(spec),
            _discrepancies_asset(spec), _tracker_state_asset(spec)]


def reconciliation_job(spec: ReconciliationSpec):
    return dg.define_asset_job(
        f"reconcile_{spec.name}",
        selection=dg.AssetSelection.groups(spec.name),
        description=spec.description or f"Compare {spec.source_names[0]} with {spec.source_names[1]} and update the tracker.",
        tags={RECON_TAG: spec.name},
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
        dg.AssetCheckSpec("key_not_null", asset=key, description="No record lacks its key (such records cannot be matched)."),
        dg.AssetCheckSpec("key_unique", asset=key, description="No key appears twice (duplicates are never paired)."),
    ]

    @dg.asset(
        key=key,
        check_specs=checks,
        kinds={source.type, "parquet"},
        description=f"Snapshot of {system}: the key and compared fields, under the spec's names.",
        **common_asset_args(spec),
    )
    def snapshot(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        path = recon.path(spec.name, scope_of(context), f"snapshot_{side}.parquet")
        info = write_snapshot(source, columns, path, skip_missing=True)
        metadata = {"rows": info.rows, "source": info.label, "path": dg.MetadataValue.path(str(path))}
        missing = [columns[name] for name in info.missing]
        results = [dg.AssetCheckResult(
            check_name="required_columns", passed=not missing, severity=dg.AssetCheckSeverity.ERROR,
            metadata={"missing_columns": ", ".join(missing) or "none"},
        )]
        if not set(keys) & set(info.missing):
            nulls, duplicates = _key_health(path, keys)
            results += [
                dg.AssetCheckResult(check_name="key_not_null", passed=nulls == 0, severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"records_without_key": nulls}),
                dg.AssetCheckResult(check_name="key_unique", passed=duplicates == 0, severity=dg.AssetCheckSeverity.WARN,
                                    metadata={"duplicated_keys": duplicates}),
            ]
        else:
            for name in ("key_not_null", "key_unique"):
                results.append(dg.AssetCheckResult(check_name=name, passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                                   metadata={"reason": "key column missing"}))
        return dg.MaterializeResult(metadata=metadata, check_results=results)

    return snapshot


def _key_health(path: Path, keys: list[str]) -> tuple[int, int]:
    key_list = ", ".join(map(quote_ident, keys))
    null = " OR ".join(f"{quote_ident(k)} IS NULL" for k in keys)
    with duckdb_connect() as con:
        return con.execute(
            f"""SELECT (SELECT count(*) FROM read_parquet({sql_literal(str(path))}) WHERE {null}),
                       (SELECT count(*) FROM (SELECT {key_list} FROM read_parquet({sql_literal(str(path))})
                        WHERE NOT ({null}) GROUP BY ALL HAVING count(*) > 1))"""
        ).fetchone()


# --------------------------------------------------------------------------- matched pairs


def _matched_pairs_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    names = {side: list(side_columns(spec, side)) for side in "ab"}

    @dg.asset(
        key=asset_key(spec, "matched_pairs"),
        deps=[asset_key(spec, "snapshot_a"), asset_key(spec, "snapshot_b")],
        **common_asset_args(spec),
        kinds={"duckdb", "parquet"},
        description="Records paired by key. Stores the pairs that differ in any way and the key anomalies; "
        "identical pairs are counted, not stored.",
    )
    def matched_pairs(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = scope_of(context)
        sides = [
            snapshot_side(recon.path(spec.name, scope, f"snapshot_{side}.parquet"), names[side], f"snapshot_{side}")
            for side in "ab"
        ]
        mapping = None
        if spec.key_mapping is not None:
            info = write_snapshot(spec.key_mapping.source, {"a": spec.key_mapping.a, "b": spec.key_mapping.b},
                                  recon.path(spec.name, scope, "key_mapping.parquet"))
            mapping = snapshot_side(info.path, ["a", "b"], info.label)
        con = connect(recon.duckdb_memory_limit, recon.spill_dir())
        stats = match(con, spec, sides[0], sides[1], mapping)
        path = recon.path(spec.name, scope, "matched_pairs.parquet")
        partial = path.with_suffix(".partial")
        con.execute(
            f"COPY __pairs TO {sql_literal(str(partial))} (FORMAT parquet, "
            f"KV_METADATA {{{MATCH_STATS_KEY}: {sql_literal(json.dumps(asdict(stats)))}}})"
        )
        partial.replace(path)
        return dg.MaterializeResult(metadata={**asdict(stats), "path": dg.MetadataValue.path(str(path))})

    return matched_pairs


def read_match_stats(path: Path) -> dict:
    metadata = pq.read_metadata(path).metadata or {}
    return json.loads(metadata[MATCH_STATS_KEY.encode()])


# --------------------------------------------------------------------------- discrepancies


def _discrepancies_asset(spec: ReconciliationSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(spec, "discrepancies"),
        deps=[asset_key(spec, "matched_pairs")],
        **common_asset_args(spec),
        kinds={"duckdb", "parquet"},
        description="Every disagreement under the spec's field rules: one row per record and field, both raw values, "
        "the reason, a severity and a stable id.",
    )
    def discrepancies(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = scope_of(context)
        pairs = recon.path(spec.name, scope, "matched_pairs.parquet")
        con = connect(recon.duckdb_memory_limit, recon.spill_dir())
        table, fields = evaluate(con, spec, f"read_parquet({sql_literal(str(pairs))})")
        path = recon.path(spec.name, scope, "discrepancies.parquet")
        partial = path.with_suffix(".partial")
        pq.write_table(table, partial)
        partial.replace(path)

        kinds = table.column("kind").to_pylist()
        severities = table.column("severity").to_pylist()
        metadata: dict = {"discrepancies": table.num_rows}
        metadata.update({f"kind/{k}": kinds.count(k) for k in sorted(set(kinds))})
        metadata.update({f"severity/{s}": severities.count(s) for s in _SEVERITY_ORDER})
        for name, stats in fields.items():
            metadata[f"field/{name}/mismatches"] = stats.mismatches
            metadata[f"field/{name}/within_tolerance"] = stats.within_tolerance
            if stats.max_within_tolerance is not None:
                metadata[f"field/{name}/max_within_tolerance"] = float(stats.max_within_tolerance)
        metadata["sample"] = dg.MetadataValue.md(sample_markdown(table))
        metadata["path"] = dg.MetadataValue.path(str(path))
        return dg.MaterializeResult(metadata=metadata)

    return discrepancies


def sample_markdown(table: pa.Table, limit: int = SAMPLE_ROWS) -> str:
    if table.num_rows == 0:
        return "No discrepancies: the two sides agree."
    rows = sorted(table.to_pylist(), key=lambda r: (_SEVERITY_ORDER.get(r["severity"], 9), r["kind"], r["key"]))[:limit]
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
    @dg.asset(
        key=asset_key(spec, "tracker_state"),
        deps=[asset_key(spec, "discrepancies")],
        **common_asset_args(spec),
        kinds={"sql"},
        # One writer per reconciliation at a time, across runs (the tracker also locks).
        pool=f"recon_{spec.name}",
        description="The tracker after this run: new discrepancies inserted, those seen again refreshed, "
        "those no longer seen resolved.",
    )
    def tracker_state(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        scope = scope_of(context)
        found = pq.read_table(recon.path(spec.name, scope, "discrepancies.parquet"))
        stats = read_match_stats(recon.path(spec.name, scope, "matched_pairs.parquet"))
        tracker = recon.tracker()
        outcome = tracker.apply_run(
            spec.name, run_id=f"{context.run.run_id}:{scope}", found=found, scope=Scope.full(), summary=stats,
            escalation=spec.escalation,
        )
        counts = tracker.status_counts(spec.name)
        open_by_severity = tracker.open_severity_counts(spec.name)
        metadata = {
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
        return dg.MaterializeResult(metadata=metadata)

    return tracker_state
