"""One run path: the asset graph, ``recon run`` and the ``recheck_<name>`` op find the same
discrepancies on the same spec and data (a local file spec, two PostgreSQL tables in one
database, two in two databases), and every pairing strategy leaves the same ``__pairs`` and
stats as the local one.

The data carries seeded drift (field mismatches, drift within tolerance, one-sided records,
duplicate keys on each side, NULL and blank keys); the record-level discrepancies are also
checked against the generator's own ground truth, so agreeing paths cannot agree on nothing.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from recon_pipelines import pipeline
from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.assets import build_reconciliation_assets
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.dagster_defs.runs import recheck_config
from recon_pipelines.engine import strategies
from recon_pipelines.engine.strategies import Sides
from recon_pipelines.spec import load_spec, parse_spec
from recon_pipelines_tests.conftest import throwaway_database

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {"amount": {"compare": "numeric", "abs_tol": 0.01}, "status": {"compare": "string", "normalize": ["lower"]}}


# --------------------------------------------------------------------------- the data and its ground truth


def drifted(seed: int = 11, n: int = 120) -> tuple[list[dict], list[dict], dict]:
    """Rows of A and B, and what a correct comparison reports: record-level (kind, key) pairs
    and field-level (key, field) pairs."""
    rng = random.Random(seed)
    a = [{"id": f"k{i:03d}", "amount": Decimal(rng.randrange(100_000)) / 100, "status": rng.choice(["open", "paid", "void"])}
         for i in range(n)]
    b = [dict(r) for r in a]
    fields = set()
    for r in b[0:10]:
        r["amount"] += Decimal("5.00")
        fields.add((r["id"], "amount"))
    for r in b[10:20]:
        r["status"] = r["status"].upper()  # within the rule: normalised away
    for r in b[20:25]:
        r["status"] = "lost"
        fields.add((r["id"], "status"))
    for r in b[25:30]:
        r["amount"] += Decimal("0.01")  # within abs_tol
    only_in_a = [r["id"] for r in b[30:36]]
    b = [r for r in b if r["id"] not in only_in_a]
    b += [{"id": f"new{j}", "amount": Decimal("1.00"), "status": "open"} for j in range(4)]
    a.append(dict(a[40], amount=Decimal("0.50")))  # k040 twice in A
    b += [dict(b[50]), dict(b[50])]  # b[50] three times in B
    dup_b = b[50]["id"]
    a += [{"id": None, "amount": Decimal("1.00"), "status": "open"}, {"id": " \t", "amount": Decimal("2.00"), "status": "open"}]
    b += [{"id": "", "amount": Decimal("3.00"), "status": "open"}]
    records = ({("only_in_a", k) for k in only_in_a} | {("only_in_b", f"new{j}") for j in range(4)}
               | {("duplicate_key_a", "k040"), ("duplicate_key_b", dup_b)}
               | {("invalid_key_a", "<null>"), ("invalid_key_a", " \t"), ("invalid_key_b", "")})
    fields -= {("k040", "amount"), ("k040", "status"), (dup_b, "amount"), (dup_b, "status")}  # never paired
    return a, b, {"records": records, "fields": fields}


def write_files(folder: Path, a: list[dict], b: list[dict]) -> dict:
    schema = pa.schema([("id", pa.string()), ("amount", pa.decimal128(12, 2)), ("status", pa.string())])
    pq.write_table(pa.Table.from_pylist(a, schema=schema), folder / "a.parquet")
    pq.write_table(pa.Table.from_pylist(b, schema=schema), folder / "b.parquet")
    return {"source_a": {"type": "file", "path": str(folder / "a.parquet"), "name": "shop"},
            "source_b": {"type": "file", "path": str(folder / "b.parquet"), "name": "ledger"}}


def write_tables(url_a: str, url_b: str, a: list[dict], b: list[dict], prefix: str = "orders") -> dict:
    for url, name, rows in ((url_a, f"{prefix}_a", a), (url_b, f"{prefix}_b", b)):
        engine = sa.create_engine(url)
        table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Text), sa.Column("amount", sa.Numeric(12, 2)),
                         sa.Column("status", sa.Text))
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(table.insert(), rows)
        engine.dispose()
    return {"source_a": {"type": "sql", "url": url_a, "table": f"{prefix}_a", "name": "shop"},
            "source_b": {"type": "sql", "url": url_b, "table": f"{prefix}_b", "name": "ledger"}}


def spec_file(folder: Path, name: str, sources: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **sources, "key": "id", "fields": FIELDS}))
    return path


# --------------------------------------------------------------------------- the three entry points


def found(table: pa.Table) -> set[tuple]:
    return {(r["id"], r["kind"], r["key"], r["field"]) for r in table.to_pylist()}


def by_assets(spec, storage: Path, tracker: str) -> tuple[set[tuple], dict]:
    recon = ReconResource(storage_dir=str(storage), tracker_url=tracker)
    with dg.instance_for_test() as instance:
        result = dg.materialize(build_reconciliation_assets(spec), resources={"recon": recon}, instance=instance)
    assert result.success
    metadata = {e.materialization.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
    return found(pq.read_table(storage / spec.name / "full" / "discrepancies.parquet")), metadata


def by_recheck(spec, storage: Path, tracker: str) -> tuple[set[tuple], dict]:
    recon = ReconResource(storage_dir=str(storage), tracker_url=tracker)
    job = build_definitions(specs=[spec], recon=recon).resolve_job_def(f"recheck_{spec.name}")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(run_config=recheck_config(spec, full=True), instance=instance)
    assert result.success
    outputs = [e.event_specific_data.metadata for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in outputs[0].items()}
    return found(pq.read_table(storage / spec.name / "full" / "discrepancies.parquet")), metadata


def by_cli(path: Path) -> tuple[set[tuple], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(path.parent / "home")}
    done = subprocess.run([sys.executable, "-m", "recon_pipelines.cli", "run", str(path), "--format", "json"],
                          capture_output=True, text=True, env=env, cwd=path.parent, timeout=120)
    assert done.returncode == 1, done.stderr  # 1: discrepancies found
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return {(r["id"], r["kind"], r["key"], r["field"]) for r in rows}, done.stderr


def assert_one_path(tmp_path: Path, path: Path, truth: dict, strategy: str) -> None:
    spec = load_spec(path)
    tracker = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    assets, asset_meta = by_assets(spec, tmp_path / "assets", tracker)
    recheck, recheck_meta = by_recheck(spec, tmp_path / "recheck", f"sqlite:///{tmp_path / 'recheck.sqlite'}")
    cli, summary = by_cli(path)
    assert assets == cli == recheck
    # ... and they are right: the generator's record-level discrepancies and field mismatches.
    assert {(kind, key) for _, kind, key, field in cli if field is None} == truth["records"]
    assert {(key, field) for _, kind, key, field in cli if kind == "field_mismatch"} == truth["fields"]
    # Where each path paired the records, in the metadata and the CLI summary.
    assert asset_meta["matched_pairs"]["strategy"] == recheck_meta["strategy"] == strategy
    if strategy == "local":
        assert asset_meta["snapshot_a"]["rows"] == 123 and "paired" not in summary
    else:
        assert "strategy" in asset_meta["snapshot_a"] and "rows" not in asset_meta["snapshot_a"]  # nothing copied
        moved = (asset_meta["matched_pairs"]["rows_moved_a"], asset_meta["matched_pairs"]["rows_moved_b"])
        assert 0 < moved[0] < 123 and 0 < moved[1] < 121  # only what may differ crossed the wire
        assert (recheck_meta["rows_moved_a"], recheck_meta["rows_moved_b"]) == moved
        assert re.search(rf"\n  paired +{strategy}: {moved[0]} rows of shop and {moved[1]} of ledger fetched\n", summary + "\n")


def test_local_files_one_path(tmp_path):
    a, b, truth = drifted()
    path = spec_file(tmp_path, "files_path", write_files(tmp_path, a, b))
    assert_one_path(tmp_path, path, truth, "local")


@pytest.mark.postgres
def test_postgres_same_database_one_path(tmp_path, pg_url):
    a, b, truth = drifted()
    path = spec_file(tmp_path, "pg_one_db", write_tables(pg_url, pg_url, a, b))
    assert_one_path(tmp_path, path, truth, "postgres_join")


@pytest.mark.postgres
def test_postgres_two_databases_one_path(tmp_path, pg_url, pg_admin_url):
    a, b, truth = drifted()
    with throwaway_database(pg_admin_url) as url_b:
        path = spec_file(tmp_path, "pg_two_db", write_tables(pg_url, url_b, a, b))
        assert_one_path(tmp_path, path, truth, "bucket_summaries")


# --------------------------------------------------------------------------- every strategy pairs as local does


def pairs_of(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple], list[tuple]]:
    """``__pairs`` as rows (sorted) and its column names and types."""
    shape = con.execute("DESCRIBE __pairs").fetchall()
    return sorted(con.execute("SELECT * FROM __pairs").fetchall(), key=repr), [(c[0], c[1]) for c in shape]


def local_pairing(spec, folder: Path):
    """The local strategy on Parquet snapshots of the spec's sources."""
    run_folder = pipeline.RunFolder.of(folder, spec, pipeline.RunScope.full())
    for side in "ab":
        assert not pipeline.take_snapshot(spec, side, pipeline.RunScope.full(), run_folder)["missing"]
    sides = Sides.of(pipeline.snapshot_of(spec, run_folder, "a"), pipeline.snapshot_of(spec, run_folder, "b"))
    con = duckdb.connect()
    pairing = strategies.strategy("local").pair(spec, con, sides)
    return pairing, pairs_of(con)


