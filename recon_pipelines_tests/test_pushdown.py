"""Push-down (the strategies postgres_join, bucket_summaries, duckdb_files) against the real PostgreSQL: the same discrepancies as the
local path, and only candidates (same database) or differing buckets (two databases) fetched.

The data set exercises every rule type (exact with a value mapping, string normalisation,
numeric absolute/relative tolerance and unit scale, timestamps with a lag and a zone per
side, naive times around daylight-saving changes), nulls (allowed, null-vs-null that
differs, null against an empty string), NULL and blank keys, duplicate keys on either side
and on both, one-sided rows, drift within tolerance, and awkward names and values (quotes
in table and column names, a schema, backslashes, newlines, NBSP, accents).
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb
import pytest
import sqlalchemy as sa

from recon_pipelines import pipeline
from recon_pipelines.engine import strategies
from recon_pipelines.engine import pushdown
from recon_pipelines.engine.pushdown import bucket_count
from recon_pipelines.sources.base import SourceError
from recon_pipelines.spec import parse_spec
from recon_pipelines_tests.conftest import throwaway_database

TABLE_A = 'Crm "Accounts"'
TABLE_B = "crm b"
SCHEMA_B = "sales"
BERLIN = ZoneInfo("Europe/Berlin")
COLUMNS = ["id", "kind", "key", "field", "reason", "value_a", "value_b", "difference", "relative_difference", "severity", "detail"]


@pytest.fixture
def pg_url_b(pg_admin_url: str):
    """A second throwaway database (another "server" for the bucket path), dropped afterwards."""
    with throwaway_database(pg_admin_url) as url:
        yield url


# --------------------------------------------------------------------------- the data set


def _tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    a = sa.Table(
        TABLE_A, metadata,
        sa.Column("id", sa.Text), sa.Column("email", sa.Text), sa.Column("plan", sa.String(20)),
        sa.Column("amount", sa.Numeric(12, 2)), sa.Column("ratio", sa.Double), sa.Column("cents", sa.BigInteger),
        sa.Column("updated_at", sa.DateTime), sa.Column("seen_at", sa.DateTime(timezone=True)),
        sa.Column("active", sa.Boolean), sa.Column("note", sa.Text), sa.Column("region", sa.Text),
        sa.Column("signup", sa.Date), sa.Column('Odd "Col"', sa.Text),
    )
    b = sa.Table(
        TABLE_B, metadata,
        sa.Column("account_id", sa.String(40)), sa.Column("email_address", sa.Text), sa.Column("plan", sa.Text),
        sa.Column("amount", sa.Numeric(12, 2)), sa.Column("ratio", sa.Double), sa.Column("dollars", sa.Numeric(14, 2)),
        sa.Column("updated_at", sa.DateTime), sa.Column("seen_at", sa.DateTime(timezone=True)),
        sa.Column("active", sa.Boolean), sa.Column("note", sa.Text), sa.Column("region", sa.String(10)),
        sa.Column("signup", sa.Date), sa.Column("odd col", sa.Text),
        schema=SCHEMA_B,
    )
    return a, b


def _spec(url_a: str, url_b: str, pushdown_on: bool = True, **changes) -> object:
    spec = {
        "name": "pushdown_test",
        "pushdown": pushdown_on,
        "source_a": {"type": "sql", "url": url_a, "table": TABLE_A, "name": "crm"},
        "source_b": {"type": "sql", "url": url_b, "table": TABLE_B, "schema": SCHEMA_B, "name": "billing"},
        "key": [{"name": "id", "a": "id", "b": "account_id"}],
        "fields": {
            "email": {"compare": "string", "b": "email_address", "normalize": ["trim", "lower"]},
            "plan": {"compare": "exact", "values": {"pro": ["PRO", "P2"]}},
            "amount": {"compare": "numeric", "abs_tol": 0.01},
            "ratio": {"compare": "numeric", "rel_tol": 0.001},
            "total": {"compare": "numeric", "a": "cents", "b": "dollars", "scale_a": 0.01, "abs_tol": 0.005},
            "updated_at": {"compare": "timestamp", "lag": "5m", "timezone_a": "Europe/Berlin"},
            "seen_at": {"compare": "timestamp"},
            "active": "exact",
            "note": {"compare": "string", "nulls": {"both_null": "differ"}},
            "region": {"compare": "exact", "nulls": {"allow_null_in": ["b"]}},
            "signup": "exact",
            "odd": {"compare": "exact", "a": 'Odd "Col"', "b": "odd col"},
        },
        "severity": {"rules": [{"kind": "only_in_a", "tier": "critical"}, {"field": "amount", "min_difference": 100, "tier": "critical"}]},
    }
    spec.update(changes)
    return parse_spec(spec)


ODD_TEXT = ["plain", "it's", 'say "hi"', "back\\slash", "two\nlines", "caf\u00e9", "nb\u00a0sp", "", "(1,2)", "NULL"]


def _dataset(n: int = 600, seed: int = 7) -> tuple[list[dict], list[dict], set]:
    """Rows of A and B (A's column names; B's are renamed when inserted) and the keys whose
    records differ in any way (or need DuckDB's judgement), for the wire-count checks."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    a_rows, b_rows, touched = [], [], set()
    for i in range(n):
        instant = start + timedelta(seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(1_000_000))
        row = {
            "id": f"k{i:04d}", "email": f"user{i}@example.com", "plan": rng.choice(["free", "pro", "team"]),
            "amount": Decimal(rng.randrange(100000)) / 100, "ratio": rng.random() * 1000, "cents": rng.randrange(10**7) if i % 10 == 0 else rng.randrange(10**5) * 100,
            "updated_at": instant.astimezone(BERLIN).replace(tzinfo=None), "seen_at": instant,
            "active": rng.random() < 0.5, "note": rng.choice(ODD_TEXT), "region": rng.choice(["EU", "US", "APAC"]),
            "signup": date(2020, 1, 1) + timedelta(days=rng.randrange(1500)), 'Odd "Col"': rng.choice(ODD_TEXT),
            "_instant": instant,
        }
        if rng.random() < 0.05:
            row["amount"] = None  # null on both sides: agrees
        a_rows.append(row)
    by_key = {r["id"]: r for r in a_rows}
    b_of = {}
    for r in a_rows:
        b = dict(r)
        b["updated_at"] = r["_instant"].astimezone(UTC).replace(tzinfo=None)  # B writes naive UTC
        b_of[r["id"]] = b

    changes = [
        ("email", lambda r: r["email"].upper()),                        # within (normalised away)
        ("email", lambda r: " " + r["email"] + "\t"),                   # within
        ("email", lambda r: "other@example.com"),
        ("plan", lambda r: "PRO" if r["plan"] == "pro" else "P2"),      # alias of pro: within for pro
        ("plan", lambda r: "enterprise"),
        ("amount", lambda r: None if r["amount"] is None else r["amount"] + Decimal("0.01")),  # within abs_tol
        ("amount", lambda r: Decimal("5.00") if r["amount"] is None else r["amount"] + Decimal("250.00")),
        ("amount", lambda r: None),
        ("ratio", lambda r: r["ratio"] * (1 + 1e-5)),                  # within rel_tol
        ("ratio", lambda r: r["ratio"] * 1.5),
        ("cents", lambda r: r["cents"] + 1),                            # dollars off by a cent: beyond 0.005
        ("updated_at", lambda r: r["updated_at"] + timedelta(minutes=2)),  # within the lag
        ("updated_at", lambda r: r["updated_at"] + timedelta(hours=1)),
        ("seen_at", lambda r: r["seen_at"] + timedelta(seconds=1)),
        ("active", lambda r: not r["active"]),
        ("note", lambda r: None),
        ("region", lambda r: None),                                     # allowed in B
        ("signup", lambda r: r["signup"] + timedelta(days=1)),
        ('Odd "Col"', lambda r: r['Odd "Col"'] + "'"),
        ('Odd "Col"', lambda r: None if r['Odd "Col"'] else ""),
    ]
    keys = list(by_key)
    rng.shuffle(keys)
    cursor = 0
    for column, change in changes:
        for key in keys[cursor:cursor + 6]:
            b_of[key][column] = change(b_of[key])  # B's dollars are derived from cents below
            touched.add(key)
        cursor += 6
    for key in keys[cursor:cursor + 4]:  # null in A only
        by_key[key]["region"] = None
        touched.add(key)
    cursor += 4
    for key in keys[cursor:cursor + 4]:  # identical records but for a null note on both sides (both_null: differ)
        by_key[key]["note"] = b_of[key]["note"] = None
        touched.add(key)
    cursor += 4
    # Naive Berlin times in the autumn's repeated hour and the spring's missing hour.
    for key, naive in zip(keys[cursor:cursor + 4], ["2024-10-27 02:30:00", "2024-10-27 02:59:59", "2024-03-31 02:30:00", "2024-03-30 12:00:00"]):
        by_key[key]["updated_at"] = datetime.fromisoformat(naive)
        b_of[key]["updated_at"] = datetime.fromisoformat(naive) - timedelta(hours=1)
        touched.add(key)
    cursor += 4
    only_in_a = keys[cursor:cursor + 10]
    cursor += 10
    touched.update(only_in_a)
    dup_in_a = keys[cursor]  # A holds it twice, B once: both sides' records are excluded
    cursor += 1
    touched.add(dup_in_a)

    for r in a_rows:
        r.pop("_instant")
    b_rows = [b_of[k] for k in by_key if k not in only_in_a]
    for b in b_rows:
        b.pop("_instant")
        b["dollars"] = None if b["cents"] is None else Decimal(b["cents"]) / 100
        # cents * 0.01 is not always the double nearest the dollars (3032085 * 0.01 is
        # 30320.850000000002): such records differ as the rule's operands, within tolerance.
        if by_key[b["id"]]["cents"] * 0.01 != float(b["dollars"]):
            touched.add(b["id"])
    for j in range(8):  # only in B
        extra = dict(b_rows[j], id=f"new{j}", email=f"new{j}@example.com")
        b_rows.append(extra)
        touched.add(extra["id"])
    a_rows.append(dict(by_key[dup_in_a], email="second@example.com"))
    # Invalid keys: NULL and blank (whitespace, tab, NBSP) on each side.
    template = a_rows[0]
    a_rows += [dict(template, id=None), dict(template, id=None, plan="team"), dict(template, id="  "), dict(template, id="\u00a0")]
    b_rows += [dict(b_rows[0], id=None), dict(b_rows[0], id="\t")]
    # Duplicates: in A only, in B only, and on both sides with identical records.
    a_rows += [dict(template, id="dupA"), dict(template, id="dupA", amount=Decimal("1.00"))]
    b_rows += [dict(b_rows[0], id="dupB"), dict(b_rows[0], id="dupB"), dict(b_rows[0], id="dupB")]
    a_rows += [dict(template, id="dupAB"), dict(template, id="dupAB")]
    b_rows += [dict(b_rows[0], id="dupAB"), dict(b_rows[0], id="dupAB")]
    touched.update({None, "  ", "\u00a0", "\t", "dupA", "dupB", "dupAB"})
    return a_rows, b_rows, touched


def _load(url_a: str, url_b: str, a_rows: list[dict], b_rows: list[dict]) -> None:
    rename = {"id": "account_id", "email": "email_address", 'Odd "Col"': "odd col"}
    for url, side in ((url_a, "a"), (url_b, "b")):
        engine = sa.create_engine(url)
        metadata = sa.MetaData()
        a, b = _tables(metadata)
        with engine.begin() as conn:
            if side == "b":
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA_B}"))
            table = a if side == "a" else b
            table.create(conn)
            if side == "a":
                conn.execute(table.insert(), a_rows)
            else:
                conn.execute(table.insert(), [{rename.get(k, k): v for k, v in r.items() if k != "cents"} for r in b_rows])
        engine.dispose()


