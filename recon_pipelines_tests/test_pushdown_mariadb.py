"""Push-down on MariaDB (engine/pushdown.py, engine/portable_sql.py) against the real servers:
two tables in one MariaDB database (joined there), and CRM in MariaDB against billing in
PostgreSQL (bucket summaries of md5s of canonical text). Every result must equal the local
path on the same data read through the SQL connector, and the generator's own list of what
it broke.

MariaDB's usual collation (utf8mb4_general_ci) says 'a' = 'A ' is true; DuckDB says those are
different keys and different values. The data set plants exactly that: keys and values that
differ only by case or trailing spaces, 'Dup'/'dup' and 'pad'/'pad ' that are *not*
duplicates, blank keys of tabs and NBSP, decimals at different scales (1.5 in DECIMAL(12,2)
against 1.5000 in DECIMAL(14,4)), timestamps a microsecond apart.
"""

from __future__ import annotations

import logging
import random
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from sqlalchemy.dialects import mysql

from recon_pipelines.cli import main
from recon_pipelines.engine import pushdown
from recon_pipelines.engine.compare import evaluate
from recon_pipelines.engine.pushdown import PushdownResult
from recon_pipelines.runner import run_reconciliation
from recon_pipelines.engine.strategies.cross_database import CanonicalBuckets
from recon_pipelines.engine.strategies.mariadb_join import MariaDbSameDatabase
from recon_pipelines.spec import parse_spec
from recon_pipelines.sqlutil import duckdb_connect
from recon_pipelines_tests.conftest import throwaway_mariadb

COLUMNS = ["id", "kind", "key", "field", "reason", "value_a", "value_b", "difference", "relative_difference", "severity", "detail"]


@pytest.fixture
def mariadb_b():
    """A second MariaDB database on the same server: another URL, so compared by buckets."""
    with throwaway_mariadb() as url:
        yield url


# --------------------------------------------------------------------------- the data set


def _tables(metadata: sa.MetaData, postgres: bool = False) -> tuple[sa.Table, sa.Table]:
    stamp = sa.DateTime() if postgres else mysql.DATETIME(fsp=6)
    a = sa.Table(
        "crm_accounts", metadata,
        sa.Column("id", sa.String(40)), sa.Column("email", sa.String(100)), sa.Column("plan", sa.String(20)),
        sa.Column("amount", sa.Numeric(12, 2)), sa.Column("ratio", sa.Double), sa.Column("qty", sa.Integer),
        sa.Column("updated_at", stamp), sa.Column("signup", sa.Date), sa.Column("note", sa.Text),
    )
    b = sa.Table(
        "billing_accounts", metadata,
        sa.Column("account_id", sa.Text if postgres else sa.String(40)), sa.Column("email", sa.Text if postgres else sa.String(100)),
        sa.Column("plan", sa.String(20)), sa.Column("amount", sa.Numeric(14, 4)), sa.Column("ratio", sa.Double),
        sa.Column("qty", sa.BigInteger), sa.Column("updated_at", stamp), sa.Column("signup", sa.Date), sa.Column("note", sa.Text),
    )
    return a, b


FIELDS = {
    "email": {"compare": "string", "normalize": ["trim", "lower"]},
    "plan": {"compare": "exact", "values": {"pro": ["PRO"]}},
    "amount": {"compare": "numeric", "abs_tol": 0.01},
    "ratio": {"compare": "numeric", "rel_tol": 0.001},
    "qty": "exact",
    "updated_at": {"compare": "timestamp", "lag": "5m"},
    "signup": "exact",
    "note": {"compare": "exact", "nulls": {"both_null": "differ"}},  # trailing spaces count (a string rule trims)
}


def _spec(url_a: str, url_b: str, pushdown_on: bool = True, fields: dict | None = None):
    return parse_spec({
        "name": "crm_vs_billing", "pushdown": pushdown_on,
        "source_a": {"type": "sql", "url": url_a, "table": "crm_accounts", "name": "crm"},
        "source_b": {"type": "sql", "url": url_b, "table": "billing_accounts", "name": "billing"},
        "key": [{"name": "id", "a": "id", "b": "account_id"}],
        "fields": fields or FIELDS,
    })


