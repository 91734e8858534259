"""Exact numbers, non-finite values and presence-only specs: the cases that once agreed
although money differed (or crashed), each as a plain test.

Every value case goes through ``pair_outcome`` of test_engine_rules: the field alone (the hash
fast path decides whether the pair is evaluated) and next to a field that always differs, and
both must agree.
"""

from __future__ import annotations

import importlib
import json
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from recon_pipelines.cli import main as cli
from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.dagster_defs.runs import recheck_config
from recon_pipelines import pipeline
from recon_pipelines.spec import SpecError, load_spec, parse_spec
from recon_pipelines_tests.conftest import throwaway_database
from recon_pipelines_tests.test_engine_rules import make_spec, pair_outcome, reason_of, run

NUMERIC = {"compare": "numeric"}
CENT = {"compare": "numeric", "abs_tol": 0.01}
D18_2 = pa.decimal128(18, 2)
TWO_53 = 2**53


# --------------------------------------------------------------------------- magnitude does not hide money


@pytest.mark.parametrize("a, b, type_", [
    (10_000_000.00, 10_000_000.02, pa.float64()),
    ("10000000.00", "10000000.02", pa.string()),
    (Decimal("10000000.00"), Decimal("10000000.02"), D18_2),
])
def test_two_cents_at_ten_million_exceed_a_cent_of_tolerance(a, b, type_):
    row = pair_outcome(CENT, a, b, type_, type_)
    assert row["reason"] == "value_differs"
    assert row["difference"] == pytest.approx(0.02, abs=1e-8)


@pytest.mark.parametrize("a, b, type_", [
    (1_000_000_000.00, 1_000_000_000.50, pa.float64()),
    ("1000000000.00", "1000000000.50", pa.string()),
    (Decimal("1000000000.00"), Decimal("1000000000.50"), D18_2),
])
def test_fifty_cents_at_a_billion_differ_without_tolerance(a, b, type_):
    assert reason_of(NUMERIC, a, b, type_, type_) == "value_differs"


@pytest.mark.parametrize("type_a, type_b", [(pa.int64(), pa.int64()), (pa.string(), pa.string()), (pa.int64(), pa.string())])
def test_integers_beyond_two_to_the_53_are_compared_as_integers(type_a, type_b):
    a = TWO_53 if type_a == pa.int64() else str(TWO_53)
    b = TWO_53 + 1 if type_b == pa.int64() else str(TWO_53 + 1)
    row = pair_outcome(NUMERIC, a, b, type_a, type_b)
    assert row["reason"] == "value_differs"
    assert "differs by 1 " in row["detail"]
    assert reason_of(NUMERIC, a, a if type_a == type_b else str(TWO_53), type_a, type_b) is None


@pytest.mark.parametrize("a, b, type_", [
    ("10000000000000.00", "10000000000000.01", pa.string()),
    (Decimal("10000000000000.00"), Decimal("10000000000000.01"), D18_2),
])
def test_one_cent_at_ten_to_the_13(a, b, type_):
    row = pair_outcome(NUMERIC, a, b, type_, type_)
    assert row["reason"] == "value_differs"
    assert row["detail"] == "differs by 0.01 (tolerance 0)"
    # Exactly on the tolerance: agrees (no rounding either way).
    assert reason_of(CENT, a, b, type_, type_) is None
    assert reason_of({"compare": "numeric", "abs_tol": 0.009}, a, b, type_, type_) == "value_differs"


def test_decimal_text_beyond_fifteen_digits_is_not_rounded():
    assert reason_of(NUMERIC, "0.1234567890123456789", "0.1234567890123456788") == "value_differs"
    assert reason_of(NUMERIC, "12345678901234567.891", "12345678901234567.8910") is None
    assert reason_of(NUMERIC, Decimal("1234567890123456.78"), "1234567890123456.79", pa.decimal128(38, 2), pa.string()) == "value_differs"