def assert_pairs_like_local(spec, reference_spec, folder: Path, name: str) -> None:
    local, local_pairs = local_pairing(reference_spec, folder)
    assert strategies.choose(spec).name == name  # the chooser would pick it for this spec
    con = duckdb.connect()
    pairing = strategies.strategy(name).pair(spec, con, None)  # reads the sources itself
    assert pairing.strategy == name and pairing.stats == local.stats
    assert pairs_of(con) == local_pairs
    statuses = {row[0] for row in local_pairs[0]}
    assert statuses == {"pair", "only_in_a", "only_in_b", "duplicate_key_a", "duplicate_key_b", "invalid_key_a", "invalid_key_b"}
    assert 0 < local.stats.candidate_pairs < local.stats.matched


@pytest.mark.postgres
def test_database_strategies_pair_as_local_does(tmp_path, pg_url, pg_admin_url):
    a, b, _ = drifted(seed=5)
    one = parse_spec({"name": "one_db", **write_tables(pg_url, pg_url, a, b), "key": "id", "fields": FIELDS})
    assert_pairs_like_local(one, one, tmp_path / "one", "postgres_join")
    with throwaway_database(pg_admin_url) as url_b:
        two = parse_spec({"name": "two_db", **write_tables(pg_url, url_b, a, b, "split"), "key": "id", "fields": FIELDS})
        assert_pairs_like_local(two, two, tmp_path / "two", "bucket_summaries")


