"""``filter:`` per source: a row predicate over the source's own columns, pushed into the WHERE of
SQL reads (through the read-only checks), applied in DuckDB for files and HTTP pages, on every path
(``pipeline.run``, the pipeline's snapshots and ``recon run``); push-down is refused for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from recon_pipelines import pipeline
from recon_pipelines.engine import strategies
from recon_pipelines.sources.base import SourceError
from recon_pipelines.spec import parse_spec
from recon_pipelines.spec.loader import SpecError
from recon_pipelines_tests.http_fakes import fake_records_api

REPO = Path(__file__).resolve().parents[1]
ROWS = [(1, "active", 10), (2, "active", 20), (3, "churned", 30), (4, "test", 40)]
CSV = "id,status,amount\n" + "".join(f"{i},{s},{a}\n" for i, s, a in ROWS)


def _spec(source_a: dict, source_b: dict, **extra) -> object:
    return parse_spec({"name": "filtered", "key": "id", "fields": {"amount": "exact"},
                       "source_a": source_a, "source_b": source_b, **extra})


def _only_keys(result) -> dict[str, list[str]]:
    rows = result.discrepancies.to_pylist()
    return {kind: sorted(r["key"] for r in rows if r["kind"] == kind) for kind in {r["kind"] for r in rows}}


def _sql_table(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE accounts (id INTEGER PRIMARY KEY, status TEXT, amount INTEGER)"))
        for i, s, a in ROWS:
            conn.execute(sa.text("INSERT INTO accounts VALUES (:i, :s, :a)"), {"i": i, "s": s, "a": a})
    engine.dispose()


@pytest.fixture
def csv_path(tmp_path) -> str:
    (tmp_path / "b.csv").write_text(CSV)
    return str(tmp_path / "b.csv")


def test_csv_filter_drops_rows_and_unfiltered_side_reports_them_only_in_a(tmp_path, csv_path):
    (tmp_path / "a.csv").write_text(CSV)
    spec = _spec({"type": "file", "path": str(tmp_path / "a.csv")},
                 {"type": "file", "path": csv_path, "filter": "status <> 'test'"})
    assert _only_keys(pipeline.run(spec)) == {"only_in_a": ["4"]}
    both = _spec({"type": "file", "path": str(tmp_path / "a.csv"), "filter": "status <> 'test'"},
                 {"type": "file", "path": csv_path, "filter": "status <> 'test'"})
    result = pipeline.run(both)
    assert result.discrepancies.num_rows == 0 and result.match.rows_a == 3


def test_sqlite_filter_is_pushed_into_the_read(tmp_path, csv_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    _sql_table(url)
    spec = _spec({"type": "sql", "url": url, "table": "accounts", "filter": "status = 'active' AND amount > 10"},
                 {"type": "file", "path": csv_path})
    assert _only_keys(pipeline.run(spec)) == {"only_in_b": ["1", "3", "4"]}


def test_the_pipeline_snapshot_applies_the_filter(tmp_path, csv_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    _sql_table(url)
    spec = _spec({"type": "sql", "url": url, "table": "accounts", "filter": "status IN ('active', 'churned')"},
                 {"type": "file", "path": csv_path, "filter": "CAST(amount AS INTEGER) >= 20"})
    folder = pipeline.RunFolder.of(tmp_path / "runs", spec, pipeline.RunScope.full())
    assert pipeline.take_snapshot(spec, "a", pipeline.RunScope.full(), folder)["rows"] == 3
    assert pipeline.take_snapshot(spec, "b", pipeline.RunScope.full(), folder)["rows"] == 3


@pytest.mark.postgres
def test_postgres_filter_and_pushdown_refused(pg_url, csv_path, caplog):
    _sql_table(pg_url)
    spec = _spec({"type": "sql", "url": pg_url, "table": "accounts", "filter": "status = 'churned' OR amount < 15"},
                 {"type": "sql", "url": pg_url, "table": "accounts"})
    choice = strategies.choose(spec)  # refused: paired locally, with the filter
    assert choice.name == "local" and choice.refused["postgres_join"] == "a source has a filter"
    result = pipeline.run(spec)
    assert _only_keys(result) == {"only_in_b": ["2", "4"]} and result.pairing.strategy == "local"
    unfiltered = _spec({"type": "sql", "url": pg_url, "table": "accounts"}, {"type": "sql", "url": pg_url, "table": "accounts"})
    assert strategies.choose(unfiltered).name == "postgres_join"


@pytest.mark.postgres
def test_postgres_filter_on_a_url_env_source_is_checked_when_connected(pg_url, csv_path, monkeypatch):
    _sql_table(pg_url)
    monkeypatch.setenv("RECON_TEST_FILTER_URL", pg_url)
    spec = _spec({"type": "sql", "url_env": "RECON_TEST_FILTER_URL", "table": "accounts",
                  "filter": "id IN (SELECT id FROM accounts WHERE amount > 25)"},
                 {"type": "file", "path": csv_path})
    assert _only_keys(pipeline.run(spec)) == {"only_in_b": ["1", "2"]}


def test_http_filter_applies_to_each_page(csv_path):
    records = [{"id": i, "status": s, "amount": a} for i, s, a in ROWS]
    with fake_records_api(records, page_size=2) as server:
        spec = _spec({"type": "http", "url": f"{server.url}/records", "filter": "status = 'active'"},
                     {"type": "file", "path": csv_path})
        assert _only_keys(pipeline.run(spec)) == {"only_in_b": ["3", "4"]}


@pytest.mark.parametrize("predicate, message", [
    ("1; DROP TABLE accounts", "exactly one boolean expression"),
    ("SELECT 1", "one boolean expression"),
    ("amount > 0) OR (1 = 1", "cannot parse|can parse"),
    ("id IN (WITH d AS (DELETE FROM accounts RETURNING id) SELECT id FROM d)", "only read"),
    ("pg_advisory_lock(1) IS NOT NULL", "pg_advisory_lock"),
])
def test_a_filter_that_is_not_one_read_only_condition_is_refused_at_load(predicate, message):
    with pytest.raises(SpecError, match=rf"source_a.*({message})"):
        _spec({"type": "sql", "url": "postgresql://postgres@127.0.0.1/test", "table": "accounts", "filter": predicate},
              {"type": "file", "path": "b.csv"})


def test_missing_column_names_the_source_and_filter(tmp_path, csv_path):
    spec = _spec({"type": "file", "path": csv_path, "name": "crm", "filter": "region = 'EU'"},
                 {"type": "file", "path": csv_path})
    with pytest.raises(SourceError, match=r"crm .*filter refers to column\(s\) 'region' not found"):
        pipeline.run(spec)


def test_cli_missing_filter_column_exits_2_with_one_line(tmp_path, csv_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    _sql_table(url)
    (tmp_path / "spec.yaml").write_text(
        "name: filtered\nkey: id\nfields: {amount: exact}\n"
        f"source_a: {{type: sql, name: crm, url: '{url}', table: accounts, filter: \"region = 'EU'\"}}\n"
        f"source_b: {{type: file, path: '{csv_path}'}}\n")
    done = subprocess.run([sys.executable, "-m", "recon_pipelines.cli", "run", str(tmp_path / "spec.yaml")],
                          cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                             "DAGSTER_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "crm" in lines[0] and "filter" in lines[0] and "'region'" in lines[0], done.stderr


def test_validate_names_the_filter_field(tmp_path, csv_path):
    from recon_pipelines.sources.checks import check_sources

    spec = _spec({"type": "file", "path": csv_path, "name": "crm", "filter": "region = 'EU'"},
                 {"type": "file", "path": csv_path})
    with pytest.raises(SpecError, match=r"source_a.filter: column 'region' not found in crm"):
        check_sources(spec, tmp_path / "spec.yaml")


def test_validate_and_the_run_agree_that_a_filter_column_is_named_in_any_case(tmp_path, csv_path):
    """Unquoted SQL names ignore case: `STATUS` is the file's `status` for the check and the run alike."""
    from recon_pipelines.sources.checks import check_sources

    (tmp_path / "a.csv").write_text(CSV)
    spec = _spec({"type": "file", "path": str(tmp_path / "a.csv")},
                 {"type": "file", "path": csv_path, "filter": "STATUS <> 'test'"})
    check_sources(spec, tmp_path / "spec.yaml")  # no error
    assert _only_keys(pipeline.run(spec)) == {"only_in_a": ["4"]}