def test_rel_tol_and_scale_are_applied_exactly():
    # 425001 cents are 4250.01 exactly (0.01 is the decimal written, not a double).
    assert reason_of({"compare": "numeric", "scale_a": 0.01}, 425001, "4250.01", pa.int64(), pa.string()) is None
    assert reason_of({"compare": "numeric", "scale_a": 0.01}, 425001, "4250.0100000001", pa.int64(), pa.string()) == "value_differs"
    # 900719925474099301 cents are 2^53 + 0.01 dollars, not 2^53.
    assert reason_of({"compare": "numeric", "scale_a": 0.01}, 900719925474099301, str(TWO_53), pa.int64(), pa.string()) == "value_differs"
    # rel_tol 0.01 of 101 is exactly 1.01 >= 1: agrees; of 100.99 (1.0099) < 1.01: differs.
    assert reason_of({"compare": "numeric", "rel_tol": 0.01}, "100", "101") is None
    assert reason_of({"compare": "numeric", "rel_tol": 0.01}, "99.98", "100.99") == "value_differs"


def test_float_noise_is_absorbed_but_only_at_the_scale_of_the_double():
    # 10.71 - 10.70 is 0.010000000000001563 in doubles: within a cent.
    assert reason_of(CENT, 10.70, 10.71) is None
    # A cent and a tenth of a micro-cent: beyond the ulps of 10.7.
    assert reason_of(CENT, 10.70, 10.7100001) == "value_differs"
    # A 32-bit float carries only its own precision: 0.1f is 0.10000000149...
    assert reason_of(NUMERIC, 0.1, "0.1", pa.float32(), pa.string()) is None
    assert reason_of(NUMERIC, 0.1, "0.1000002", pa.float32(), pa.string()) == "value_differs"


# --------------------------------------------------------------------------- non-finite values


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("a, b, type_a, type_b, expected, detail", [
    (NAN, 1.0, pa.float64(), pa.float64(), "value_differs", "A is NaN, B is a finite number"),
    (1.0, NAN, pa.float64(), pa.float64(), "value_differs", "A is a finite number, B is NaN"),
    (NAN, NAN, pa.float64(), pa.float64(), None, None),
    (INF, INF, pa.float64(), pa.float64(), None, None),
    (INF, -INF, pa.float64(), pa.float64(), "value_differs", "A is +inf, B is -inf"),
    (INF, 1e308, pa.float64(), pa.float64(), "value_differs", "A is +inf, B is a finite number"),
    (-INF, 5, pa.float64(), pa.int64(), "value_differs", "A is -inf, B is a finite number"),
    ("NaN", NAN, pa.string(), pa.float64(), None, None),
    ("nan", "NaN", pa.string(), pa.string(), None, None),
    ("inf", "Infinity", pa.string(), pa.string(), None, None),
    ("-inf", INF, pa.string(), pa.float64(), "value_differs", "A is -inf, B is +inf"),
    ("NaN", "42", pa.string(), pa.string(), "value_differs", "A is NaN, B is a finite number"),
    ("1e400", INF, pa.string(), pa.float64(), "value_differs", "A is a finite number, B is +inf"),
    ("1e400", 1.0, pa.string(), pa.float64(), "value_differs", "A value is beyond the range of a double"),
    ("1e400", "1e400", pa.string(), pa.string(), None, None),
    (" 1E+400", "1e400", pa.string(), pa.string(), None, None),  # one digit and an exponent: exact
    ("1e400", "2e400", pa.string(), pa.string(), "value_differs", None),
    ("1e400", 1, pa.string(), pa.int64(), "value_differs", None),
    ("1" * 40, "1" * 39 + "2", pa.string(), pa.string(), "value_differs", None),
])
def test_non_finite_values_are_values_of_their_own(a, b, type_a, type_b, expected, detail):
    row = pair_outcome({"compare": "numeric", "abs_tol": 1e300}, a, b, type_a, type_b) if expected and "beyond" in (detail or "") \
        else pair_outcome({"compare": "numeric", "abs_tol": 1000}, a, b, type_a, type_b)
    assert (row and row["reason"]) == expected
    if detail:
        assert row["detail"] == detail
        assert row["difference"] is None


# DuckDB hashes a 128-bit value (HUGEINT, DECIMAL wider than 18 digits) as the XOR of its halves:
# -1 and 0, -0.02 and 0.01 hashed alike and their pairs were counted as identical, unevaluated.
WIDE_PAIRS = [("-0.02", "0.01"), ("0.00", "-0.01"), ("-1.00", "0.00"), ("184467440737095516.17", "0.01"),
              ("-92233720368547758.09", "92233720368547758.08"), ("92233720368547758.08", "92233720368547758.08"),
              ("-5.00", "-5.00")]


