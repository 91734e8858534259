"""dbt as a neighbour, with a real dbt project (dbt_project/) built by dbt-postgres in a throwaway
PostgreSQL database (and once by dbt-duckdb): a ``type: dbt`` side reconciled against a file, the
dbt model -> snapshot lineage as dagster-dbt draws it, and a dbt model over the tracker
(``recon dbt-sources``). The tracker is read by dbt-postgres: DuckDB reads SQLite or PostgreSQL only
through extensions it downloads at first use, which a machine without internet access cannot.

The expected discrepancies come from the seed and the billing file written here (customer 3's
amount differs, 5 exists only in the warehouse, 6 only in billing), not from the code under test."""

# No `from __future__ import annotations`: Dagster reads the @dbt_assets function's annotations at runtime.
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from recon_pipelines.cli import main as recon
from recon_pipelines.sources.base import SourceError
from recon_pipelines.sources.dbt import profile_url
from recon_pipelines.spec.models import DbtSource
from recon_pipelines_tests.conftest import throwaway_database

PROJECT = Path(__file__).parent / "dbt_project"
BILLING = "customer_id,plan_code,mrr\n1,PRO,42.50\n2,BASIC,10.00\n3,PRO,45.00\n4,TEAM,99.00\n6,BASIC,10.00\n"
SEEDED = {("field_mismatch", "3", "mrr"), ("only_in_a", "5", None), ("only_in_b", "6", None)}
PROFILE = """recon_test:
  target: test
  outputs:
    test:
      type: postgres
      host: "{host}"
      port: {port}
      user: "{user}"
      password: ""
      dbname: "{{{{ env_var('RECON_DBT_TEST_DB') }}}}"
      schema: analytics
      threads: 1
"""
DBT = ("import sys; from dbt.cli.main import dbtRunner; "
       "sys.exit(0 if dbtRunner().invoke(sys.argv[1:]).success else 1)")