def _rows(result) -> list[tuple]:
    return sorted(tuple(r[c] for c in COLUMNS) for r in result.discrepancies.to_pylist())


def _check_same_as_local(local, pushed) -> None:
    assert pushed.pushdown is not None and local.pushdown is None and local.pairing.strategy == "local"
    assert _rows(pushed) == _rows(local)
    assert pushed.match == local.match
    assert pushed.fields == local.fields


def _check_the_data_set_exercises_everything(local) -> None:
    kinds = local.counts_by_kind
    for kind in ("only_in_a", "only_in_b", "duplicate_key_a", "duplicate_key_b", "invalid_key_a", "invalid_key_b", "field_mismatch"):
        assert kinds.get(kind), kind
    reasons = {(r["field"], r["reason"]) for r in local.discrepancies.to_pylist()}
    for reason in ("value_differs", "null_in_a", "null_in_b", "both_null"):
        assert any(r == reason for _, r in reasons), reason
    fields_with_mismatches = {f for f, _ in reasons if f}
    assert fields_with_mismatches == {"email", "plan", "amount", "ratio", "total", "updated_at", "seen_at", "active", "note", "region", "signup", "odd"}
    for name in ("email", "amount", "ratio", "updated_at"):
        assert local.fields[name].within_tolerance > 0, name
    assert local.fields["plan"].mapped > 0  # aliases agree through the value mapping: not drift
    assert local.match.duplicate_keys_a == 3 and local.match.duplicate_keys_b == 2