@pytest.mark.parametrize("rule", ["exact", {"compare": "numeric", "abs_tol": 0.0}])
@pytest.mark.parametrize("type_b", [pa.decimal128(38, 2), pa.int64(), pa.decimal128(18, 2)])
def test_wide_decimals_whose_hashes_collide_are_still_compared(rule, type_b):
    a = [Decimal(x) for x, _ in WIDE_PAIRS]
    b = [Decimal(y) for _, y in WIDE_PAIRS]
    if type_b == pa.int64():
        b = [int(v) if v == v.to_integral_value() and abs(v) < 2**63 else None for v in b]
    elif type_b == pa.decimal128(18, 2):
        b = [v if abs(v) < Decimal("1e16") else None for v in b]
    table_a = pa.table({"id": list(range(len(a))), "v": pa.array(a, pa.decimal128(38, 2))})
    table_b = pa.table({"id": list(range(len(b))), "v": pa.array(b, type_b)})
    found = {int(k) for k in run(make_spec(fields={"v": rule}), table_a, table_b).discrepancies.column("key").to_pylist()}
    expected = {i for i, (x, y) in enumerate(zip(a, b)) if y is None or Decimal(x) != Decimal(y)}  # Python's decimal
    assert found == expected


def test_values_beyond_38_digits_agree_only_with_the_same_text():
    forty = "1" * 40
    assert reason_of(NUMERIC, forty, forty) is None
    row = pair_outcome({"compare": "numeric", "abs_tol": 10}, forty, "1" * 39 + "2")
    assert row["reason"] == "value_differs" and "beyond the exact range" in row["detail"]
    row = pair_outcome({"compare": "numeric", "abs_tol": 1}, "1e30", "1e-20")
    assert row["reason"] == "value_differs" and "more than 38 digits" in row["detail"]


# --------------------------------------------------------------------------- exact across number types


@pytest.mark.parametrize("a, b, type_a, type_b, expected", [
    (42, 42.0, pa.int64(), pa.float64(), None),
    (0, -0.0, pa.int64(), pa.float64(), None),
    (0.0, -0.0, pa.float64(), pa.float64(), None),
    (Decimal("42.50"), 42.5, pa.decimal128(10, 2), pa.float64(), None),
    (Decimal("42.50"), 42, pa.decimal128(10, 2), pa.int64(), "value_differs"),
    (Decimal("42.00"), 42, pa.decimal128(10, 2), pa.int32(), None),
    (Decimal("42.500"), Decimal("42.5"), pa.decimal128(10, 3), pa.decimal128(10, 1), None),
    (Decimal("0.1"), 0.1, pa.decimal128(10, 1), pa.float64(), None),
    (0.1, 0.1, pa.float32(), pa.float64(), None),
    (TWO_53 + 1, TWO_53 + 1, pa.int64(), pa.decimal128(20, 0), None),
    (TWO_53 + 1, TWO_53, pa.int64(), pa.decimal128(20, 0), "value_differs"),
    (NAN, NAN, pa.float64(), pa.float32(), None),
    (42, 43.0, pa.int64(), pa.float64(), "value_differs"),
    (42, "42", pa.int64(), pa.string(), None),           # text as text
    (42.0, "42", pa.float64(), pa.string(), "value_differs"),
])
def test_exact_compares_numbers_as_numbers_and_text_as_text(a, b, type_a, type_b, expected):
    assert reason_of("exact", a, b, type_a, type_b) == expected


# --------------------------------------------------------------------------- non-finite spec values


@pytest.mark.parametrize("field, value", [
    ("abs_tol", ".inf"), ("abs_tol", ".nan"), ("rel_tol", "1e400"), ("rel_tol", "1.0e+400"),
    ("scale_a", ".inf"), ("scale_b", ".nan"),
])
def test_non_finite_numeric_options_are_refused_at_load(tmp_path, field, value):
    text = f"""name: t
source_a: {{type: file, path: a.csv}}
source_b: {{type: file, path: b.csv}}
key: id
fields: {{amount: {{compare: numeric, {field}: {value}}}}}
"""
    (tmp_path / "t.yaml").write_text(text)
    with pytest.raises(SpecError, match=field):
        load_spec(tmp_path / "t.yaml")