def _dataset(n: int = 400, seed: int = 11, floats: bool = True):
    """Rows of A and B and the discrepancies the generator planted: {(kind, key, field)}."""
    rng = random.Random(seed)
    t0 = datetime(2024, 1, 1)
    a_rows = []
    for i in range(n):
        a_rows.append({
            "id": f"k{i:04d}", "email": f"user{i}@example.com", "plan": rng.choice(["free", "pro", "team"]),
            "amount": Decimal(rng.randrange(100000)) / 100, "ratio": rng.random() * 1000 if floats else None,
            "qty": rng.randrange(1000), "updated_at": t0 + timedelta(seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(10**6)),
            "signup": date(2020, 1, 1) + timedelta(days=rng.randrange(1500)), "note": rng.choice(["plain", "it's", "caf\u00e9", "x"]),
        })
    b_of = {r["id"]: dict(r) for r in a_rows}
    expected: set[tuple] = set()
    # (field, change, beyond the rule?) — each applied to its own six records of B
    changes = [
        ("email", lambda v: v.upper(), False),                         # normalised away
        ("email", lambda v: v + " ", False),                            # a trailing space: trimmed by the rule
        ("email", lambda v: "other@example.com", True),
        ("plan", lambda v: "PRO" if v == "pro" else v, False),          # an alias (or unchanged)
        ("plan", lambda v: v.capitalize(), True),                       # 'Pro' = 'pro' under _ci, not for the rule
        ("plan", lambda v: "enterprise", True),
        ("amount", lambda v: v + Decimal("0.0001"), False),             # only B's scale holds it; within abs_tol
        ("amount", lambda v: v + Decimal("0.01"), False),               # within abs_tol
        ("amount", lambda v: v + Decimal("5"), True),
        ("amount", lambda v: None, True),
        ("qty", lambda v: v + 1, True),
        ("updated_at", lambda v: v + timedelta(microseconds=1), False),  # within the lag
        ("updated_at", lambda v: v + timedelta(hours=1), True),
        ("signup", lambda v: v + timedelta(days=1), True),
        ("note", lambda v: v + " ", True),                              # 'x ' = 'x' under PAD SPACE, not for the rule
        ("note", lambda v: v.upper(), True),
        ("note", lambda v: None, True),
    ]
    if floats:
        changes += [("ratio", lambda v: v * (1 + 1e-5), False), ("ratio", lambda v: v * 1.5, True)]
    keys = [r["id"] for r in a_rows]
    rng.shuffle(keys)
    cursor = 0
    for column, change, beyond in changes:
        for key in keys[cursor:cursor + 6]:
            before = b_of[key][column]
            b_of[key][column] = change(before)
            if beyond and b_of[key][column] != before:
                expected.add(("field_mismatch", key, column))
        cursor += 6
    by_key = {r["id"]: r for r in a_rows}
    for key in keys[cursor:cursor + 3]:  # null on both sides: a discrepancy under both_null: differ
        by_key[key]["note"] = b_of[key]["note"] = None
        expected.add(("field_mismatch", key, "note"))
    cursor += 3
    # Keys that differ only by case or a trailing space: different keys for DuckDB.
    for key, other in ((keys[cursor], keys[cursor].upper()), (keys[cursor + 1], keys[cursor + 1] + " ")):
        b_of[other] = dict(b_of.pop(key), id=other)
        expected |= {("only_in_a", key, None), ("only_in_b", other, None)}
    cursor += 2
    for key in keys[cursor:cursor + 5]:
        del b_of[key]
        expected.add(("only_in_a", key, None))
    cursor += 5
    b_rows = list(b_of.values())
    for j in range(4):
        b_rows.append(dict(a_rows[j], id=f"new{j}"))
        expected.add(("only_in_b", f"new{j}", None))
    template = a_rows[0]
    # Not duplicates for DuckDB (one of each side pairs up, the other is one-sided) ...
    for ida, idb in (("Dup", "Dup"), ("dup", None), ("pad", "pad"), ("pad ", None)):
        a_rows.append(dict(template, id=ida))
        if idb:
            b_rows.append(dict(template, id=idb))
        else:
            expected.add(("only_in_a", ida, None))
    # ... and real ones, on either side and on both.
    a_rows += [dict(template, id="dupA"), dict(template, id="dupA", amount=Decimal("1.00"))]
    b_rows += [dict(template, id="dupA")]
    b_rows += [dict(template, id="dupB")] * 3
    a_rows += [dict(template, id="dupAB")] * 2
    b_rows += [dict(template, id="dupAB")] * 2
    expected |= {("duplicate_key_a", "dupA", None), ("duplicate_key_b", "dupB", None),
                 ("duplicate_key_a", "dupAB", None), ("duplicate_key_b", "dupAB", None)}
    # Invalid keys: NULL and blank (spaces, tab, NBSP, empty); '  ' and '' are one key under PAD SPACE.
    for side_rows, side, ids in ((a_rows, "a", [None, None, "  ", "", "\u00a0"]), (b_rows, "b", [None, "\t", " "])):
        for key in ids:
            side_rows.append(dict(template, id=key))
            expected.add((f"invalid_key_{side}", "<null>" if key is None else key, None))
    return a_rows, b_rows, expected