# --------------------------------------------------------------------------- the two paths


@pytest.mark.postgres
def test_same_database_matches_the_local_path_and_fetches_only_candidates(pg_url, caplog):
    a_rows, b_rows, _ = _dataset()
    _load(pg_url, pg_url, a_rows, b_rows)
    local = pipeline.run(_spec(pg_url, pg_url, pushdown_on=False))
    _check_the_data_set_exercises_everything(local)
    with caplog.at_level(logging.INFO, logger="recon_pipelines"):
        pushed = pipeline.run(_spec(pg_url, pg_url))
    _check_same_as_local(local, pushed)
    p = pushed.pushdown
    assert p.mode == "same_database"
    # What crossed the wire: one record of each side per candidate pair, plus the one-sided rows ...
    m = local.match
    assert p.rows_fetched_a == m.candidate_pairs + m.only_in_a
    assert p.rows_fetched_b == m.candidate_pairs + m.only_in_b
    assert m.candidate_pairs < m.matched / 3 and p.rows_fetched_a < len(a_rows) / 3
    # ... and aggregates: one row per anomalous key group (not per record), four counts.
    groups = sum(1 for r in local.discrepancies.to_pylist() if r["kind"].startswith(("duplicate", "invalid")))
    assert p.result_rows == m.candidate_pairs + m.only_in_a + m.only_in_b + groups + 4
    assert pushed.pairing.strategy == "postgres_join" and "pairing with postgres_join" in caplog.text
    assert pushed.pairing.rows_moved == {"a": p.rows_fetched_a, "b": p.rows_fetched_b}