@pytest.mark.parametrize("path, raw", [
    ("lag", {"fields": {"ts": {"compare": "timestamp", "lag": float("inf")}}}),
    ("min_difference", {"fields": {"amount": NUMERIC}, "severity": {"rules": [{"tier": "info", "min_difference": float("inf")}]}}),
    ("max_difference", {"fields": {"amount": NUMERIC}, "severity": {"rules": [{"tier": "info", "max_difference": float("nan")}]}}),
    ("min_relative_difference", {"severity": {"rules": [{"tier": "info", "min_relative_difference": "1e400"}]}}),
    ("share_above", {"severity": {"run": [{"tier": "info", "share_above": float("nan")}]}}),
    ("propagation_lag", {"propagation_lag": float("inf")}),
    ("values", {"fields": {"plan": {"values": {"x": [float("nan")]}}}}),
])
def test_every_float_in_the_spec_refuses_non_finite_values(path, raw):
    with pytest.raises(SpecError, match=path):
        make_spec(**raw)


# --------------------------------------------------------------------------- presence-only specs


PRESENCE = {"name": "presence", "key": "id"}


def _presence_files(folder):
    (folder / "a.csv").write_text("id,amount\n1,10\n2,20\n3,30\n")
    (folder / "b.csv").write_text("id,amount\n2,99\n3,30\n4,40\n")
    spec = {**PRESENCE, "source_a": {"type": "file", "path": "a.csv"}, "source_b": {"type": "file", "path": "b.csv"}}
    (folder / "presence.yaml").write_text(yaml.safe_dump(spec))
    return folder / "presence.yaml"


def test_presence_only_spec_in_the_engine():
    result = run(make_spec(), {"id": [1, 2, 3], "x": [1, 2, 3]}, {"id": [2, 3, 4], "x": [0, 0, 0]})
    assert {(r["kind"], r["key"]) for r in result.discrepancies.to_pylist()} == {("only_in_a", "1"), ("only_in_b", "4")}
    assert (result.match.matched, result.match.identical) == (2, 2)


def test_presence_only_spec_from_the_cli(tmp_path):
    path = _presence_files(tmp_path)
    out = CliRunner().invoke(cli, ["run", str(path), "--format", "json"])
    assert out.exit_code == 1, out.output
    found = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]  # one object per line
    assert {(r["kind"], r["key"]) for r in found} == {("only_in_a", "1"), ("only_in_b", "4")}


def test_presence_only_spec_as_assets_and_recheck(tmp_path):
    spec = load_spec(_presence_files(tmp_path))
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    defs = build_definitions(specs=[spec], recon=recon)
    with dg.instance_for_test() as instance:
        assets = defs.resolve_job_def("reconcile_presence").execute_in_process(instance=instance)
        recheck = defs.resolve_job_def("recheck_presence").execute_in_process(instance=instance, run_config=recheck_config(spec, full=True))
    assert assets.success and recheck.success
    found = {(r["kind"], r["key"]) for r in recon.tracker().discrepancies("presence")}
    assert found == {("only_in_a", "1"), ("only_in_b", "4")}


@pytest.fixture
def pg_url_b(pg_admin_url: str):
    with throwaway_database(pg_admin_url) as url:
        yield url


@pytest.mark.postgres
def test_presence_only_spec_pushed_down(pg_url, pg_url_b):
    for url in (pg_url, pg_url_b):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            for name, ids in (("pa", [1, 2, 3]), ("pb", [2, 3, 4])):
                conn.execute(sa.text(f"CREATE TABLE {name} (id integer PRIMARY KEY, amount numeric)"))
                conn.execute(sa.text(f"INSERT INTO {name} SELECT i, i FROM unnest(CAST(:ids AS integer[])) AS i"), {"ids": ids})
        engine.dispose()
    for url_b, mode in ((pg_url, "same_database"), (pg_url_b, "buckets")):
        spec = parse_spec({**PRESENCE, "source_a": {"type": "sql", "url": pg_url, "table": "pa"},
                           "source_b": {"type": "sql", "url": url_b, "table": "pb"}})
        result = pipeline.run(spec)
        assert getattr(result, "pushdown").mode == mode
        assert {(r["kind"], r["key"]) for r in result.discrepancies.to_pylist()} == {("only_in_a", "1"), ("only_in_b", "4")}