def _load(url: str, rows: list[dict], side: str) -> None:
    engine = sa.create_engine(url)
    postgres = engine.dialect.name == "postgresql"
    metadata = sa.MetaData()
    a, b = _tables(metadata, postgres)
    table = a if side == "a" else b
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [r if side == "a" else {("account_id" if k == "id" else k): v for k, v in r.items()} for r in rows])
    engine.dispose()


def _rows(result) -> list[tuple]:
    return sorted(tuple(r[c] for c in COLUMNS) for r in result.discrepancies.to_pylist())


def _found(result) -> set[tuple]:
    return {(r["kind"], r["key"], r["field"] or None) for r in result.discrepancies.to_pylist()}


def _check_same_as_local(local, pushed) -> None:
    assert isinstance(pushed, PushdownResult) and not isinstance(local, PushdownResult)
    assert _rows(pushed) == _rows(local)
    assert pushed.match == local.match
    assert pushed.fields == local.fields


# --------------------------------------------------------------------------- one MariaDB database


@pytest.mark.mariadb
def test_same_mariadb_database_matches_the_ground_truth_and_fetches_only_candidates(mariadb_db, caplog):
    a_rows, b_rows, expected = _dataset()
    _load(mariadb_db, a_rows, "a")
    _load(mariadb_db, b_rows, "b")
    local = run_reconciliation(_spec(mariadb_db, mariadb_db, pushdown_on=False))
    assert _found(local) == expected  # the local path itself finds what the generator planted
    with caplog.at_level(logging.INFO, logger="recon_pipelines.engine.pushdown"):
        pushed = run_reconciliation(_spec(mariadb_db, mariadb_db))
    _check_same_as_local(local, pushed)
    p, m = pushed.pushdown, local.match
    assert p.mode == "same_database" and "same_database" in caplog.text
    assert p.rows_fetched_a == m.candidate_pairs + m.only_in_a and p.rows_fetched_b == m.candidate_pairs + m.only_in_b
    assert p.rows_fetched_a < len(a_rows) / 3 and p.rows_fetched_b < len(b_rows) / 3


@pytest.mark.mariadb
def test_mariadb_refuses_what_it_cannot_pre_check_and_says_why(mariadb_db, caplog):
    a_rows, b_rows, _ = _dataset(n=150)
    _load(mariadb_db, a_rows, "a")
    _load(mariadb_db, b_rows, "b")
    for change, reason in (({"compare": "timestamp", "timezone_a": "Europe/Berlin"}, "a time zone per side on mariadb"),
                           ({"compare": "numeric", "a": "qty", "b": "qty", "scale_a": 0.01}, "a unit scale on mariadb")):
        fields = {**FIELDS, ("updated_at" if "timezone_a" in change else "qty"): change}
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="recon_pipelines.engine.pushdown"):
            result = run_reconciliation(_spec(mariadb_db, mariadb_db, fields=fields))
        assert not isinstance(result, PushdownResult)
        assert reason in caplog.text


# --------------------------------------------------------------------------- MariaDB against PostgreSQL

CROSS_FIELDS = {k: v for k, v in FIELDS.items() if k != "ratio"}  # floats print differently: refused (below)


@pytest.mark.mariadb
@pytest.mark.postgres
def test_mariadb_against_postgresql_matches_the_ground_truth_and_fetches_only_differing_buckets(mariadb_db, pg_url, monkeypatch):
    monkeypatch.setattr(pushdown, "MIN_BUCKETS", 1 << 16)  # ~100 buckets per row: a bucket mate is rare
    a_rows, b_rows, expected = _dataset(floats=False)
    _load(mariadb_db, a_rows, "a")
    _load(pg_url, b_rows, "b")
    local = run_reconciliation(_spec(mariadb_db, pg_url, pushdown_on=False, fields=CROSS_FIELDS))
    assert _found(local) == expected
    pushed = run_reconciliation(_spec(mariadb_db, pg_url, fields=CROSS_FIELDS))
    _check_same_as_local(local, pushed)
    p = pushed.pushdown
    assert p.mode == "canonical_buckets" and not p.fetched_whole
    assert p.rows_fetched_a + p.rows_settled_by_buckets == len(a_rows)
    assert p.rows_fetched_b + p.rows_settled_by_buckets == len(b_rows)
    # Rows behind a planted discrepancy (or a within-tolerance change) are fetched; few others.
    touched = {k for _, k, _ in expected}
    assert p.rows_fetched_a < len(a_rows) / 3 and p.rows_fetched_b < len(b_rows) / 3
    assert p.rows_fetched_a <= sum(1 for r in a_rows if r["id"] in touched) + 60  # 60: the within-tolerance changes