@pytest.mark.postgres
def test_two_databases_match_the_local_path_and_fetch_only_differing_buckets(pg_url, pg_url_b, monkeypatch):
    monkeypatch.setattr(pushdown, "MIN_BUCKETS", 1 << 16)  # ~100 buckets per row: a bucket mate is rare
    a_rows, b_rows, touched = _dataset()
    _load(pg_url, pg_url_b, a_rows, b_rows)
    local = pipeline.run(_spec(pg_url, pg_url_b, pushdown_on=False))
    _check_the_data_set_exercises_everything(local)
    pushed = pipeline.run(_spec(pg_url, pg_url_b))
    _check_same_as_local(local, pushed)
    p = pushed.pushdown
    assert p.mode == "buckets" and p.buckets == bucket_count(len(a_rows)) and not p.fetched_whole
    # Every row is either fetched (its bucket differs) or settled by an identical bucket ...
    assert p.rows_fetched_a + p.rows_settled_by_buckets == len(a_rows)
    assert p.rows_fetched_b + p.rows_settled_by_buckets == len(b_rows)
    # ... the differing buckets hold every record behind a discrepancy, at most the records
    # the data set touched (some touched ones turn out identical) and, rarely, a bucket mate.
    reported = {r["key"] for r in local.discrepancies.to_pylist()}
    for rows, fetched in ((a_rows, p.rows_fetched_a), (b_rows, p.rows_fetched_b)):
        keys = ["<null>" if r["id"] is None else r["id"] for r in rows]
        assert sum(k in reported for k in keys) <= fetched <= sum(r["id"] in touched for r in rows) + 5
    assert p.rows_fetched_a < len(a_rows) / 3
    assert p.summary_rows_a <= len(a_rows) + 5  # one per non-empty bucket, plus duplicate markers


@pytest.mark.postgres
def test_identical_tables_in_two_databases_fetch_nothing(pg_url, pg_url_b):
    a_rows, _, _ = _dataset(n=300)
    clean = [r for r in a_rows if r["id"] and r["id"].strip(" \u00a0") and not r["id"].startswith("dup")]
    clean = list({r["id"]: r for r in clean}.values())
    for r in clean:
        r["note"] = r["note"] or "x"
    b_rows = [dict(r, updated_at=r["updated_at"]) for r in clean]
    spec = _spec(pg_url, pg_url_b, fields={"email": {"compare": "string", "b": "email_address"}, "note": "exact"}, severity={})
    _load(pg_url, pg_url_b, clean, b_rows)
    pushed = pipeline.run(spec)
    p = pushed.pushdown
    assert pushed.discrepancies.num_rows == 0
    assert p.rows_fetched == 0 and p.differing_buckets == 0
    assert p.rows_settled_by_buckets == len(clean) == pushed.match.identical == pushed.match.rows_a