def dbt(project: Path, *args: str) -> None:
    """dbt in a process of its own (it keeps global state), as its programmatic runner."""
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    done = subprocess.run([sys.executable, "-c", DBT, *args, "--project-dir", str(project), "--profiles-dir",
                           str(project)], capture_output=True, text=True, env=env, cwd=project, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def warehouse(pg_admin_url, tmp_path_factory):
    """The project copied and built once (seed + model) in a fresh database; yields (folder, URL)."""
    pytest.importorskip("dbt.cli.main", reason="dbt-core is in the `dbt` extra (pip install -e '.[dbt]')")
    pytest.importorskip("dbt.adapters.postgres", reason="dbt-postgres is in the `dbt` extra")
    with throwaway_database(pg_admin_url) as url:
        parts = sa.make_url(url)
        project = tmp_path_factory.mktemp("dbt") / "project"
        shutil.copytree(PROJECT, project)
        (project / "profiles.yml").write_text(PROFILE.format(host=parts.host, port=parts.port or 5432, user=parts.username))
        os.environ["RECON_DBT_TEST_DB"] = parts.database  # the profile reads it, in dbt and in recon alike
        try:
            dbt(project, "build")
            yield project, url
        finally:
            os.environ.pop("RECON_DBT_TEST_DB", None)


def write_spec(folder: Path, project: Path, model: str = "customers", **source) -> Path:
    (folder / "billing.csv").write_text(BILLING)
    spec = {"name": "dbt_customers",
            "source_a": {"type": "dbt", "name": "warehouse", "project_dir": str(project), "model": model, **source},
            "source_b": {"type": "file", "name": "billing", "path": "billing.csv"},
            "key": "customer_id",
            "fields": {"plan_code": "exact", "mrr": {"compare": "numeric", "abs_tol": 0.001}}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    return folder / "spec.yaml"


def run(*args: str):
    return CliRunner().invoke(recon, list(args))


def test_a_dbt_model_is_reconciled_and_the_seeded_discrepancies_found(warehouse, tmp_path):
    project, url = warehouse
    result = run("run", str(write_spec(tmp_path, project)), "--format", "json", "--output", str(tmp_path / "out.json"))
    assert result.exit_code == 1, result.output
    found = [json.loads(line) for line in (tmp_path / "out.json").read_text().splitlines()]
    assert {(d["kind"], d["key"], d["field"]) for d in found} == SEEDED


def test_dbt_errors_name_the_model_and_what_to_do(warehouse, tmp_path):
    project, url = warehouse
    typo = run("run", str(write_spec(tmp_path, project, model="customer")))
    assert typo.exit_code == 2
    assert "no such model" in typo.output and "did you mean customers" in typo.output
    missing = run("run", str(write_spec(tmp_path, project, manifest=str(tmp_path / "nowhere.json"))))
    assert missing.exit_code == 2 and "manifest" in missing.output and "run `dbt parse`" in missing.output
    # The manifest names the model, but the warehouse does not have it: a fresh database, never built.
    with throwaway_database(sa.make_url(url).set(database="test").render_as_string(hide_password=False)) as empty:
        unbuilt = run("run", str(write_spec(tmp_path, project, url=empty)))
    assert unbuilt.exit_code == 2
    assert "the model is not built" in unbuilt.output and "dbt build --select customers" in unbuilt.output


def test_the_snapshot_depends_on_the_model_as_dagster_dbt_names_it(warehouse, tmp_path):
    from dagster_dbt import DbtCliResource, dbt_assets

    from recon_pipelines.dagster_defs import build_definitions
    from recon_pipelines.dagster_defs.resources import ReconResource
    from recon_pipelines.spec import load_spec

    project, _ = warehouse
    manifest = project / "target" / "manifest.json"

    @dbt_assets(manifest=manifest)
    def project_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource):
        yield from dbt.cli(["build"], context=context).stream()

    spec = load_spec(write_spec(tmp_path, project))
    recon_resource = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 't.sqlite'}")
    defs = dg.Definitions.merge(dg.Definitions(assets=[project_assets],
                                               resources={"dbt": DbtCliResource(project_dir=str(project), dbt_executable=str(Path(sys.executable).parent / "dbt"))}),
                                build_definitions(specs=[spec], recon=recon_resource))
    graph = defs.resolve_asset_graph()
    model_keys = {k for k in project_assets.keys if k.path[-1] == "customers"}
    assert len(model_keys) == 1  # what @dbt_assets made of the model
    snapshot = graph.get(dg.AssetKey(["dbt_customers", "snapshot_a"]))
    assert snapshot.parent_keys == model_keys
    assert graph.get(next(iter(model_keys))).is_materializable  # the dbt asset itself, not a stub
    with dg.instance_for_test() as instance:  # the reconciliation's own job runs without the dbt assets
        result = defs.resolve_job_def("reconcile_dbt_customers").execute_in_process(instance=instance)
    found = {e.materialization.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert found["discrepancies"]["discrepancies"].value == len(SEEDED)


def test_a_dbt_model_reads_the_open_discrepancies_through_the_generated_sources(warehouse, tmp_path):
    """The tracker in the warehouse's own database; dbt reads it through `recon dbt-sources`."""
    project, url = warehouse
    tracked = run("run", str(write_spec(tmp_path, project)), "--track", "--tracker-url", url)
    assert tracked.exit_code == 1, tracked.output
    sources = run("dbt-sources", "--tracker-url", url)
    assert sources.exit_code == 0, sources.output
    described = yaml.safe_load(sources.output)["sources"][0]
    assert {t["name"] for t in described["tables"]} >= {"discrepancies", "open_discrepancies", "runs", "discrepancy_events"}
    assert all(c["description"] for t in described["tables"] for c in t["columns"])
    (project / "models" / "recon_sources.yml").write_text(sources.output)
    (project / "models" / "open_discrepancies.sql").write_text(
        "select reconciliation, kind, key, field from {{ source('recon', 'open_discrepancies') }}\n")
    try:
        dbt(project, "build", "--select", "open_discrepancies")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT reconciliation, kind, key, field FROM analytics.open_discrepancies")).all()
        engine.dispose()
    finally:
        for name in ("recon_sources.yml", "open_discrepancies.sql"):
            (project / "models" / name).unlink()
    assert {(r.kind, r.key, r.field) for r in rows} == SEEDED
    assert {r.reconciliation for r in rows} == {"dbt_customers"}


def test_a_model_built_by_dbt_duckdb_is_read_through_the_profile(tmp_path, monkeypatch):
    """The duckdb profile target: the URL from profiles.yml, the relation read through a query."""
    pytest.importorskip("dbt.adapters.duckdb", reason="dbt-duckdb is in the `dbt` extra")
    pytest.importorskip("duckdb_engine", reason="duckdb-engine is in the `dbt` extra")
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    (project / "profiles.yml").write_text(yaml.safe_dump({"recon_test": {"target": "dev", "outputs": {
        "dev": {"type": "duckdb", "path": "warehouse.duckdb", "threads": 1}}}}))
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    monkeypatch.delenv("DBT_TARGET", raising=False)
    dbt(project, "build")
    result = run("run", str(write_spec(tmp_path, project)), "--format", "json", "--output", str(tmp_path / "out.json"))
    assert result.exit_code == 1, result.output
    found = [json.loads(line) for line in (tmp_path / "out.json").read_text().splitlines()]
    assert {(d["kind"], d["key"], d["field"]) for d in found} == SEEDED


def test_every_exported_tracker_column_is_described():
    from recon_pipelines.tracker.dbt_sources import TABLES

    for table, (name, _, described) in TABLES.items():
        if isinstance(table, str):
            continue
        assert set(described) == set(table.c.keys()), name


def test_the_warehouse_url_comes_from_the_profile_target(tmp_path, monkeypatch):
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: shop\n")
    (tmp_path / "profiles.yml").write_text(yaml.safe_dump({"shop": {"target": "dev", "outputs": {
        "dev": {"type": "duckdb", "path": "wh.duckdb"},
        "prod": {"type": "postgres", "host": "db.example", "port": 6543, "user": "reader",
                 "password": "{{ env_var('SHOP_PASSWORD') }}", "dbname": "shop", "schema": "marts"},
        "other": {"type": "snowflake"}}}}))
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    monkeypatch.delenv("DBT_TARGET", raising=False)
    source = DbtSource(type="dbt", project_dir=str(tmp_path), model="m")
    assert profile_url(source) == f"duckdb:///{tmp_path / 'wh.duckdb'}"
    monkeypatch.setenv("SHOP_PASSWORD", "s3cret")
    assert profile_url(source.model_copy(update={"target": "prod"})) == \
        "postgresql+psycopg2://reader:s3cret@db.example:6543/shop"
    monkeypatch.setenv("DBT_TARGET", "other")
    with pytest.raises(SourceError, match="'snowflake' is not supported"):
        profile_url(source)
    monkeypatch.delenv("SHOP_PASSWORD")
    with pytest.raises(SourceError, match="SHOP_PASSWORD is not set"):
        profile_url(source.model_copy(update={"target": "prod"}))


def test_dbt_sources_describe_the_readable_tables_only(tmp_path):
    """On the embedded SQLite tracker: no database, schema main; never the web accounts (password
    hashes) nor scratch tables."""
    result = run("dbt-sources", "--tracker-url", f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    assert result.exit_code == 0, result.output
    source = yaml.safe_load(result.output)["sources"][0]
    assert source["name"] == "recon" and source["schema"] == "main" and "database" not in source
    identifiers = {t["identifier"] for t in source["tables"]}
    assert identifiers == {"recon_discrepancies", "recon_open_discrepancies", "recon_discrepancy_events", "recon_runs",
                           "recon_fixes", "recon_incidents", "recon_outbox", "recon_source_schemas"}
    opened = next(t for t in source["tables"] if t["name"] == "open_discrepancies")
    assert [c["name"] for c in opened["columns"]][:3] == ["id", "kind", "key"]