def _clean_rows(n: int = 300) -> list[dict]:
    rows, _, _ = _dataset(n=300)
    return [r for r in rows[:n] if r["note"] is not None]


EXACT_FIELDS = {name: "exact" for name in ("email", "plan", "amount", "qty", "updated_at", "signup", "note")}


@pytest.mark.mariadb
@pytest.mark.postgres
def test_identical_tables_fetch_nothing_and_every_smallest_difference_is_found(mariadb_db, pg_url):
    """Both directions of the canonical hash: equal data settles every bucket; a difference
    of one microsecond, one ten-thousandth, a trailing space or a letter's case is found."""
    rows = _clean_rows()
    for r in rows:
        r["amount"] = r["amount"] or Decimal("0")
    _load(mariadb_db, rows, "a")
    b_rows = [dict(r) for r in rows]
    _load(pg_url, b_rows, "b")
    spec = _spec(mariadb_db, pg_url, fields=EXACT_FIELDS)
    clean = run_reconciliation(spec)
    p = clean.pushdown
    assert p.mode == "canonical_buckets" and clean.discrepancies.num_rows == 0
    assert p.rows_fetched == 0 and p.differing_buckets == 0 and p.rows_settled_by_buckets == len(rows)

    smallest = {
        "amount": lambda v: v + Decimal("0.0001"), "updated_at": lambda v: v + timedelta(microseconds=1),
        "note": lambda v: v + " ", "email": lambda v: v.upper(), "qty": lambda v: v + 1,
        "signup": lambda v: v + timedelta(days=1), "plan": lambda v: v + "\u00a0",
    }
    engine = sa.create_engine(pg_url)
    planted = set()
    with engine.begin() as conn:
        for (column, change), row in zip(smallest.items(), rows[::7]):
            conn.execute(sa.text(f"UPDATE billing_accounts SET {column} = :v WHERE account_id = :k"), {"v": change(row[column]), "k": row["id"]})
            planted.add(("field_mismatch", row["id"], column))
    engine.dispose()
    drifted = run_reconciliation(spec)
    assert _found(drifted) == planted
    assert len(planted) <= drifted.pushdown.rows_fetched_a < len(rows) / 10


@pytest.mark.mariadb
@pytest.mark.postgres
def test_floats_across_two_databases_are_compared_locally(mariadb_db, mariadb_b, pg_url, caplog):
    """MariaDB prints a double in fewer digits than it needs: two doubles could print alike,
    so no canonical text is trusted for them (against PostgreSQL the types differ anyway)."""
    rows = _clean_rows(50)
    for url, side in ((mariadb_db, "a"), (mariadb_b, "b"), (pg_url, "b")):
        _load(url, rows, side)
    for url_b, reason in ((mariadb_b, "floats print differently"), (pg_url, "are compared as text locally")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="recon_pipelines.engine.pushdown"):
            result = run_reconciliation(_spec(mariadb_db, url_b, fields={"ratio": "exact"}))
        assert not isinstance(result, PushdownResult)
        assert "'ratio'" in caplog.text and reason in caplog.text


@pytest.mark.mariadb
def test_two_mariadb_databases_compare_by_canonical_buckets(mariadb_db, mariadb_b, monkeypatch):
    monkeypatch.setattr(pushdown, "MIN_BUCKETS", 1 << 16)
    a_rows, b_rows, expected = _dataset(n=200, floats=False)
    _load(mariadb_db, a_rows, "a")
    _load(mariadb_b, b_rows, "b")
    local = run_reconciliation(_spec(mariadb_db, mariadb_b, pushdown_on=False, fields=CROSS_FIELDS))
    pushed = run_reconciliation(_spec(mariadb_db, mariadb_b, fields=CROSS_FIELDS))
    _check_same_as_local(local, pushed)
    assert _found(pushed) == expected and pushed.pushdown.mode == "canonical_buckets"


# --------------------------------------------------------------------------- strategies and recon validate