def test_duckdb_files_pair_as_local_does(tmp_path):
    a, b, _ = drifted(seed=5)
    files = write_files(tmp_path, a, b)
    for side, table in (("a", "orders_a"), ("b", "orders_b")):
        with duckdb.connect(str(tmp_path / f"{side}.duckdb")) as con:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{tmp_path / side}.parquet')")
    spec = parse_spec({"name": "duck", "key": "id", "fields": FIELDS,
                       "source_a": {"type": "sql", "url": f"duckdb:///{tmp_path / 'a.duckdb'}", "table": "orders_a"},
                       "source_b": {"type": "sql", "url": f"duckdb:///{tmp_path / 'b.duckdb'}", "table": "orders_b"}})
    reference = parse_spec({"name": "duck", "key": "id", "fields": FIELDS, **files})
    assert_pairs_like_local(spec, reference, tmp_path / "local", "duckdb_files")


def test_a_strategy_that_cannot_pair_the_spec_is_one_line_and_exit_2(tmp_path):
    from click.testing import CliRunner

    from recon_pipelines.cli import main

    a, b, _ = drifted()
    path = spec_file(tmp_path, "forced", write_files(tmp_path, a, b))
    for strategy, line in (("postgres_join", "strategy postgres_join cannot pair this spec: both sources must be sql "
                                             "sources naming a table"),
                           ("nosuch", "unknown pairing strategy 'nosuch' (known: duckdb_files, postgres_join, "
                                      "mariadb_same_database, bucket_summaries, canonical_buckets, spark, local)")):
        result = CliRunner().invoke(main, ["run", str(path), "--strategy", strategy])
        assert result.exit_code == 2 and line in result.output, result.output
    forced_local = CliRunner().invoke(main, ["run", str(path), "--strategy", "local", "--format", "json"])
    assert forced_local.exit_code == 1 and len(forced_local.output.strip().splitlines()) > 0
