"""The asset graph of an N-way reconciliation (a spec with ``sources:``):

    snapshot_crm ───────┐
    snapshot_billing ───┼─> matched_records ─> discrepancies ─> tracker_state
    snapshot_warehouse ─┘

One snapshot per system, then the steps of ``recon_pipelines.nway_pipeline``. The per-system
counts (rows and active records side by side, and why they differ) are ``matched_records``'
table metadata; each discrepancy names the systems it concerns.
"""

# No `from __future__ import annotations` here: Dagster inspects the context annotation at runtime.
import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines import nway_pipeline
from recon_pipelines.dagster_defs import metadata as shown_in_ui
from recon_pipelines.dagster_defs.assets import asset_key, common_asset_args, reconciliation_job, tracker_metadata
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.dagster_defs.result_checks import open_discrepancies_check
from recon_pipelines.engine.compare import value_counts
from recon_pipelines.engine.nway import NWayStats
from recon_pipelines.pipeline import RunScope
from recon_pipelines.remediation.notifications import notification_writer
from recon_pipelines.spec.nway import NWaySpec

COUNT_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("system", "string"),
    dg.TableColumn("rows", "int", description="Records read (after the source's filter)."),
    dg.TableColumn("active", "int", description="Records meeting the system's active: condition (-1: none declared)."),
    dg.TableColumn("records", "int", description="Distinct keys it holds among those compared."),
    dg.TableColumn("invalid_key_rows", "int"),
    dg.TableColumn("duplicate_keys", "int"),
    dg.TableColumn("unmapped_rows", "int"),
])
BREAKDOWN_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("records", "int"),
    dg.TableColumn("active_in", "string"),
    dg.TableColumn("inactive_in", "string"),
    dg.TableColumn("missing_in", "string"),
])
DISCREPANCY_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("id", "string"),
    dg.TableColumn("severity", "string"),
    dg.TableColumn("kind", "string"),
    dg.TableColumn("key", "string"),
    dg.TableColumn("field", "string"),
    dg.TableColumn("systems", "string", description="The systems holding the record."),
    dg.TableColumn("odd_ones_out", "string", description="The systems that disagree with the reference."),
    dg.TableColumn("reference_system", "string"),
    dg.TableColumn("detail", "string"),
])


def build_nway_assets(spec: NWaySpec) -> list[dg.AssetsDefinition]:
    return [*(_snapshot_asset(spec, system) for system in spec.systems), _matched_records_asset(spec),
            _discrepancies_asset(spec), _tracker_state_asset(spec)]


def nway_job(spec: NWaySpec):
    return reconciliation_job(spec)


def _folder(recon: ReconResource, spec: NWaySpec):
    return recon.folder(spec, RunScope.full()).root