@pytest.mark.mariadb
@pytest.mark.postgres
def test_strategies_say_which_runs_and_why_the_others_are_refused(mariadb_db, pg_url, tmp_path, monkeypatch):
    monkeypatch.setattr(pushdown, "MIN_BUCKETS", 1 << 16)
    a_rows, b_rows, _ = _dataset(n=150, floats=False)
    _load(mariadb_db, a_rows, "a")
    _load(mariadb_db, b_rows, "b")
    _load(pg_url, b_rows, "b")
    same, cross = _spec(mariadb_db, mariadb_db), _spec(mariadb_db, pg_url, fields=CROSS_FIELDS)

    join, buckets = MariaDbSameDatabase(), CanonicalBuckets()
    assert join.refuses(same) is None and buckets.refuses(cross) is None
    assert buckets.refuses(same) == "both tables are in one MariaDB database"
    assert join.refuses(cross) == "the tables are in two databases (MariaDB, PostgreSQL)"

    # The strategy leaves __pairs as compare.match does: evaluate then reports the local answer.
    local = run_reconciliation(_spec(mariadb_db, pg_url, pushdown_on=False, fields=CROSS_FIELDS))
    con = duckdb_connect()
    pairing = buckets.pair(cross, con, sides=None)
    table, fields = evaluate(con, cross, "__pairs")
    assert pairing.strategy == "canonical_buckets" and pairing.stats == local.match and fields == local.fields
    assert sorted(map(str, table.column("id").to_pylist())) == sorted(map(str, local.discrepancies.column("id").to_pylist()))
    assert 0 < pairing.rows_moved["a"] < len(a_rows)  # most records of this small set were changed
    with pytest.raises(pushdown.NotPushable):
        join.pair(cross, con)

    specs = {"same.yaml": same, "cross.yaml": cross, "floats.yaml": _spec(mariadb_db, pg_url, fields={"ratio": "exact"}),
             "tz.yaml": _spec(mariadb_db, mariadb_db, fields={"updated_at": {"compare": "timestamp", "timezone_a": "Europe/Berlin"}})}
    for file, spec in specs.items():
        data = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        (tmp_path / file).write_text(yaml.safe_dump({**data, "name": file.removesuffix(".yaml")}))
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    blocks = {b.split()[0]: b for b in result.output.split("ok  ")[1:]}
    assert "strategy: mariadb_same_database (both tables are in one MariaDB database)" in blocks["same"]
    assert ("refused: duckdb_files, postgres_same_database, postgres_buckets, canonical_buckets: "
            "both tables are in one MariaDB database") in blocks["same"]
    assert "strategy: canonical_buckets (the tables are in two databases (MariaDB, PostgreSQL))" in blocks["cross"]
    assert "mariadb_same_database, postgres_buckets: the tables are in two databases" in blocks["cross"]
    assert "strategy: local" in blocks["floats"] and "'ratio'" in blocks["floats"]
    assert "strategy: local" in blocks["tz"] and "a time zone per side on mariadb is applied locally" in blocks["tz"]
    # Besides the strategy lines, validate names columns whose types differ between the sides (schema_diff).
    assert all(line.startswith(("ok  ", "    strategy: ", "    refused: ")) or ": types: " in line
               for line in result.output.splitlines()[:-1]), result.output


@pytest.mark.mariadb
def test_push_down_statements_run_in_a_read_only_transaction_on_mariadb(mariadb_db):
    """pushdown._run opens MariaDB transactions with START TRANSACTION READ ONLY on the
    connector's read-only engine: a write there fails, naming the source, and changes nothing."""
    from types import SimpleNamespace

    from recon_pipelines.sources.base import SourceError
    from recon_pipelines.sources.sql import SqlConnector
    from recon_pipelines.spec.models import SqlSource

    engine = sa.create_engine(mariadb_db)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE victim (id int)"))
    connector = SqlConnector(SqlSource(type="sql", name="crm", url=mariadb_db, table="victim"))
    side = SimpleNamespace(connector=connector, label=connector.label, profile=pushdown.PROFILES["mariadb"])
    try:
        with pytest.raises(SourceError, match="crm .*READ ONLY transaction"):
            pushdown._run(side, "summary", lambda conn: conn.execute(sa.text("INSERT INTO victim VALUES (1)")))
        in_transaction = pushdown._run(side, "summary", lambda conn: conn.execute(sa.text(
            "SELECT @@in_transaction, @@max_statement_time")).one())
    finally:
        connector.close()
    assert in_transaction[0] == 1 and float(in_transaction[1]) == pytest.approx(600.0)  # the source's default timeout
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM victim")).scalar() == 0
    engine.dispose()


