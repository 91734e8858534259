"""Schema drift in the Dagster UI (``recon_pipelines.schema_diff`` finds it): on each snapshot the
source's columns (``source_schema``), what changed since the last run (``schema_changes``) and the
``schema_unchanged`` check; on ``matched_pairs`` the compared fields whose types differ between
the sides (``type_differences``)."""

# No `from __future__ import annotations` here: Dagster inspects annotations at runtime.
import dagster as dg

from recon_pipelines import schema_diff
from recon_pipelines.dagster_defs.metadata import shown
from recon_pipelines.snapshots import snapshot_columns
from recon_pipelines.spec.models import ReconciliationSpec

CHECK = "schema_unchanged"
_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}
_CHANGE_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("column", "string"),
    dg.TableColumn("change", "string", description="added, removed or type_changed"),
    dg.TableColumn("before", "string"),
    dg.TableColumn("after", "string"),
    dg.TableColumn("compared", "bool", description="A key or compared column of the spec."),
])
_DIFFERENCE_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn("field", "string"),
    dg.TableColumn("rule", "string"),
    dg.TableColumn("type_a", "string"),
    dg.TableColumn("type_b", "string"),
    dg.TableColumn("risky", "bool"),
    dg.TableColumn("why", "string"),
])


def check_spec(spec: ReconciliationSpec, key: dg.AssetKey) -> dg.AssetCheckSpec:
    """WARN by default; ``expect.schema_change: error`` makes it blocking, so a change stops the comparison."""
    level = spec.expect.schema_change
    return dg.AssetCheckSpec(CHECK, asset=key, blocking=level == "error", description=(
        f"No column of the source was added, removed or retyped since the last run ({level} when one was; "
        "expect.schema_change)."))


def observe(spec: ReconciliationSpec, side: str, tracker, run_id: str,
            snapshot_schema: dg.TableSchema) -> tuple[dict, dg.AssetCheckResult]:
    """Read the side's schema, compare it with the last run's (the tracker's) and record it. The
    snapshot's ``dagster/column_schema`` gains each column's source column and declared type."""
    drift = schema_diff.observe(spec, schema_diff.read_side(spec, side), tracker, run_id)
    if drift is None:
        return {}, dg.AssetCheckResult(check_name=CHECK, passed=True, metadata={
            "compared_with": "not checked: an HTTP source without declared columns"})
    sources = snapshot_columns(spec, side)
    described = dg.TableSchema(columns=[
        dg.TableColumn(c.name, c.type, description=_origin(drift.now.column(sources.get(c.name, c.name))))
        for c in snapshot_schema.columns])
    metadata = {
        "dagster/column_schema": dg.MetadataValue.table_schema(described),
        "source_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=[
            dg.TableColumn(c.name, c.type, description=c.family) for c in drift.now.columns])),
        "schema_changes": dg.MetadataValue.table(
            [dg.TableRecord({"column": shown(c.column), "change": c.change, "before": c.before or "",
                             "after": c.after or "", "compared": c.compared}) for c in drift.changes],
            schema=_CHANGE_COLUMNS),
    }
    result = dg.AssetCheckResult(
        check_name=CHECK, passed=not drift.changes, severity=_SEVERITY[spec.expect.schema_change],
        description="; ".join(shown(c.line()) for c in drift.changes[:5]) or None,
        metadata={"added": sum(c.change == "added" for c in drift.changes),
                  "removed": sum(c.change == "removed" for c in drift.changes),
                  "type_changed": sum(c.change == "type_changed" for c in drift.changes),
                  "compared_with": "nothing (first run)" if drift.first_run else "the previous run's schema"},
    )
    return metadata, result


def _origin(column) -> str | None:
    return f"{column.name} ({column.type}) in the source" if column is not None else None


def type_differences(spec: ReconciliationSpec, tracker) -> dict:
    """Between the sides, from the schemas this run's snapshot steps recorded."""
    a, b = schema_diff.recorded_side(spec, "a", tracker), schema_diff.recorded_side(spec, "b", tracker)
    if a is None or b is None:
        return {}
    differences = schema_diff.between_sides(spec, a, b)
    return {
        "type_differences": dg.MetadataValue.table(
            [dg.TableRecord({"field": shown(d.field), "rule": d.rule, "type_a": d.type_a, "type_b": d.type_b,
                             "risky": d.risky, "why": d.why}) for d in differences],
            schema=_DIFFERENCE_COLUMNS),
        "type_differences_risky": sum(d.risky for d in differences),
    }
