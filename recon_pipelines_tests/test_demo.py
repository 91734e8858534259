"""The demo: deterministic sources, the advertised active counts, and the engine finding
exactly the seeded discrepancies (no more, no fewer) with both demo specs."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recon_pipelines.demo import (
    DEMO_DATA_ENV,
    DEMO_SPECS_DIR,
    DEMO_VERSION,
    ensure_demo_data,
    generate_demo,
    load_ground_truth,
)
from recon_pipelines.engine.compare import Side, compare, connect, side_columns
from recon_pipelines.sources.base import RecordFilter
from recon_pipelines.sources.files import FileConnector
from recon_pipelines.sources.sql import SqlConnector
from recon_pipelines.spec import load_spec, load_spec_dir

SPECS = ("crm_vs_billing", "billing_vs_warehouse")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    generate_demo(folder)
    return folder


@pytest.fixture
def demo_env(demo_dir, monkeypatch) -> Path:
    monkeypatch.setenv(DEMO_DATA_ENV, str(demo_dir))
    return demo_dir


def _open_side(con: duckdb.DuckDBPyConnection, spec, side: str) -> Side:
    """A Side for the engine: files are scanned by DuckDB directly, SQL sources are read
    through their connector into Arrow and registered (the sqlite scanner may be offline)."""
    source = getattr(spec, f"source_{side}")
    columns = side_columns(spec, side)
    if source.type == "file":
        return Side(FileConnector(source).scan_sql(), columns, source.name or side)
    connector = SqlConnector(source)
    try:
        table = pa.Table.from_batches(list(connector.batches()), schema=connector.schema())
    finally:
        connector.close()
    view = f"__src_{side}"
    con.register(view, table)
    return Side(view, columns, source.name or side)


def _run(spec):
    con = connect()
    try:
        return compare(spec, _open_side(con, spec, "a"), _open_side(con, spec, "b"), con=con)
    finally:
        con.close()


def _sqlite_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT * FROM customers ORDER BY customer_id").fetchall()
        schema = con.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    con.close()
    return [*schema, *rows]


# --------------------------------------------------------------------------- the generator


def test_generation_is_deterministic(tmp_path):
    first = generate_demo(tmp_path / "one")
    second = generate_demo(tmp_path / "two")
    assert first == second
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "billing.csv").read_bytes() == (two / "billing.csv").read_bytes()
    assert (one / "ground_truth.json").read_bytes() == (two / "ground_truth.json").read_bytes()
    assert _sqlite_rows(one / "crm.sqlite") == _sqlite_rows(two / "crm.sqlite")
    assert pq.read_table(one / "warehouse.parquet").equals(pq.read_table(two / "warehouse.parquet"))
    assert (one / "warehouse.parquet").read_bytes() == (two / "warehouse.parquet").read_bytes()
    assert json.loads((one / "ground_truth.json").read_text()) == first


def test_active_counts_tell_the_story(demo_dir):
    with sqlite3.connect(demo_dir / "crm.sqlite") as con:
        crm = con.execute("SELECT count(*) FROM customers WHERE status = 'active'").fetchone()[0]
        crm_total = con.execute("SELECT count(*) FROM customers").fetchone()[0]
    con.close()
    with duckdb.connect() as con:
        billing = con.execute(
            f"SELECT count(*) FILTER (account_status = 'ACTIVE'), count(*) FROM read_csv('{demo_dir / 'billing.csv'}', all_varchar=true)"
        ).fetchone()
        warehouse = con.execute(
            f"SELECT count(*) FILTER (is_active), count(*), count(DISTINCT customer_key) FROM '{demo_dir / 'warehouse.parquet'}'"
        ).fetchone()
    assert (crm, billing[0], warehouse[0]) == (847, 839, 851)
    truth = load_ground_truth(demo_dir)
    assert truth["active_counts"] == {"crm": 847, "billing": 839, "warehouse": 851}
    assert truth["row_counts"] == {"crm": crm_total, "billing": billing[1], "warehouse": warehouse[1]}
    assert warehouse[2] == warehouse[1] - 1  # one duplicated key


def test_timestamps_cover_the_week_before_the_reference_date(demo_env):
    demo_dir = demo_env
    truth = load_ground_truth(demo_dir)
    days = [(date(2026, 11, 20) - timedelta(days=n)).isoformat() for n in range(7, 0, -1)]
    for source, per_day in truth["updated_per_day"].items():
        assert list(per_day) == days, source
        assert sum(per_day.values()) == truth["row_counts"][source]
        assert min(per_day.values()) > 50, source  # every day has something to show

    # A week of daily windows, read through each source's connector, holds every record once.
    specs = {spec.name: spec for spec in load_spec_dir(DEMO_SPECS_DIR)}
    sources = {
        "crm": SqlConnector(specs["crm_vs_billing"].source_a),
        "billing": FileConnector(specs["crm_vs_billing"].source_b),
        "warehouse": FileConnector(specs["billing_vs_warehouse"].source_b),
    }
    for name, connector in sources.items():
        column = connector.spec.updated_at
        with connector:
            for day in days:
                start = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
                window = RecordFilter(updated_column=column, modified_from=start, modified_to=start + timedelta(days=1))
                rows = sum(batch.num_rows for batch in connector.batches([column], window))
                assert rows == truth["updated_per_day"][name][day], (name, day)

    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        low, high = con.execute(f"SELECT min(loaded_at), max(loaded_at) FROM '{demo_dir / 'warehouse.parquet'}'").fetchone()
    assert datetime(2026, 11, 13, tzinfo=timezone.utc) <= low and high < datetime(2026, 11, 20, tzinfo=timezone.utc)


def test_ensure_demo_data_generates_once(tmp_path):
    folder = tmp_path / "data"
    assert ensure_demo_data(folder) == folder.resolve()
    marker = folder / "ground_truth.json"
    stamp = marker.stat().st_mtime_ns
    ensure_demo_data(folder)
    assert marker.stat().st_mtime_ns == stamp  # already there: untouched

    truth = json.loads(marker.read_text())
    truth["version"] = DEMO_VERSION - 1
    marker.write_text(json.dumps(truth))
    ensure_demo_data(folder)
    assert load_ground_truth(folder)["version"] == DEMO_VERSION  # stale version: regenerated

    (folder / "billing.csv").unlink()
    ensure_demo_data(folder)
    assert (folder / "billing.csv").is_file()
    assert not list(folder.glob(".*.tmp"))


def test_the_specs_load_with_the_data_folder(demo_env):
    every = {spec.name: spec for spec in load_spec_dir(DEMO_SPECS_DIR)}
    assert set(every) == {*SPECS, "customers_three_way"}  # the three systems at once: test_nway.py
    specs = {name: every[name] for name in SPECS}
    crm = specs["crm_vs_billing"]
    assert crm.source_names == ("crm", "billing")
    assert crm.source_a.url == f"sqlite:///{demo_env}/crm.sqlite"
    assert specs["billing_vs_warehouse"].source_names == ("billing", "warehouse")
    assert all(s.source_a.updated_at and s.source_b.updated_at for s in specs.values())
    rule_types = {rule.compare for spec in specs.values() for rule in spec.fields}
    assert rule_types == {"exact", "string", "numeric", "timestamp"}
    for spec in specs.values():
        assert spec.key[0].a != spec.key[0].b  # the key has a different name on each side


# --------------------------------------------------------------------------- the engine against the truth


@pytest.mark.parametrize("name", SPECS)
def test_engine_finds_exactly_the_seeded_discrepancies(demo_env, name):
    spec = load_spec(DEMO_SPECS_DIR / f"{name}.yaml")
    expected = load_ground_truth(demo_env)["reconciliations"][name]
    result = _run(spec)
    found = result.discrepancies.to_pylist()

    got = {(d["kind"], d["key"], d["field"]) for d in found}
    want = {(d["kind"], d["key"], d["field"]) for d in expected["discrepancies"]}
    assert len(found) == len(got)
    assert sorted(got - want, key=str) == [], "reported but not seeded"
    assert sorted(want - got, key=str) == [], "seeded but not reported"

    assert result.counts_by_kind == expected["by_kind"]
    fields = Counter(d["field"] for d in found if d["kind"] == "field_mismatch")
    assert dict(fields) == expected["field_mismatches"]

    by_triple = {(d["kind"], d["key"], d["field"]): d for d in found}
    for item in expected["discrepancies"]:
        d = by_triple[(item["kind"], item["key"], item["field"])]
        assert d["reason"] == item["reason"], item
        assert d["severity"] == item["severity"], item
        if "difference" in item:
            assert d["difference"] == pytest.approx(item["difference"], abs=1e-6), item


@pytest.mark.parametrize("name", SPECS)
def test_absorbed_drift_is_measured_not_reported(demo_env, name):
    """The drift within tolerance shows in the field statistics, not as discrepancies."""
    result = _run(load_spec(DEMO_SPECS_DIR / f"{name}.yaml"))
    truth = load_ground_truth(demo_env)["reconciliations"][name]
    drift = {d["drift"]: d["records"] for d in truth["drift"]}
    stats = result.fields
    # 42.500 vs 42.50 and 42.504 vs 42.50: raw values differ, numbers within a cent.
    assert stats["mrr"].within_tolerance >= drift["amount_three_decimals"] + drift["amount_rounding"]
    assert stats["mrr"].max_within_tolerance == pytest.approx(0.004, abs=1e-9)
    assert stats["email"].within_tolerance >= drift["email_case_only"] + drift["email_whitespace"]
    assert stats["updated_at"].within_tolerance > 500  # every synced record, seconds apart
    assert 0 < stats["updated_at"].max_within_tolerance <= (300 if name == "crm_vs_billing" else 600)


def test_a_week_across_a_dst_change_keeps_the_story(tmp_path, monkeypatch):
    """Billing's naive New York times stay unambiguous when the week spans the end of DST."""
    truth = generate_demo(tmp_path, reference_date=date(2026, 11, 5))
    monkeypatch.setenv(DEMO_DATA_ENV, str(tmp_path))
    assert list(truth["updated_per_day"]["billing"])[0] == "2026-10-29"
    for name in SPECS:
        found = _run(load_spec(DEMO_SPECS_DIR / f"{name}.yaml")).discrepancies.to_pylist()
        got = {(d["kind"], d["key"], d["field"], d["severity"]) for d in found}
        want = {(d["kind"], d["key"], d["field"], d["severity"]) for d in truth["reconciliations"][name]["discrepancies"]}
        assert got == want, name