@pytest.mark.mariadb
def test_keys_in_two_different_collations_are_joined_byte_wise(mariadb_db):
    """A's key in utf8mb4_general_ci, B's in utf8mb4_unicode_ci (MariaDB refuses to compare the
    two directly), B's with trailing spaces and another case: joined byte-wise, as locally."""
    engine = sa.create_engine(mariadb_db)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE crm_accounts (id varchar(20) COLLATE utf8mb4_general_ci, qty int)"))
        conn.execute(sa.text("CREATE TABLE billing_accounts (account_id varchar(20) COLLATE utf8mb4_unicode_ci, qty int)"))
        conn.execute(sa.text("INSERT INTO crm_accounts VALUES ('a', 1), ('b', 2), ('c', 3), ('stra\u00dfe', 4)"))
        conn.execute(sa.text("INSERT INTO billing_accounts VALUES ('a', 1), ('B', 2), ('c ', 3), ('strasse', 4)"))
    engine.dispose()
    fields = {"qty": "exact"}
    local = run_reconciliation(_spec(mariadb_db, mariadb_db, pushdown_on=False, fields=fields))
    pushed = run_reconciliation(_spec(mariadb_db, mariadb_db, fields=fields))
    _check_same_as_local(local, pushed)
    assert _found(pushed) == {("only_in_a", "b", None), ("only_in_a", "c", None), ("only_in_a", "stra\u00dfe", None),
                              ("only_in_b", "B", None), ("only_in_b", "c ", None), ("only_in_b", "strasse", None)}


@pytest.mark.mariadb
@pytest.mark.postgres
def test_composite_integer_keys_on_mariadb_and_across_to_postgresql(mariadb_db, pg_url):
    """(region, no) with a primary key on MariaDB (duplicates ruled out there, not grouped),
    none on PostgreSQL; timestamps a microsecond apart and decimals at two scales."""
    t0 = datetime(2025, 6, 1)
    a = [(r, n, Decimal(n) / 4, t0 + timedelta(minutes=n)) for r in (1, 2) for n in range(150)]
    b = [(r, n, t + Decimal("0.5") if n % 40 == 3 else t, p + timedelta(microseconds=1) if n % 60 == 5 else p)
         for r, n, t, p in a if n % 50 != 7]
    b_pg = b + [(1, 1, Decimal("0.25"), t0 + timedelta(minutes=1))]  # (1, 1) twice in PostgreSQL
    for url, name, rows, stamp, scale, primary in ((mariadb_db, "orders_a", a, mysql.DATETIME(fsp=6), 2, True),
                                                   (mariadb_db, "orders_b", b, mysql.DATETIME(fsp=6), 4, True),
                                                   (pg_url, "orders_b", b_pg, sa.DateTime(), 4, False)):
        engine = sa.create_engine(url)
        table = sa.Table(name, sa.MetaData(), sa.Column("region", sa.Integer, nullable=not primary),
                         sa.Column("no", sa.BigInteger, nullable=not primary), sa.Column("total", sa.Numeric(10, scale)),
                         sa.Column("placed", stamp), *([sa.PrimaryKeyConstraint("region", "no")] if primary else []))
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(table.insert(), [dict(zip(("region", "no", "total", "placed"), r)) for r in rows])
        engine.dispose()

    def spec(url_b: str, pushdown_on: bool = True):
        return parse_spec({
            "name": "orders", "pushdown": pushdown_on, "key": ["region", "no"],
            "source_a": {"type": "sql", "url": mariadb_db, "table": "orders_a"},
            "source_b": {"type": "sql", "url": url_b, "table": "orders_b"},
            "fields": {"total": {"compare": "numeric", "abs_tol": 0.01}, "placed": "exact"},
        })

    for url_b, mode in ((mariadb_db, "same_database"), (pg_url, "canonical_buckets")):
        local = run_reconciliation(spec(url_b, pushdown_on=False))
        pushed = run_reconciliation(spec(url_b))
        _check_same_as_local(local, pushed)
        assert pushed.pushdown.mode == mode
        found = _found(local)
        assert ("only_in_a", "[\"1\",\"7\"]", None) in found and ("field_mismatch", "[\"2\",\"5\"]", "placed") in found
        assert ("field_mismatch", "[\"1\",\"3\"]", "total") in found
    assert ("duplicate_key_b", "[\"1\",\"1\"]", None) in found