# --------------------------------------------------------------------------- integer and composite keys


def _keyed_tables(url: str, rows: list[tuple], primary_key: list[str]) -> None:
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    for name in ("orders_a", "orders_b"):
        sa.Table(name, metadata, sa.Column("region", sa.Integer), sa.Column("no", sa.BigInteger),
                 sa.Column("total", sa.Numeric(10, 2)), sa.Column("placed", sa.DateTime(timezone=True)),
                 sa.PrimaryKeyConstraint(*primary_key))
    with engine.begin() as conn:
        metadata.create_all(conn)
        for name, side_rows in zip(("orders_a", "orders_b"), rows):
            conn.execute(metadata.tables[name].insert(), [dict(zip(("region", "no", "total", "placed"), r)) for r in side_rows])
    engine.dispose()


def _order_rows() -> tuple[list[tuple], list[tuple]]:
    t0 = datetime(2025, 6, 1, tzinfo=UTC)
    a = [(r, n + 1000 * (r - 1), Decimal(n) / 4, t0 + timedelta(minutes=n)) for r in (1, 2) for n in range(200)]
    b = [row for row in a if row[1] % 50 != 7]
    b = [(r, n, t + Decimal("0.50") if n % 40 == 3 else t, p + timedelta(seconds=30) if n % 60 == 5 else p) for r, n, t, p in b]
    b.append((3, 1, Decimal("1.00"), t0))  # only in B by (region, no); "no" 1 twice in B
    return a, b


def _order_spec(url_a: str, url_b: str, keys: list[str], pushdown_on: bool = True, table_b: str = "orders_b"):
    return parse_spec({
        "name": "orders", "pushdown": pushdown_on,
        "source_a": {"type": "sql", "url": url_a, "table": "orders_a"},
        "source_b": {"type": "sql", "url": url_b, "table": table_b},
        "key": keys,
        "fields": {"total": {"compare": "numeric", "abs_tol": 0.01}, "placed": {"compare": "timestamp", "lag": "10s"}},
    })


@pytest.mark.postgres
@pytest.mark.parametrize("keys", [["region", "no"], ["no"]], ids=["composite-primary-key", "integer-key-with-duplicates"])
def test_integer_and_composite_keys(pg_url, pg_url_b, keys):
    a, b = _order_rows()
    # Both tables have the primary key (region, no): it rules out duplicates of the composite
    # key, not of "no" alone, which the database then groups.
    _keyed_tables(pg_url, (a, b), ["region", "no"])
    _keyed_tables(pg_url_b, (a, b), ["region", "no"])
    local = pipeline.run(_order_spec(pg_url, pg_url, keys, pushdown_on=False))
    assert local.discrepancies.num_rows > 0
    for url_b, mode in ((pg_url, "same_database"), (pg_url_b, "buckets")):
        pushed = pipeline.run(_order_spec(pg_url, url_b, keys))
        assert pushed.pushdown.mode == mode
        _check_same_as_local(local, pushed)
    if keys == ["no"]:
        assert local.match.duplicate_keys_b == 1 and local.match.duplicate_keys_a == 0


@pytest.mark.postgres
def test_when_most_buckets_differ_both_sides_are_read_whole(pg_url, pg_url_b, monkeypatch):
    monkeypatch.setattr(pushdown, "FETCH_ALL_SHARE", 0.0)
    a, b = _order_rows()
    _keyed_tables(pg_url, (a, b), ["region", "no"])
    _keyed_tables(pg_url_b, (a, b), ["region", "no"])
    keys = ["region", "no"]
    local = pipeline.run(_order_spec(pg_url, pg_url, keys, pushdown_on=False))
    pushed = pipeline.run(_order_spec(pg_url, pg_url_b, keys))
    _check_same_as_local(local, pushed)
    assert pushed.pushdown.fetched_whole and pushed.pushdown.rows_settled_by_buckets == 0
    assert (pushed.pushdown.rows_fetched_a, pushed.pushdown.rows_fetched_b) == (len(a), len(b))