def _snapshot_asset(spec: NWaySpec, system: str) -> dg.AssetsDefinition:
    source = spec.sources[system]

    @dg.asset(
        key=asset_key(spec, f"snapshot_{system}"),
        kinds={source.type, "parquet"},
        description=f"Snapshot of {system}: the key and compared fields under the spec's names, and the keys "
        "of its active records (its active: condition, pushed to it).",
        **common_asset_args(spec),
    )
    def snapshot(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        result = nway_pipeline.take_system_snapshot(spec, system, _folder(recon, spec))
        return dg.MaterializeResult(metadata={"rows": result["rows"], "source": result["source"],
                                              **({"active": result["active"]} if "active" in result else {})})

    snapshot.__name__ = f"snapshot_{system}"
    return snapshot


def _matched_records_asset(spec: NWaySpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(spec, "matched_records"),
        deps=[asset_key(spec, f"snapshot_{s}") for s in spec.systems],
        kinds={"duckdb", "parquet"},
        description="Every system's records grouped by key in one pass: which systems hold each record. "
        "Metadata: the systems' counts side by side, and why their active counts differ.",
        **common_asset_args(spec),
    )
    def matched_records(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        stats = nway_pipeline.match_records(spec, _folder(recon, spec))
        return dg.MaterializeResult(metadata=counts_metadata(stats))

    return matched_records


def counts_metadata(stats: NWayStats) -> dict:
    metadata: dict = {"counts_line": nway_pipeline.counts_line(stats), "keys": stats.keys, "in_all_systems": stats.in_all}
    for name, s in stats.systems.items():
        metadata[f"rows/{name}"] = s.rows
        if s.active is not None:
            metadata[f"active/{name}"] = s.active
    metadata["counts"] = dg.MetadataValue.table([
        dg.TableRecord({"system": name, "rows": s.rows, "active": -1 if s.active is None else s.active,
                        "records": s.records, "invalid_key_rows": s.invalid_key_rows,
                        "duplicate_keys": s.duplicate_keys, "unmapped_rows": s.unmapped_rows})
        for name, s in stats.systems.items()], schema=COUNT_COLUMNS)
    metadata["active_breakdown"] = dg.MetadataValue.table([
        dg.TableRecord({"records": e["records"], "active_in": ", ".join(e["active"]),
                        "inactive_in": ", ".join(e["inactive"]), "missing_in": ", ".join(e["missing"])})
        for e in stats.active_breakdown], schema=BREAKDOWN_COLUMNS)
    return metadata


def _discrepancies_asset(spec: NWaySpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(spec, "discrepancies"),
        deps=[asset_key(spec, "matched_records")],
        kinds={"duckdb", "parquet"},
        description="Per record and field: which systems agree, the reference (system of record or majority) "
        "and the odd ones out. Metadata: counts per kind and per odd system, the most severe rows.",
        **common_asset_args(spec),
    )
    def discrepancies(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        found = nway_pipeline.find_discrepancies(spec, _folder(recon, spec))
        return dg.MaterializeResult(metadata=discrepancy_metadata(spec, found.table, found.fields))

    return discrepancies


def discrepancy_metadata(spec: NWaySpec, table: pa.Table, fields: dict[str, int]) -> dict:
    metadata: dict = {"discrepancies": table.num_rows}
    metadata.update({f"kind/{k}": n for k, n in value_counts(table, "kind").items()})
    metadata.update({f"severity/{s}": n for s, n in shown_in_ui.severity_counts(table).items()})
    odd = pc.split_pattern(pc.fill_null(table.column("odd_ones_out"), ""), ",").combine_chunks().flatten()
    by_system = value_counts(pa.table({"system": odd}), "system")
    metadata.update({f"odd_one_out/{s}": by_system.get(s, 0) for s in spec.systems})
    metadata.update({f"field/{name}/disagreements": n for name, n in fields.items()})
    metadata["most_severe"] = dg.MetadataValue.table([
        dg.TableRecord({c: shown_in_ui.shown(row[c], shown_in_ui.CELL_CHARS) if row[c] is not None else ""
                        for c in ("id", "severity", "kind", "key", "field", "systems", "odd_ones_out",
                                  "reference_system", "detail")})
        for row in shown_in_ui.most_severe_first(table)], schema=DISCREPANCY_COLUMNS)
    return metadata


def _tracker_state_asset(spec: NWaySpec) -> dg.AssetsDefinition:
    key = asset_key(spec, "tracker_state")

    @dg.asset(
        key=key,
        deps=[asset_key(spec, "discrepancies")],
        kinds={"sql"},
        pool=f"recon_{spec.name}",
        check_specs=[dg.AssetCheckSpec("open_discrepancies", asset=key, description=(
            "Fails while more critical discrepancies are open than the spec's expect.max_open_critical (default 0); "
            "warns past expect.max_open_warning. Muted ones do not count."))],
        description="The tracker after this run: new discrepancies inserted, those seen again refreshed, "
        "those no longer seen resolved.",
        **common_asset_args(spec),
    )
    def tracker_state(context: dg.AssetExecutionContext, recon: ReconResource) -> dg.MaterializeResult:
        outcome = nway_pipeline.update_tracker(spec, _folder(recon, spec), recon.tracker(),
                                               run_id=f"{context.run.run_id}:full", on_outcome=notification_writer(spec))
        return dg.MaterializeResult(
            metadata=tracker_metadata(recon, spec, outcome),
            check_results=[open_discrepancies_check(spec, shown_in_ui.open_counts(recon.tracker(), spec.name))])

    return tracker_state