# --------------------------------------------------------------------------- 128-bit values and the hash fast path
# DuckDB hashes a 128-bit integer as the XOR of its halves' hashes: 0 and -1 (one unit of the
# last place) hashed alike, so equal record hashes hid the difference.


@pytest.mark.parametrize("a, b, type_a, type_b", [
    (Decimal("0.00"), Decimal("-0.01"), pa.decimal128(38, 2), pa.decimal128(38, 2)),
    (0, -1, pa.decimal128(38, 0), pa.decimal128(38, 0)),
    (0, Decimal("-0.01"), pa.int64(), pa.decimal128(18, 2)),  # hashed as a common DECIMAL(38, 2)
])
def test_zero_and_minus_one_unit_differ_in_128_bit_decimals(a, b, type_a, type_b):
    assert reason_of(NUMERIC, a, b, type_a, type_b) == "value_differs"
    assert reason_of("exact", a, b, type_a, type_b) == "value_differs"


def test_keys_zero_and_minus_one_are_different_records_in_128_bit_keys():
    key = pa.decimal128(38, 0)
    side_a = pa.table({"id": pa.array([Decimal(0), Decimal(7)], key), "v": [5, 1]})
    side_b = pa.table({"id": pa.array([Decimal(-1), Decimal(7)], key), "v": [5, 1]})
    found = {(r["kind"], r["key"]) for r in run(make_spec(fields={"v": "exact"}), side_a, side_b).discrepancies.to_pylist()}
    assert found == {("only_in_a", "0"), ("only_in_b", "-1")}


# --------------------------------------------------------------------------- the pairing's paths give one answer


@pytest.mark.parametrize("sparse_share, join_pass_rows", [
    (0.25, 1 << 25),  # narrowed to the differing buckets, one join (sparse drift)
    (-1.0, 1 << 25),  # never narrowed, one join (dense drift)
    (-1.0, 512),      # never narrowed, the join in 16 passes (sides above JOIN_PASS_ROWS)
    (0.25, 1),        # narrowed, then the join in passes (8 rows left: 8 passes)
])
def test_every_pairing_path_finds_the_planted_differences(monkeypatch, sparse_share, join_pass_rows):
    compare_module = importlib.import_module("recon_pipelines.engine.compare")  # the package exports compare()
    monkeypatch.setattr(compare_module, "SPARSE_SHARE", sparse_share)
    monkeypatch.setattr(compare_module, "JOIN_PASS_ROWS", join_pass_rows)
    n = 5000
    ids = list(range(1, n + 1))
    amount = [i / 100 for i in ids]
    side_a = pa.table({"id": ids, "amount": amount, "plan": ["basic"] * n})
    # B: drops ids 10 and 20, adds 9001 and 9002, changes amount of 30 and plan of 40;
    # 50's amount moves within the tolerance (no discrepancy).
    keep = [i for i in ids if i not in (10, 20)]
    b_amount = {i: amount[i - 1] for i in keep} | {30: 99.0, 50: amount[49] + 0.004}
    b_plan = {i: "basic" for i in keep} | {40: "pro"}
    b_ids = keep + [9001, 9002]
    side_b = pa.table({"id": b_ids, "amount": [b_amount.get(i, 1.0) for i in b_ids],
                       "plan": [b_plan.get(i, "basic") for i in b_ids]})
    result = run(make_spec(fields={"amount": CENT, "plan": "exact"}), side_a, side_b)
    found = {(r["kind"], r["key"], r["field"]) for r in result.discrepancies.to_pylist()}
    assert found == {("only_in_a", "10", None), ("only_in_a", "20", None), ("only_in_b", "9001", None),
                     ("only_in_b", "9002", None), ("field_mismatch", "30", "amount"), ("field_mismatch", "40", "plan")}
    assert (result.match.matched, result.match.candidate_pairs) == (n - 2, 3)