# --------------------------------------------------------------------------- falling back, quoting, secrets


@pytest.mark.postgres
def test_falls_back_to_the_local_path_with_the_reason_logged(pg_url, caplog):
    a, b = _order_rows()
    _keyed_tables(pg_url, (a, b), ["region", "no"])
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:  # a field typed differently on each side is compared as text locally
        conn.execute(sa.text("ALTER TABLE orders_b ALTER COLUMN total TYPE text"))
    engine.dispose()
    keys = ["region", "no"]
    with caplog.at_level(logging.INFO, logger="recon_pipelines.engine.strategies"):
        result = pipeline.run(_order_spec(pg_url, pg_url, keys))
    assert result.pushdown is None and result.pairing.strategy == "local"
    assert "postgres_join refused: field 'total': a numeric rule on NUMERIC(10, 2)/TEXT parses values locally" in caplog.text
    assert result.discrepancies.num_rows > 0

    query = parse_spec({
        "name": "orders", "source_a": {"type": "sql", "url": pg_url, "query": "SELECT * FROM orders_a"},
        "source_b": {"type": "sql", "url": pg_url, "table": "orders_a"}, "key": keys, "fields": {"total": "exact"},
    })
    assert strategies.choose(query).name == "local"
    off = _order_spec(pg_url, pg_url, keys, pushdown_on=False)
    assert pipeline.run(off).pushdown is None


@pytest.mark.postgres
def test_passwords_never_reach_logs_or_errors(pg_url, pg_url_b, caplog):
    a, b = _order_rows()
    _keyed_tables(pg_url, (a, b), ["region", "no"])
    _keyed_tables(pg_url_b, (a, b), ["region", "no"])
    secret = "s3cr3t-pushdown"  # the test server trusts local connections and ignores it
    url_a = sa.make_url(pg_url).set(password=secret).render_as_string(hide_password=False)
    url_b = sa.make_url(pg_url_b).set(password=secret).render_as_string(hide_password=False)
    with caplog.at_level(logging.DEBUG, logger="recon_pipelines"):
        result = pipeline.run(_order_spec(url_a, url_b, ["region", "no"]))
        assert result.pushdown.mode == "buckets"
        with pytest.raises(SourceError) as info:
            pipeline.run(_order_spec(url_a, url_b, ["region", "no"], table_b="missing"))
    assert secret not in caplog.text and secret not in str(info.value)
    assert "***" in str(info.value)


def test_bucket_count_follows_the_table_size():
    assert bucket_count(0) == bucket_count(1000) == bucket_count(16 * 1024) == 1 << 10
    assert bucket_count(100_000) == 1 << 13
    assert bucket_count(1_000_000) == 1 << 16
    assert bucket_count(4_000_000) == 1 << 18
    assert bucket_count(10_000_000) == 1 << 20 == bucket_count(10**9)


# --------------------------------------------------------------------------- DuckDB files


def test_duckdb_files_are_compared_in_place(tmp_path):
    a, b = _order_rows()
    db_a, db_b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for path, rows, name in ((db_a, a, "orders_a"), (db_b, b, "orders_b"), (db_a, b, "orders_b")):
        with duckdb.connect(str(path)) as con:
            con.execute(f"CREATE TABLE {name} (region INTEGER, no BIGINT, total DECIMAL(10,2), placed TIMESTAMPTZ)")
            con.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?)", rows)
            con.execute(f"COPY {name} TO '{tmp_path / (path.stem + '_' + name)}.parquet' (FORMAT parquet)")
    keys = ["region", "no"]
    files = parse_spec({
        "name": "orders", "source_a": {"type": "file", "path": str(tmp_path / "a_orders_a.parquet")},
        "source_b": {"type": "file", "path": str(tmp_path / "b_orders_b.parquet")}, "key": keys,
        "fields": {"total": {"compare": "numeric", "abs_tol": 0.01}, "placed": {"compare": "timestamp", "lag": "10s"}},
    })
    local = pipeline.run(files)
    for url_b in (f"duckdb:///{db_b}", f"duckdb:///{db_a}"):
        pushed = pipeline.run(_order_spec(f"duckdb:///{db_a}", url_b, keys))
        assert pushed.pushdown.mode == "duckdb" and pushed.pushdown.rows_fetched == 0
        assert _rows(pushed) == _rows(local)
        assert pushed.match == local.match
