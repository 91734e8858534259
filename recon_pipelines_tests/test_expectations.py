"""Expectations per side (``source_a.expect``): the spec's shape, their evaluation over a side's
records against a reference computed here in Python, the stop or warning in ``recon run``, and
the asset checks on the snapshot assets (an ``error`` one blocks the comparison, ``warn`` not)."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from recon_pipelines import expectations
from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines import pipeline
from recon_pipelines.spec import parse_spec
from recon_pipelines.spec.loader import SpecError

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
ROWS = [  # id, email, status, amount, updated_at (UTC)
    ("1", "a@x.io", "active", "10", "2026-03-09 08:00:00"),
    ("2", None, "active", "-5", "2026-03-08 08:00:00"),
    ("3", "c@x.io", "churned", "30", "2026-03-01 08:00:00"),
    ("4", "c@x.io", "paused", "abc", "2026-03-02 08:00:00"),
    ("5", "E@X.IO ", None, None, None),
]


def _csv(rows) -> str:
    return "id,email,status,amount,updated_at\n" + "".join(",".join(v or "" for v in r) + "\n" for r in rows)


def _spec(folder: Path, expect: list, severity_b: list | None = None, source_a: dict | None = None):
    (folder / "a.csv").write_text(_csv(ROWS))
    (folder / "b.csv").write_text(_csv(ROWS))
    return parse_spec({
        "name": "checked", "key": "id", "fields": {"email": "exact", "status": "exact", "amount": "exact"},
        "source_a": source_a or {"type": "file", "path": str(folder / "a.csv"), "updated_at": "updated_at", "expect": expect},
        "source_b": {"type": "file", "path": str(folder / "b.csv"), "expect": severity_b or []},
    })


# --------------------------------------------------------------------------- reference model


def _reference(kind: str, column: str | None = None, **options) -> set[str]:
    """Keys of the rows failing each kind, from the textbook definitions (NULL passes, except not_null)."""
    index = {"email": 1, "status": 2, "amount": 3}.get(column)
    values = [(r[0], r[index] if index else None) for r in ROWS]
    if kind == "not_null":
        return {k for k, v in values if v is None}
    if kind == "unique":
        return {k for k, v in values if v is not None and sum(1 for _, w in values if w == v) > 1}
    if kind == "accepted_values":
        return {k for k, v in values if v is not None and v not in options["values"]}
    if kind == "range":
        def bad(v):
            try:
                x = float(v)
            except ValueError:
                return True
            return (options.get("min") is not None and x < options["min"]) or (options.get("max") is not None and x > options["max"])
        return {k for k, v in values if v is not None and bad(v)}
    if kind == "regex":
        return {k for k, v in values if v is not None and not re.search(options["pattern"], v)}
    raise AssertionError(kind)


CASES = [
    ({"not_null": "email"}, "not_null", "email", {}),
    ({"unique": "email"}, "unique", "email", {}),
    ({"accepted_values": {"column": "status", "values": ["active", "churned"]}}, "accepted_values", "status",
     {"values": ["active", "churned"]}),
    ({"range": {"column": "amount", "min": 0, "max": 20}}, "range", "amount", {"min": 0, "max": 20}),
    ({"regex": {"column": "email", "pattern": "^[a-z]+@[a-z]+\\.[a-z]+$"}}, "regex", "email",
     {"pattern": "^[a-z]+@[a-z]+\\.[a-z]+$"}),
]


@pytest.mark.parametrize("item, kind, column, options", CASES, ids=[c[1] for c in CASES])
def test_each_row_kind_fails_the_rows_the_reference_fails(tmp_path, item, kind, column, options):
    spec = _spec(tmp_path, [item])
    (outcome,) = expectations.evaluate_scan(spec, "a", f"read_csv('{tmp_path / 'a.csv'}', all_varchar=true)",
                                            {"id": "id", "email": "email", "status": "status", "amount": "amount"}, NOW)
    expected = _reference(kind, column, **options)
    assert outcome.failing_rows == len(expected) and set(outcome.failing_keys) == expected
    assert outcome.passed is (not expected)
    assert outcome.check_name == f"expect_{kind}_{column}"


def test_sql_row_count_and_freshness(tmp_path):
    spec = _spec(tmp_path, [
        {"sql": "TRY_CAST(amount AS INTEGER) >= 0 OR amount IS NULL", "name": "non_negative", "severity": "warn"},
        {"row_count": {"min": 1, "max": 4}},
        {"freshness": {"max_age": "2d"}},
        {"freshness": {"max_age": "12h"}, "name": "fresh_today"},
    ])
    snapshot = tmp_path / "snap.parquet"
    from recon_pipelines.snapshots import snapshot_columns, write_snapshot
    write_snapshot(spec.source_a, snapshot_columns(spec, "a"), snapshot)
    sql, count, fresh, stale = expectations.evaluate_snapshot(spec, "a", snapshot, NOW)
    assert (sql.check_name, sql.severity) == ("expect_non_negative", "warn")
    assert set(sql.failing_keys) == {"2", "4"}  # -5, and 'abc' (TRY_CAST gives NULL: not true)
    assert not count.passed and "5 records" in count.detail  # 5 rows > max 4
    assert fresh.passed  # newest 2026-03-09 08:00, 28 h before NOW
    assert not stale.passed and stale.check_name == "expect_fresh_today"


def test_a_predicate_that_errors_names_the_side(tmp_path):
    spec = _spec(tmp_path, [{"sql": "CAST(amount AS INTEGER) >= 0"}])
    with pytest.raises(expectations.ExpectationFailed, match=r"side A \(a\): expectations cannot be evaluated: .*'abc'"):
        expectations.evaluate_scan(spec, "a", f"read_csv('{tmp_path / 'a.csv'}', all_varchar=true)", {"id": "id", "amount": "amount"})


def test_sql_predicate_null_fails(tmp_path):
    spec = _spec(tmp_path, [{"sql": "TRY_CAST(amount AS INTEGER) >= 0"}])
    (outcome,) = expectations.evaluate_scan(spec, "a", f"read_csv('{tmp_path / 'a.csv'}', all_varchar=true)",
                                            {"id": "id", "amount": "amount"}, NOW)
    # -5 is false; 'abc' and the empty amount are NULL, which is not true: they fail too.
    assert set(outcome.failing_keys) == {"2", "4", "5"} and outcome.failing_rows == 3


# --------------------------------------------------------------------------- the spec


def test_spec_shapes_and_errors(tmp_path):
    spec = _spec(tmp_path, [{"not_null": "email", "severity": "warn"}, {"sql": "amount <> ''", "name": "has_amount"}])
    assert [e.check_name for e in spec.source_a.expect] == ["expect_not_null_email", "expect_has_amount"]
    with pytest.raises(SpecError, match=r"source_a.expect.0: unknown column\(s\) region"):
        _spec(tmp_path, [{"not_null": "region"}])
    with pytest.raises(SpecError, match=r"exactly one of"):
        _spec(tmp_path, [{"not_nul": "email"}])
    with pytest.raises(SpecError, match=r"freshness needs source_a.updated_at"):
        _spec(tmp_path, [], source_a={"type": "file", "path": "a.csv", "expect": [{"freshness": {"max_age": "1d"}}]})
    with pytest.raises(SpecError, match=r"used twice"):
        _spec(tmp_path, [{"not_null": "email"}, {"not_null": "email", "severity": "warn"}])
    with pytest.raises(SpecError, match=r"sql must be exactly one boolean expression"):
        _spec(tmp_path, [{"sql": "1; DROP TABLE x"}])


# --------------------------------------------------------------------------- recon run


def _recon(tmp_path: Path, spec_yaml: str) -> subprocess.CompletedProcess:
    (tmp_path / "spec.yaml").write_text(spec_yaml)
    return subprocess.run([sys.executable, "-m", "recon_pipelines.cli", "run", str(tmp_path / "spec.yaml")], cwd=tmp_path,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)


def _yaml(tmp_path, expect_b: str) -> str:
    (tmp_path / "a.csv").write_text(_csv(ROWS))
    (tmp_path / "b.csv").write_text(_csv(ROWS))
    return ("name: checked\nkey: id\nfields: {status: exact}\n"
            f"source_a: {{type: file, path: a.csv, name: crm}}\n"
            f"source_b: {{type: file, path: b.csv, name: billing, expect: [{expect_b}]}}\n")


def test_cli_error_expectation_stops_with_exit_2_naming_side_and_expectation(tmp_path):
    done = _recon(tmp_path, _yaml(tmp_path, "{not_null: status}"))
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "side B (billing)" in lines[0] and "expect_not_null_status" in lines[0], done.stderr
    assert "reconciliation" not in done.stdout  # nothing was compared


def test_cli_warn_expectation_prints_a_warning_and_compares(tmp_path):
    done = _recon(tmp_path, _yaml(tmp_path, "{not_null: status, severity: warn}"))
    assert done.returncode == 0, done.stderr  # the sides agree
    assert "warning: checked: side B (billing): expectation expect_not_null_status failed: 1 of 5 records fail (keys 5)" in done.stderr
    assert "reconciliation checked" in done.stdout


def test_sql_source_expectation_on_the_snapshot(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id INTEGER, status TEXT, changed TIMESTAMP)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 'active', '2026-01-01 00:00:00'), (2, 'gone', '2026-01-02 00:00:00')"))
    engine.dispose()
    (tmp_path / "b.csv").write_text("id,status\n1,active\n2,gone\n")
    warnings: list[str] = []
    spec = parse_spec({"name": "s", "key": "id", "fields": {"status": "exact"},
                       "source_a": {"type": "sql", "url": url, "table": "t", "updated_at": "changed",
                                    "expect": [{"accepted_values": {"column": "status", "values": ["active"]}, "severity": "warn"},
                                               {"freshness": {"max_age": "1d"}, "severity": "warn"}]},
                       "source_b": {"type": "file", "path": str(tmp_path / "b.csv")}})
    result = pipeline.run(spec, warn=warnings.append)
    assert result.discrepancies.num_rows == 0
    assert len(warnings) == 2 and "(keys 2)" in warnings[0] and "expect_freshness" in warnings[1]
    assert "newest updated_at 2026-01-02T00:00:00+00:00" in warnings[1]


# --------------------------------------------------------------------------- Dagster


def _materialize(tmp_path, expect_b: list):
    spec = _spec(tmp_path, [], expect_b)
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 't.sqlite'}")
    defs = build_definitions(specs=[spec], recon=recon)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_checked").execute_in_process(instance=instance, raise_on_error=False)
    checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    materialized = {e.materialization.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    return checks, materialized


def test_error_expectation_blocks_the_comparison_in_dagster(tmp_path):
    checks, materialized = _materialize(tmp_path, [{"accepted_values": {"column": "status", "values": ["active", "churned"]}}])
    check = checks[("snapshot_b", "expect_accepted_values_status")]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["failing_rows"].value == 1 and check.metadata["failing_keys"].value == "4"
    assert materialized == {"snapshot_a", "snapshot_b"}  # blocking: nothing downstream ran


def test_warn_expectation_is_reported_and_the_comparison_runs_in_dagster(tmp_path):
    checks, materialized = _materialize(tmp_path, [{"unique": "email", "severity": "warn"}, {"not_null": "id"}])
    check = checks[("snapshot_b", "expect_unique_email")]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert checks[("snapshot_b", "expect_not_null_id")].passed is True
    assert "tracker_state" in materialized
