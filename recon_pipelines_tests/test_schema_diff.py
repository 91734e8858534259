"""Schema drift (schema_diff.py): columns added, removed or retyped on a side since the last run,
kept in the tracker, and type families that differ between the sides, judged for each rule.

The expected findings are written out from the data each test writes (the types it chose), never
read back from the code under test."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from recon_pipelines import schema_diff
from recon_pipelines.cli import main as recon
from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.spec import parse_spec
from recon_pipelines_tests.test_dagster_assets import check_results

SPEC = {
    "name": "orders",
    "source_a": {"type": "file", "path": "a.parquet", "name": "shop"},
    "source_b": {"type": "file", "path": "b.parquet", "name": "ledger"},
    "key": "id",
    "fields": {"amount": {"compare": "numeric", "abs_tol": 0.01}},
}
TRACKED = {**SPEC, "fields": {**SPEC["fields"], "qty": {"compare": "exact"}}}


def write(path, **columns) -> None:
    pq.write_table(pa.table(columns), path)


def ids() -> pa.Array:
    return pa.array([1, 2, 3], pa.int64())


def amounts() -> pa.Array:
    return pa.array([10.0, 20.0, 30.0], pa.float64())


def run_tracked(tmp_path, spec: dict | None = None) -> tuple[int, list[str]]:
    """``recon run --track``: its exit code and its schema lines."""
    import yaml

    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(spec or SPEC))
    result = CliRunner().invoke(recon, ["run", str(tmp_path / "orders.yaml"), "--track",
                                        "--tracker-url", f"sqlite:///{tmp_path / 'tracker.sqlite'}"])
    lines = [line for line in result.output.splitlines() if "orders: schema:" in line]
    return result.exit_code, lines


def test_an_unchanged_source_reports_nothing_and_each_change_is_reported_once(tmp_path):
    write(tmp_path / "a.parquet", id=ids(), amount=amounts(), qty=ids())
    write(tmp_path / "b.parquet", id=ids(), amount=amounts(), qty=ids())
    assert run_tracked(tmp_path, TRACKED) == (0, [])  # first run: nothing to compare with
    assert run_tracked(tmp_path, TRACKED) == (0, [])  # the same schema again

    write(tmp_path / "a.parquet", id=ids(), amount=amounts(), qty=ids(), note=pa.array(["x", "y", "z"]))  # added
    write(tmp_path / "b.parquet", id=ids(), amount=amounts(), qty=pa.array(["1", "2", "3"]))  # int -> varchar
    code, lines = run_tracked(tmp_path, TRACKED)
    assert code == 0
    assert lines == [
        "warning: orders: schema: side A (shop): column 'note' added (VARCHAR)",
        "warning: orders: schema: side B (ledger): column 'qty' (compared) changed type BIGINT -> VARCHAR",
    ]
    assert run_tracked(tmp_path, TRACKED)[1] == []  # reported by the run that first saw it

    write(tmp_path / "a.parquet", id=ids(), amount=amounts(), qty=ids())  # the column dropped again
    assert run_tracked(tmp_path, TRACKED)[1] == ["warning: orders: schema: side A (shop): column 'note' removed (was VARCHAR)"]


def test_schema_change_error_stops_the_run_once(tmp_path):
    spec = {**SPEC, "expect": {"schema_change": "error"}}
    write(tmp_path / "a.parquet", id=ids(), amount=amounts())
    write(tmp_path / "b.parquet", id=ids(), amount=amounts())
    assert run_tracked(tmp_path, spec)[0] == 0
    write(tmp_path / "a.parquet", id=ids(), amount=pa.array(["10", "20", "30"]))
    import yaml

    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(recon, ["run", str(tmp_path / "orders.yaml"), "--track",
                                        "--tracker-url", f"sqlite:///{tmp_path / 'tracker.sqlite'}"])
    assert result.exit_code == 2
    assert "side A (shop): column 'amount' (compared) changed type DOUBLE -> VARCHAR" in result.output
    assert run_tracked(tmp_path, spec)[0] == 0  # the new schema is the baseline now: re-running acknowledges it


def side(name: str, side: str, **types: tuple[str, str]) -> schema_diff.SideSchema:
    return schema_diff.SideSchema(side, name, name, tuple(schema_diff.SourceColumn(c, t, f) for c, (t, f) in types.items()))


@pytest.mark.parametrize(("rule", "a", "b", "risky"), [
    # The examples, and what each rule makes of them.
    ({"compare": "numeric", "abs_tol": 0.01}, ("DECIMAL(12,2)", "decimal"), ("DOUBLE", "float"), False),
    ({"compare": "numeric", "abs_tol": 0.01}, ("DECIMAL(38,10)", "decimal"), ("DOUBLE", "float"), True),
    ({"compare": "exact"}, ("DECIMAL(12,2)", "decimal"), ("DOUBLE", "float"), True),
    ({"compare": "exact"}, ("INTEGER", "integer"), ("DECIMAL(12,2)", "decimal"), False),
    ({"compare": "exact"}, ("VARCHAR", "string"), ("INTEGER", "integer"), True),
    ({"compare": "numeric"}, ("VARCHAR", "string"), ("INTEGER", "integer"), True),
    ({"compare": "timestamp"}, ("TIMESTAMP WITH TIME ZONE", "timestamp with zone"), ("TIMESTAMP", "timestamp"), True),
    ({"compare": "timestamp", "timezone_b": "Europe/Paris"},
     ("TIMESTAMP WITH TIME ZONE", "timestamp with zone"), ("TIMESTAMP", "timestamp"), False),
    ({"compare": "timestamp"}, ("TIMESTAMP", "timestamp"), ("BIGINT", "integer"), True),
    ({"compare": "timestamp", "epoch_unit_b": "ms"}, ("TIMESTAMP", "timestamp"), ("BIGINT", "integer"), False),
])
def test_type_differences_between_the_sides_are_judged_for_the_rule(tmp_path, rule, a, b, risky):
    spec = parse_spec({**SPEC, "fields": {"value": rule}}, tmp_path / "orders.yaml")
    found = schema_diff.between_sides(spec, side("shop", "a", id=("BIGINT", "integer"), value=a),
                                      side("ledger", "b", id=("BIGINT", "integer"), value=b))
    assert [(d.field, d.type_a, d.type_b, d.risky) for d in found] == [("value", a[0], b[0], risky)]


def test_same_types_and_missing_columns_raise_nothing_between_the_sides(tmp_path):
    spec = parse_spec({**SPEC, "fields": {"value": {"compare": "exact"}, "gone": {"compare": "exact"}}}, tmp_path / "o.yaml")
    a = side("shop", "a", id=("BIGINT", "integer"), value=("DECIMAL(12,2)", "decimal"), gone=("VARCHAR", "string"))
    b = side("ledger", "b", id=("INTEGER", "integer"), value=("DECIMAL(14,2)", "decimal"))
    assert schema_diff.between_sides(spec, a, b) == []


def test_a_key_typed_differently_is_risky(tmp_path):
    spec = parse_spec(SPEC, tmp_path / "orders.yaml")
    found = schema_diff.between_sides(spec, side("shop", "a", id=("BIGINT", "integer"), amount=("DOUBLE", "float")),
                                      side("ledger", "b", id=("VARCHAR", "string"), amount=("DOUBLE", "float")))
    assert [(d.field, d.rule, d.risky) for d in found] == [("id", "key", True)]


def test_recon_validate_lists_the_type_differences(tmp_path):
    write(tmp_path / "a.parquet", id=ids(), amount=pa.array([1, 2, 3], pa.decimal128(12, 2)))
    write(tmp_path / "b.parquet", id=ids(), amount=amounts())
    import yaml

    (tmp_path / "orders.yaml").write_text(yaml.safe_dump({**SPEC, "fields": {"amount": "exact"}}))
    result = CliRunner().invoke(recon, ["validate", str(tmp_path / "orders.yaml")])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if "types:" in line]
    assert len(lines) == 1 and lines[0].startswith(
        "orders: types: amount (exact): A amount DECIMAL(12,2) vs B amount DOUBLE: risky:")


@pytest.mark.postgres
def test_a_sql_side_shows_and_tracks_the_database_types(tmp_path, pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id integer PRIMARY KEY, amount numeric(12,2), at timestamptz)"))
        conn.execute(sa.text("INSERT INTO orders VALUES (1, 10, now()), (2, 20, now()), (3, 30, now())"))
    write(tmp_path / "b.parquet", id=ids(), amount=amounts())
    spec = {**SPEC, "source_a": {"type": "sql", "url": pg_url, "table": "orders", "name": "shop"}}
    assert run_tracked(tmp_path, spec) == (0, [])
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders ALTER COLUMN amount TYPE numeric(14,2)"))
        conn.execute(sa.text("ALTER TABLE orders DROP COLUMN at"))
    engine.dispose()
    assert run_tracked(tmp_path, spec)[1] == [
        "warning: orders: schema: side A (shop): column 'amount' (compared) changed type NUMERIC(12, 2) -> NUMERIC(14, 2)",
        "warning: orders: schema: side A (shop): column 'at' removed (was TIMESTAMP WITH TIME ZONE)",
    ]


def test_dagster_shows_the_drift_and_an_error_level_blocks_the_comparison(tmp_path):
    write(tmp_path / "a.parquet", id=ids(), amount=amounts())
    write(tmp_path / "b.parquet", id=ids(), amount=pa.array([1, 2, 3], pa.decimal128(12, 2)))
    spec = parse_spec({**SPEC, "expect": {"schema_change": "error"}}, tmp_path / "orders.yaml")
    recon_resource = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 't.sqlite'}")
    job = build_definitions(specs=[spec], recon=recon_resource).resolve_job_def("reconcile_orders")
    with dg.instance_for_test() as instance:
        first = job.execute_in_process(instance=instance)
        write(tmp_path / "a.parquet", id=ids(), amount=amounts(), note=pa.array(["x", "y", "z"]))
        second = job.execute_in_process(instance=instance, raise_on_error=False)
    meta = {e.materialization.asset_key.path[-1]: e.materialization.metadata for e in first.get_asset_materialization_events()}
    assert [(c.name, c.type) for c in meta["snapshot_b"]["source_schema"].schema.columns] == [
        ("id", "BIGINT"), ("amount", "DECIMAL(12,2)")]
    snapshot_columns = meta["snapshot_b"]["dagster/column_schema"].schema.columns
    assert [(c.name, c.description) for c in snapshot_columns] == [
        ("id", "id (BIGINT) in the source"), ("amount", "amount (DECIMAL(12,2)) in the source")]
    differences = meta["matched_pairs"]["type_differences"].records
    assert [(r.data["field"], r.data["type_a"], r.data["type_b"], r.data["risky"]) for r in differences] == [
        ("amount", "DOUBLE", "DECIMAL(12,2)", False)]
    drift = check_results(second)[("snapshot_a", "schema_unchanged")]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
    assert drift.metadata["added"].value == 1
    materialized = {e.materialization.asset_key.path[-1] for e in second.get_asset_materialization_events()}
    assert "matched_pairs" not in materialized  # blocked: the comparison did not run
