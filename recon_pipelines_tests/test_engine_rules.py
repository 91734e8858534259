"""The comparison engine, rule by rule, against hand-built pyarrow tables in DuckDB.

Every rule case runs twice: alone (a record whose only field is the one under test, so
the hash fast path decides whether it is a candidate) and next to a field that always
differs (so the pair is certainly evaluated). Both must give the same answer: the fast
path may only skip pairs that evaluation would accept.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest
import yaml

from recon_pipelines.engine import (
    ComparisonError,
    Side,
    compare,
    connect,
    discrepancy_id,
    render_key,
    side_columns,
)
from recon_pipelines.spec import SpecError, parse_spec

SRC = {"type": "file", "path": "/data/x.csv"}
NAME = "rules_test"
FORCE = "zz_force"  # a field that differs in every pair, to force evaluation


def make_spec(key="id", fields=None, **extra):
    raw = {"name": NAME, "source_a": SRC, "source_b": SRC, "key": key, "fields": fields or {}, **extra}
    return parse_spec(raw, source_file="test.yaml")


def as_table(data) -> pa.Table:
    return data if isinstance(data, pa.Table) else pa.table(data)


def run(spec, a, b, mapping=None, mapping_columns=None, labels=("A", "B")):
    con = connect()
    con.register("ta", as_table(a))
    con.register("tb", as_table(b))
    side_m = None
    if mapping is not None:
        con.register("tm", as_table(mapping))
        side_m = Side("tm", mapping_columns or {"a": "a_id", "b": "b_id"}, "mapping")
    side_a = Side("ta", side_columns(spec, "a"), labels[0])
    side_b = Side("tb", side_columns(spec, "b"), labels[1])
    return compare(spec, side_a, side_b, side_m, con=con)


def rows(result) -> list[dict]:
    return result.discrepancies.to_pylist()


def outcomes(result) -> set[tuple]:
    return {(r["kind"], r["key"], r["field"], r["reason"]) for r in rows(result)}


def field_rows(result, field) -> list[dict]:
    return [r for r in rows(result) if r["field"] == field]


def _array(value, arrow_type):
    if isinstance(value, pa.Array):
        return value
    return pa.array([value], type=arrow_type)


def pair_outcome(rule, a, b, type_a=None, type_b=None):
    """Compare one record holding ``a`` / ``b`` in field ``v`` under ``rule``, alone and
    next to a differing field; returns the discrepancy row of ``v`` (None when they agree)
    after checking that both runs agree on it."""
    if type_a is None and a is None:
        type_a = type_b or (pa.string() if b is None else pa.array([b]).type)
    if type_b is None and b is None:
        type_b = type_a or pa.array([a]).type
    found = []
    for force in (False, True):
        fields = {"v": rule}
        a_cols = {"id": [1], "v": _array(a, type_a)}
        b_cols = {"id": [1], "v": _array(b, type_b)}
        if force:
            fields[FORCE] = "exact"
            a_cols[FORCE], b_cols[FORCE] = ["left"], ["right"]
        result = run(make_spec(fields=fields), a_cols, b_cols)
        assert result.match.matched == 1
        mine = field_rows(result, "v")
        assert len(mine) <= 1
        found.append(mine[0] if mine else None)
        if force:
            assert [r["reason"] for r in field_rows(result, FORCE)] == ["value_differs"]
    alone, forced = found
    assert alone == forced, "the hash fast path and evaluation disagree"
    return forced


def reason_of(rule, a, b, type_a=None, type_b=None):
    row = pair_outcome(rule, a, b, type_a, type_b)
    return None if row is None else row["reason"]


T = dt.datetime
TS = pa.timestamp("us")
TSTZ = pa.timestamp("us", tz="UTC")
YAML_VALUES = yaml.safe_load("values: {active: [ACTIVE, 1, true], inactive: [INACTIVE, 0, false]}")["values"]

RULE_CASES = [
    # ---------------------------------------------------------------- exact
    ("exact-same-text", "exact", "abc", "abc", None, None, None),
    ("exact-other-text", "exact", "abc", "abd", None, None, "value_differs"),
    ("exact-no-trim", "exact", "abc ", "abc", None, None, "value_differs"),
    ("exact-no-case-folding", "exact", "ABC", "abc", None, None, "value_differs"),
    ("exact-same-int", "exact", 42, 42, None, None, None),
    ("exact-other-int", "exact", 42, 43, None, None, "value_differs"),
    ("exact-int-vs-text", "exact", 42, "42", None, None, None),
    ("exact-text-vs-int", "exact", "42", 42, None, None, None),
    ("exact-int-vs-other-text", "exact", 42, "43", None, None, "value_differs"),
    ("exact-values-upper", {"values": {"active": ["ACTIVE", "1"]}}, "ACTIVE", "active", None, None, None),
    ("exact-values-alias-alias", {"values": {"active": ["ACTIVE", "1"]}}, "1", "ACTIVE", None, None, None),
    ("exact-values-int-alias", {"values": YAML_VALUES}, 1, "ACTIVE", None, None, None),
    ("exact-values-yaml-bool", {"values": YAML_VALUES}, True, "active", None, None, None),
    ("exact-values-yaml-false", {"values": YAML_VALUES}, "INACTIVE", False, None, None, None),
    ("exact-values-int-zero", {"values": YAML_VALUES}, 0, "inactive", None, None, None),
    ("exact-values-other-canonical", {"values": YAML_VALUES}, "ACTIVE", "inactive", None, None, "value_differs"),
    ("exact-values-bool-vs-other", {"values": YAML_VALUES}, True, "INACTIVE", None, None, "value_differs"),
    ("exact-values-unknown", {"values": YAML_VALUES}, "pending", "active", None, None, "value_differs"),
    ("exact-no-values-aliases-differ", "exact", "ACTIVE", "active", None, None, "value_differs"),
    # ---------------------------------------------------------------- string normalisation
    ("trim-spaces-tabs-newlines", {"compare": "string", "normalize": ["trim"]}, " \t abc \n\r", "abc", None, None, None),
    ("trim-nbsp", {"compare": "string", "normalize": ["trim"]}, "\u00a0abc", "abc", None, None, None),
    ("trim-keeps-inner-space", {"compare": "string", "normalize": ["trim"]}, "a bc", "abc", None, None, "value_differs"),
    ("lower", {"compare": "string", "normalize": ["lower"]}, "AbC", "abc", None, None, None),
    ("lower-differs", {"compare": "string", "normalize": ["lower"]}, "AbC", "abd", None, None, "value_differs"),
    ("upper", {"compare": "string", "normalize": ["upper"]}, "abc", "ABC", None, None, None),
    ("nfc", {"compare": "string", "normalize": ["nfc"]}, "caf" + "e\u0301", "caf\u00e9", None, None, None),
    ("nfc-differs", {"compare": "string", "normalize": ["nfc"]}, "cafe", "caf\u00e9", None, None, "value_differs"),
    ("collapse", {"compare": "string", "normalize": ["collapse_whitespace"]}, "a  \t\n b", "a b", None, None, None),
    ("collapse-differs", {"compare": "string", "normalize": ["collapse_whitespace"]}, "ab", "a b", None, None, "value_differs"),
    ("default-trim-nfc", {"compare": "string"}, "  caf" + "e\u0301\t", "caf\u00e9", None, None, None),
    ("default-no-lower", {"compare": "string"}, "ABC", "abc", None, None, "value_differs"),
    ("none-trim", {"compare": "string", "normalize": []}, " abc", "abc", None, None, "value_differs"),
    ("none-nfc", {"compare": "string", "normalize": []}, "e\u0301", "\u00e9", None, None, "value_differs"),
    ("none-lower", {"compare": "string", "normalize": []}, "ABC", "abc", None, None, "value_differs"),
    ("none-collapse", {"compare": "string", "normalize": []}, "a  b", "a b", None, None, "value_differs"),
    ("string-values-normalised", {"compare": "string", "normalize": ["trim", "lower"], "values": {"active": ["On"]}},
     " ON ", "ACTIVE", None, None, None),
    ("string-int-vs-text", {"compare": "string"}, 7, " 7 ", None, None, None),
    # ---------------------------------------------------------------- numeric
    ("decimal-scales", {"compare": "numeric"}, Decimal("42.500"), Decimal("42.50"), pa.decimal128(10, 3), pa.decimal128(10, 2), None),
    ("decimal-scales-differ", {"compare": "numeric"}, Decimal("42.500"), Decimal("42.51"), pa.decimal128(10, 3), pa.decimal128(10, 2), "value_differs"),
    ("text-scales", {"compare": "numeric"}, "42.500", "42.50", None, None, None),
    ("abs-tol-float-noise", {"compare": "numeric", "abs_tol": 0.01}, 10.00, 10.01, None, None, None),
    ("abs-tol-float-noise-rev", {"compare": "numeric", "abs_tol": 0.01}, 10.01, 10.00, None, None, None),
    ("abs-tol-42", {"compare": "numeric", "abs_tol": 0.01}, 42.50, 42.51, None, None, None),
    # 10.71 - 10.70 == 0.010000000000001563 and 1.11 - 1.10 == 0.010000000000000009 in doubles
    ("abs-tol-noise-above", {"compare": "numeric", "abs_tol": 0.01}, 10.70, 10.71, None, None, None),
    ("abs-tol-noise-above-text", {"compare": "numeric", "abs_tol": 0.01}, "1.10", 1.11, None, None, None),
    ("abs-tol-exceeded", {"compare": "numeric", "abs_tol": 0.01}, 10.00, 10.02, None, None, "value_differs"),
    ("abs-tol-zero", {"compare": "numeric"}, 42.50, 42.51, None, None, "value_differs"),
    ("rel-tol-within", {"compare": "numeric", "rel_tol": 0.01}, 100.0, 101.0, None, None, None),
    ("rel-tol-exceeded", {"compare": "numeric", "rel_tol": 0.01}, 100.0, 101.5, None, None, "value_differs"),
    ("rel-tol-negative", {"compare": "numeric", "rel_tol": 0.01}, -100.0, -101.0, None, None, None),
    ("abs-or-rel-by-rel", {"compare": "numeric", "abs_tol": 0.5, "rel_tol": 0.01}, 1000.0, 1009.0, None, None, None),
    ("abs-or-rel-by-abs", {"compare": "numeric", "abs_tol": 0.5, "rel_tol": 0.01}, 1.0, 1.4, None, None, None),
    ("abs-or-rel-neither", {"compare": "numeric", "abs_tol": 0.5, "rel_tol": 0.01}, 1.0, 1.6, None, None, "value_differs"),
    ("int-vs-double", {"compare": "numeric"}, 42, 42.0, None, None, None),
    ("int-vs-text", {"compare": "numeric"}, 42, "42", None, None, None),
    ("text-vs-double", {"compare": "numeric"}, "42.50", 42.5, None, None, None),
    ("double-vs-padded-text", {"compare": "numeric"}, 42.5, " 42.5\t", None, None, None),
    ("text-vs-other-double", {"compare": "numeric"}, "42.50", 42.6, None, None, "value_differs"),
    ("non-numeric-a", {"compare": "numeric"}, "n/a", 42.5, None, None, "type_mismatch_a"),
    ("non-numeric-b", {"compare": "numeric"}, 42.5, "12,50 EUR", None, None, "type_mismatch_b"),
    ("non-numeric-both-texts", {"compare": "numeric"}, "n/a", "n/a", None, None, "type_mismatch_a"),
    ("non-numeric-b-text", {"compare": "numeric"}, "1.5", "abc", None, None, "type_mismatch_b"),
    ("bool-is-not-number-a", {"compare": "numeric"}, True, 1, None, None, "type_mismatch_a"),
    ("bool-is-not-number-b", {"compare": "numeric"}, 1.0, True, None, None, "type_mismatch_b"),
    ("bool-text-is-not-number", {"compare": "numeric"}, "true", 1, None, None, "type_mismatch_a"),
    ("bools-both", {"compare": "numeric"}, False, False, None, None, "type_mismatch_a"),
    ("scale-cents", {"compare": "numeric", "scale_a": 0.01}, 4250, 42.5, None, None, None),
    ("scale-cents-text", {"compare": "numeric", "scale_b": 0.01}, "42.51", 4251, None, None, None),
    ("scale-cents-differ", {"compare": "numeric", "scale_b": 0.01}, 42.5, 4251, None, None, "value_differs"),
    ("scale-unscaled-differ", {"compare": "numeric"}, 4250, 42.5, None, None, "value_differs"),
    ("scale-null-vs-garbage", {"compare": "numeric", "scale_a": 0.01}, None, "n/a", pa.int64(), None, "null_in_a"),
    # ---------------------------------------------------------------- timestamp
    ("lag-within", {"compare": "timestamp", "lag": "60s"}, T(2026, 1, 1, 10), T(2026, 1, 1, 10, 0, 1), TS, TS, None),
    ("lag-exceeded", {"compare": "timestamp", "lag": "60s"}, T(2026, 1, 1, 10), T(2026, 1, 1, 14), TS, TS, "value_differs"),
    ("lag-zero", {"compare": "timestamp"}, T(2026, 1, 1, 10), T(2026, 1, 1, 10, 0, 1), TS, TS, "value_differs"),
    ("lag-minutes", {"compare": "timestamp", "lag": "5m"}, T(2026, 1, 1, 10), T(2026, 1, 1, 10, 4, 59), TS, TS, None),
    ("offsets-same-instant", {"compare": "timestamp"}, "2026-01-01T10:00:00+02:00", "2026-01-01T08:00:00Z", None, None, None),
    ("offsets-other-instant", {"compare": "timestamp"}, "2026-01-01T10:00:00+02:00", "2026-01-01T10:00:00Z", None, None, "value_differs"),
    ("offset-compact", {"compare": "timestamp"}, "2026-01-01 10:00:00.5+0100", "2026-01-01T09:00:00.5Z", None, None, None),
    ("naive-zones", {"compare": "timestamp", "timezone_a": "Europe/Paris", "timezone_b": "UTC"}, T(2026, 1, 15, 10), T(2026, 1, 15, 9), TS, TS, None),
    ("naive-zones-wall-clock-equal", {"compare": "timestamp", "timezone_a": "Europe/Paris", "timezone_b": "UTC"}, T(2026, 1, 15, 10), T(2026, 1, 15, 10), TS, TS, "value_differs"),
    ("naive-zones-summer", {"compare": "timestamp", "timezone_a": "Europe/Paris"}, T(2026, 7, 15, 10), T(2026, 7, 15, 8), TS, TS, None),
    ("naive-zone-strings", {"compare": "timestamp", "timezone_a": "Europe/Paris"}, "2026-01-15 10:00:00", "2026-01-15T09:00:00", None, None, None),
    ("naive-zone-vs-offset", {"compare": "timestamp", "timezone_a": "Europe/Paris"}, "2026-01-15 10:00:00", "2026-01-15T10:00:00+01:00", None, None, None),
    ("native-vs-iso", {"compare": "timestamp"}, T(2026, 1, 1, 10), "2026-01-01T10:00:00", TS, None, None),
    ("native-vs-iso-z", {"compare": "timestamp"}, T(2026, 1, 1, 10), "2026-01-01T10:00:00Z", TS, None, None),
    ("native-vs-iso-later", {"compare": "timestamp"}, T(2026, 1, 1, 10), "2026-01-01T10:00:05", TS, None, "value_differs"),
    ("tz-aware-vs-offset", {"compare": "timestamp"}, T(2026, 1, 1, 8, tzinfo=dt.UTC), "2026-01-01T10:00:00+02:00", TSTZ, None, None),
    ("date-only-in-zone", {"compare": "timestamp", "timezone_a": "Europe/Paris"}, "2026-01-01", "2025-12-31T23:00:00Z", None, None, None),
    ("date-vs-date-text", {"compare": "timestamp", "timezone_a": "Europe/Paris", "timezone_b": "Europe/Paris"}, dt.date(2026, 1, 1), "2026-01-01", pa.date32(), None, None),
    ("unparseable-a", {"compare": "timestamp"}, "soon", T(2026, 1, 1), None, TS, "type_mismatch_a"),
    ("unparseable-b", {"compare": "timestamp"}, T(2026, 1, 1), "2026-13-45", TS, None, "type_mismatch_b"),
    ("unparseable-zones", {"compare": "timestamp", "timezone_a": "Europe/Paris"}, "soon", "later", None, None, "type_mismatch_a"),
    # ---------------------------------------------------------------- null policy
    ("null-null-equal", "exact", None, None, pa.string(), pa.string(), None),
    ("null-null-differ", {"nulls": {"both_null": "differ"}}, None, None, pa.string(), pa.string(), "both_null"),
    ("null-null-differ-numeric", {"compare": "numeric", "nulls": {"both_null": "differ"}}, None, None, pa.float64(), pa.string(), "both_null"),
    ("null-in-a", "exact", None, "x", None, None, "null_in_a"),
    ("null-in-b", "exact", "x", None, None, None, "null_in_b"),
    ("null-in-a-numeric", {"compare": "numeric", "abs_tol": 1000}, None, 1.0, None, None, "null_in_a"),
    ("null-in-b-timestamp", {"compare": "timestamp", "lag": "1d"}, T(2026, 1, 1), None, TS, None, "null_in_b"),
    ("allow-null-in-b", {"nulls": {"allow_null_in": ["b"]}}, "x", None, None, None, None),
    ("allow-null-in-b-not-a", {"nulls": {"allow_null_in": ["b"]}}, None, "x", None, None, "null_in_a"),
    ("allow-null-in-a", {"compare": "numeric", "nulls": {"allow_null_in": ["a"]}}, None, 3.0, None, None, None),
    ("allow-null-in-a-not-b", {"compare": "numeric", "nulls": {"allow_null_in": ["a"]}}, 3.0, None, None, None, "null_in_b"),
    ("null-vs-garbage-zones", {"compare": "timestamp", "timezone_a": "Europe/Paris"}, None, "garbage", pa.string(), None, "null_in_a"),
    ("garbage-vs-null-zones", {"compare": "timestamp", "timezone_b": "America/New_York"}, "garbage", None, None, pa.string(), "null_in_b"),
]


@pytest.mark.parametrize(
    "rule, a, b, type_a, type_b, expected",
    [pytest.param(*case[1:], id=case[0]) for case in RULE_CASES],
)
def test_rule(rule, a, b, type_a, type_b, expected):
    assert reason_of(rule, a, b, type_a, type_b) == expected


@pytest.mark.parametrize(
    "a, b",
    [(100.0, 101.0), (1.0, 1.01), (-200.0, -202.0)],
)
def test_rel_tol_is_symmetric(a, b):
    # |a-b| <= rel_tol * |b| would accept one order and refuse the other (numpy.isclose,
    # datacompy): 0.00995 * 101 >= 1 > 0.00995 * 100.
    rule = {"compare": "numeric", "rel_tol": 0.00995}
    assert reason_of(rule, a, b) is None
    assert reason_of(rule, b, a) is None
    tight = {"compare": "numeric", "rel_tol": 0.0098}
    assert reason_of(tight, a, b) == "value_differs"
    assert reason_of(tight, b, a) == "value_differs"


def test_numeric_difference_and_relative_difference():
    row = pair_outcome({"compare": "numeric", "abs_tol": 0.01}, 10.00, 10.02)
    assert row["difference"] == pytest.approx(0.02)
    assert row["relative_difference"] == pytest.approx(0.02 / 10.02)
    assert (row["value_a"], row["value_b"]) == ("10.0", "10.02")
    assert "0.02" in row["detail"] and "0.01" in row["detail"]


def test_timestamp_difference_in_seconds():
    row = pair_outcome({"compare": "timestamp", "lag": 60}, T(2026, 1, 1, 10), T(2026, 1, 1, 14), TS, TS)
    assert row["reason"] == "value_differs"
    assert row["difference"] == 14400
    assert row["relative_difference"] is None


@pytest.mark.parametrize(
    "rule, a, b, expected_detail",
    [
        ({"compare": "numeric"}, "n/a", 1.0, "A value is not a number"),
        ({"compare": "numeric"}, 1.0, "n/a", "B value is not a number"),
        ({"compare": "timestamp"}, "soon", "2026-01-01", "A value is not a timestamp"),
        ({"compare": "timestamp"}, "2026-01-01", "soon", "B value is not a timestamp"),
    ],
)
def test_type_mismatch_detail_names_the_side(rule, a, b, expected_detail):
    row = pair_outcome(rule, a, b)
    assert row["detail"] == expected_detail
    assert row["difference"] is None
    assert (row["value_a"], row["value_b"]) == (str(a), str(b))


def test_both_null_reported_when_every_other_field_is_identical():
    spec = make_spec(fields={"plan": "exact", "note": {"nulls": {"both_null": "differ"}}, "amount": {"compare": "numeric"}})
    a = {"id": [1, 2, 3], "plan": ["x", "y", "z"], "note": pa.array([None, "n", None], pa.string()), "amount": [1.0, 2.0, 3.0]}
    b = {"id": [1, 2, 3], "plan": ["x", "y", "z"], "note": pa.array([None, "n", "m"], pa.string()), "amount": [1.0, 2.0, 3.0]}
    result = run(spec, a, b)
    assert outcomes(result) == {
        ("field_mismatch", "1", "note", "both_null"),
        ("field_mismatch", "3", "note", "null_in_a"),
    }
    assert result.match.identical == 1 and result.match.matched == 3


# --------------------------------------------------------------------------- keys


def test_composite_key_rendered_as_json_list():
    spec = make_spec(key=["region", "id"], fields={"plan": "exact"})
    a = {"region": ["EU", "US", "EU"], "id": [42, 42, 1], "plan": ["x", "y", "p"]}
    b = {"region": ["EU", "US", "EU"], "id": [42, 42, 7], "plan": ["x", "z", "q"]}
    result = run(spec, a, b)
    assert outcomes(result) == {
        ("field_mismatch", '["US","42"]', "plan", "value_differs"),
        ("only_in_a", '["EU","1"]', None, "missing_in_b"),
        ("only_in_b", '["EU","7"]', None, "missing_in_a"),
    }
    assert render_key(["US", 42]) == '["US","42"]'
    assert result.match.matched == 2 and result.match.identical == 1


def test_key_columns_named_differently_per_side():
    spec = make_spec(key=[{"name": "id", "a": "cust_id", "b": "customer_ref"}], fields={"plan": {"a": "plan", "b": "tier"}})
    a = {"cust_id": [1, 2, 3], "plan": ["x", "y", "z"]}
    b = {"customer_ref": [1, 2, 4], "tier": ["x", "q", "z"]}
    result = run(spec, a, b)
    assert outcomes(result) == {
        ("field_mismatch", "2", "plan", "value_differs"),
        ("only_in_a", "3", None, "missing_in_b"),
        ("only_in_b", "4", None, "missing_in_a"),
    }


def test_int_key_matches_text_key():
    spec = make_spec(fields={"plan": "exact"})
    result = run(spec, {"id": [1, 2, 3], "plan": ["x", "y", "z"]}, {"id": ["1", "2", "9"], "plan": ["x", "q", "z"]})
    assert outcomes(result) == {
        ("field_mismatch", "2", "plan", "value_differs"),
        ("only_in_a", "3", None, "missing_in_b"),
        ("only_in_b", "9", None, "missing_in_a"),
    }
    assert result.match.matched == 2


def test_null_and_empty_keys_are_invalid_never_paired():
    spec = make_spec(fields={"plan": "exact"})
    a = {"id": pa.array([None, None, "", "  ", "1"], pa.string()), "plan": ["a", "b", "c", "d", "x"]}
    b = {"id": pa.array([None, "", "1", "2"], pa.string()), "plan": ["a", "c", "x", "y"]}
    result = run(spec, a, b)
    got = {(r["kind"], r["key"]): r for r in rows(result)}
    assert set(got) == {
        ("invalid_key_a", "<null>"), ("invalid_key_a", ""), ("invalid_key_a", "  "),
        ("invalid_key_b", "<null>"), ("invalid_key_b", ""),
        ("only_in_b", "2"),
    }
    assert got[("invalid_key_a", "<null>")]["value_a"] == "2 record(s)"
    assert got[("invalid_key_a", "<null>")]["reason"] == "invalid_key"
    assert got[("invalid_key_b", "")]["value_b"] == "1 record(s)"
    assert got[("invalid_key_b", "")]["value_a"] is None
    stats = result.match
    assert (stats.invalid_key_rows_a, stats.invalid_key_rows_b) == (4, 2)
    assert (stats.only_in_a, stats.only_in_b, stats.matched, stats.identical) == (0, 1, 1, 1)


def test_invalid_int_key_and_partial_composite_key():
    spec = make_spec(key=["region", "id"], fields={"plan": "exact"})
    a = {"region": pa.array(["EU", None, "EU"], pa.string()), "id": pa.array([None, 1, 2], pa.int64()), "plan": ["x", "y", "z"]}
    b = {"region": ["EU", "EU"], "id": [2, 3], "plan": ["z", "w"]}
    result = run(spec, a, b)
    assert outcomes(result) == {
        ("invalid_key_a", '["EU",null]', None, "invalid_key"),
        ("invalid_key_a", '[null,"1"]', None, "invalid_key"),
        ("only_in_b", '["EU","3"]', None, "missing_in_a"),
    }


@pytest.mark.parametrize("dup_side", ["a", "b", "both"])
def test_duplicate_keys_are_reported_not_paired(dup_side):
    spec = make_spec(fields={"plan": "exact"})
    a = {"id": [1, 2, 3], "plan": ["x", "y", "z"]}
    b = {"id": [1, 2, 4], "plan": ["x", "DIFFERENT", "w"]}
    if dup_side in ("a", "both"):
        a = {"id": [1, 2, 2, 2, 3, 5, 5], "plan": ["x", "y", "y", "q", "z", "o", "o"]}
    if dup_side in ("b", "both"):
        b = {"id": [1, 2, 2, 4, 6, 6], "plan": ["x", "DIFFERENT", "r", "w", "o", "o"]}
    result = run(spec, a, b)
    found = outcomes(result)
    expected = {("only_in_a", "3", None, "missing_in_b"), ("only_in_b", "4", None, "missing_in_a")}
    by_kind = {(r["kind"], r["key"]): r for r in rows(result)}
    if dup_side in ("a", "both"):
        expected |= {("duplicate_key_a", "2", None, "duplicate_key"), ("duplicate_key_a", "5", None, "duplicate_key")}
        assert by_kind[("duplicate_key_a", "2")]["value_a"] == "3 record(s)"
        assert by_kind[("duplicate_key_a", "5")]["value_a"] == "2 record(s)"
        assert by_kind[("duplicate_key_a", "2")]["value_b"] is None
    if dup_side in ("b", "both"):
        expected |= {("duplicate_key_b", "2", None, "duplicate_key"), ("duplicate_key_b", "6", None, "duplicate_key")}
        assert by_kind[("duplicate_key_b", "2")]["value_b"] == "2 record(s)"
        assert by_kind[("duplicate_key_b", "2")]["value_a"] is None
    # Key 2 is neither paired (no field_mismatch against B's "DIFFERENT") nor only_in anywhere,
    # and key 5 / 6 (duplicated, absent on the other side) is not only_in either.
    assert found == expected
    stats = result.match
    assert stats.matched == 1 and stats.identical == 1
    assert stats.duplicate_keys_a == {"a": 2, "b": 0, "both": 2}[dup_side]
    assert stats.duplicate_rows_a == {"a": 5, "b": 0, "both": 5}[dup_side]
    assert stats.duplicate_keys_b == {"a": 0, "b": 2, "both": 2}[dup_side]
    assert stats.duplicate_rows_b == {"a": 0, "b": 4, "both": 4}[dup_side]


@pytest.mark.parametrize("key_name", ["side", "n", "in_a", "in_b"])
def test_key_names_that_the_engine_also_uses_internally(key_name):
    spec = make_spec(key=[key_name, "id"], fields={"plan": "exact"})
    a = {key_name: ["x", "x", "y", "z"], "id": [1, 1, 2, 3], "plan": ["p", "p", "q", "s"]}
    b = {key_name: ["x", "y", "w"], "id": [1, 2, 4], "plan": ["p", "r", "s"]}
    result = run(spec, a, b)
    assert outcomes(result) == {
        ("duplicate_key_a", '["x","1"]', None, "duplicate_key"),
        ("field_mismatch", '["y","2"]', "plan", "value_differs"),
        ("only_in_a", '["z","3"]', None, "missing_in_b"),
        ("only_in_b", '["w","4"]', None, "missing_in_a"),
    }


def test_reserved_names_are_refused():
    with pytest.raises(SpecError, match="__flag"):
        make_spec(key="__flag", fields={"plan": "exact"})
    # The engine refuses them too, for a spec built without validation.
    spec = make_spec(key="flag", fields={"plan": "exact"})
    spec = spec.model_copy(update={"key": [spec.key[0].model_copy(update={"name": "__flag"})]})
    with pytest.raises(ComparisonError, match="__flag"):
        run(spec, {"flag": ["x"], "plan": ["p"]}, {"flag": ["x"], "plan": ["p"]})


MAPPING = {"a_id": [1, 2, 3, 5, None], "b_id": ["B1", "B2", "B3", "B5", "B7"]}


def test_mapping_matches_through_the_mapping_table():
    spec = make_spec(fields={"plan": "exact"})
    a = {"id": [1, 2, 3, 4, None], "plan": ["x", "y", "z", "u", "n"]}
    b = {"id": ["B1", "B2", "B5", "B9", "B7"], "plan": ["x", "q", "v", "w", "m"]}
    result = run(spec, a, b, mapping=MAPPING)
    assert outcomes(result) == {
        ("field_mismatch", "2", "plan", "value_differs"),
        ("only_in_a", "3", None, "missing_in_b"),   # mapped, but B has no B3
        ("only_in_b", "5", None, "missing_in_a"),   # B5 is A's 5, which A lacks
        ("unmapped_a", "4", None, "no_mapping"),
        ("unmapped_b", "B9", None, "no_mapping"),   # keeps B's own id
        ("unmapped_b", "B7", None, "no_mapping"),   # its mapping row has no A id
        ("invalid_key_a", "<null>", None, "invalid_key"),
    }
    stats = result.match
    assert (stats.unmapped_rows_a, stats.unmapped_rows_b, stats.invalid_key_rows_a) == (1, 2, 1)
    assert (stats.matched, stats.identical, stats.only_in_a, stats.only_in_b) == (2, 1, 1, 1)


def test_mapping_with_renamed_columns():
    spec = make_spec(fields={"plan": "exact"})
    mapping = {"crm": ["c1", "c2"], "erp": [10, 20]}
    result = run(spec, {"id": ["c1", "c2"], "plan": ["x", "y"]}, {"id": [10, 20], "plan": ["x", "z"]},
                 mapping=mapping, mapping_columns={"a": "crm", "b": "erp"})
    assert outcomes(result) == {("field_mismatch", "c2", "plan", "value_differs")}


@pytest.mark.parametrize(
    "mapping, culprit",
    [
        ({"a_id": [1, 1, 2], "b_id": ["B1", "B2", "B3"]}, "'1' (A side)"),
        ({"a_id": [1, 2, 3], "b_id": ["B1", "B1", "B3"]}, "'B1' (B side)"),
    ],
)
def test_mapping_must_be_one_to_one(mapping, culprit):
    spec = make_spec(fields={"plan": "exact"})
    with pytest.raises(ComparisonError) as info:
        run(spec, {"id": [1], "plan": ["x"]}, {"id": ["B1"], "plan": ["x"]}, mapping=mapping)
    message = str(info.value)
    assert culprit in message and "one-to-one" in message and "mapping" in message


def test_repeated_identical_mapping_rows_are_fine():
    spec = make_spec(fields={"plan": "exact"})
    mapping = {"a_id": [1, 1], "b_id": ["B1", "B1"]}
    result = run(spec, {"id": [1], "plan": ["x"]}, {"id": ["B1"], "plan": ["y"]}, mapping=mapping)
    assert outcomes(result) == {("field_mismatch", "1", "plan", "value_differs")}


# --------------------------------------------------------------------------- record values and ids


def test_only_in_records_carry_their_values_as_json():
    spec = make_spec(fields={"plan": "exact", "amount": {"compare": "numeric"}, "seen": {"compare": "timestamp"}})
    a = {"id": [1, 2], "plan": ["x", "gold"], "amount": [1.0, 10.5], "seen": pa.array([T(2026, 1, 1), None], TS)}
    b = {"id": [1, 3], "plan": ["x", None], "amount": [1.0, -3.25], "seen": pa.array([T(2026, 1, 1), T(2026, 2, 1)], TS)}
    result = run(spec, a, b)
    only = {r["kind"]: r for r in rows(result)}
    assert set(only) == {"only_in_a", "only_in_b"}
    assert json.loads(only["only_in_a"]["value_a"]) == {"plan": "gold", "amount": 10.5, "seen": None}
    assert only["only_in_a"]["value_b"] is None
    record_b = json.loads(only["only_in_b"]["value_b"])
    assert record_b["plan"] is None and record_b["amount"] == -3.25 and record_b["seen"].startswith("2026-02-01")
    assert only["only_in_b"]["value_a"] is None


def _id_case():
    spec = make_spec(fields={"plan": "exact", "amount": {"compare": "numeric"}})
    a = {"id": [1, 2, 3, 4, 4, 6], "plan": ["x", "y", "z", "u", "u", "é"], "amount": [1.0, 2.0, 3.0, 4.0, 4.0, 6.0]}
    b = {"id": [1, 2, 3, 5, 6], "plan": ["x", "Y", "z", "v", "e"], "amount": [1.0, 2.5, 3.5, 5.0, 6.0]}
    return spec, a, b


def _shuffled(data: dict, seed: int) -> dict:
    order = list(range(len(next(iter(data.values())))))
    random.Random(seed).shuffle(order)
    return {k: [v[i] for i in order] for k, v in data.items()}


def test_ids_are_stable_across_runs_and_row_order():
    spec, a, b = _id_case()
    first = run(spec, a, b)
    again = run(spec, a, b)
    shuffled = run(spec, _shuffled(a, 1), _shuffled(b, 2))
    ids = lambda r: {(x["id"], x["kind"], x["key"], x["field"]) for x in rows(r)}
    assert len(ids(first)) == first.discrepancies.num_rows == 6
    assert ids(first) == ids(again) == ids(shuffled)
    assert first.discrepancies.column("id").to_pylist() == again.discrepancies.column("id").to_pylist()


def test_ids_follow_discrepancy_id_and_differ_per_kind_and_field():
    spec, a, b = _id_case()
    result = run(spec, a, b)
    table = rows(result)
    for r in table:
        assert r["id"] == discrepancy_id(NAME, r["kind"], r["key"], r["field"])
        assert r["reconciliation"] == NAME
    ids = [r["id"] for r in table]
    assert len(set(ids)) == len(ids)
    # Same key, two fields: two ids.
    key2 = {r["field"]: r["id"] for r in table if r["key"] == "2"}
    assert set(key2) == {"plan", "amount"} and key2["plan"] != key2["amount"]
    assert discrepancy_id(NAME, "only_in_a", "4", None) != discrepancy_id(NAME, "duplicate_key_a", "4", None)
    assert discrepancy_id(NAME, "field_mismatch", "4", "plan") != discrepancy_id("other", "field_mismatch", "4", "plan")


def test_discrepancy_table_schema_and_order():
    spec, a, b = _id_case()
    table = run(spec, a, b).discrepancies
    assert table.column_names == [
        "id", "reconciliation", "kind", "key", "field", "reason",
        "value_a", "value_b", "difference", "relative_difference", "severity", "detail",
    ]
    keys = [(r["kind"], r["key"], r["field"] or "") for r in table.to_pylist()]
    assert keys == sorted(keys)


def test_non_ascii_key_ids_match_python():
    spec = make_spec(fields={"plan": "exact"})
    result = run(spec, {"id": ["Zürich", "東京"], "plan": ["x", "y"]}, {"id": ["Zürich"], "plan": ["z"]})
    for r in rows(result):
        assert r["id"] == discrepancy_id(NAME, r["kind"], r["key"], r["field"])
    assert {r["key"] for r in rows(result)} == {"Zürich", "東京"}


# --------------------------------------------------------------------------- stats


def test_match_and_field_stats_on_a_hand_built_case():
    spec = make_spec(fields={"plan": "exact", "amount": {"compare": "numeric", "abs_tol": 0.01}})
    a = {
        "id": pa.array([1, 2, 3, 4, 5, 6, 7, 8, None, 9, 9], pa.int64()),
        "plan": ["p", "p", "p", "p", "p", "p", "p", "p", "p", "p", "p"],
        "amount": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 0.0, 9.0, 9.0],
    }
    b = {
        "id": pa.array([1, 2, 3, 4, 5, 6, 9, 10, 11, None], pa.int64()),
        "plan": ["p", "p", "CHANGED", "p", "p", "p", "p", "p", "p", "p"],
        "amount": [1.0, 2.0, 3.007, 4.004, 5.5, 6.0, 9.0, 10.0, 11.0, 0.0],
    }
    result = run(spec, a, b)
    s = result.match
    assert (s.rows_a, s.rows_b) == (11, 10)
    assert (s.invalid_key_rows_a, s.invalid_key_rows_b) == (1, 1)
    assert (s.unmapped_rows_a, s.unmapped_rows_b) == (0, 0)
    assert (s.duplicate_keys_a, s.duplicate_rows_a, s.duplicate_keys_b, s.duplicate_rows_b) == (1, 2, 0, 0)
    assert (s.only_in_a, s.only_in_b) == (2, 2)
    assert (s.matched, s.identical, s.candidate_pairs) == (6, 3, 3)
    plan, amount = result.fields["plan"], result.fields["amount"]
    assert (plan.mismatches, plan.within_tolerance, plan.max_within_tolerance) == (1, 0, None)
    assert (amount.mismatches, amount.within_tolerance) == (1, 2)
    assert amount.max_within_tolerance == pytest.approx(0.007)
    assert result.counts_by_kind == {
        "duplicate_key_a": 1, "field_mismatch": 2, "invalid_key_a": 1, "invalid_key_b": 1,
        "only_in_a": 2, "only_in_b": 2,
    }
    summary = result.summary()
    assert summary["discrepancies"] == 9 and summary["matched"] == 6


def test_value_mapped_aliases_are_counted_as_mapped_not_as_drift():
    """An alias the rule's ``values`` maps is the same value under another name: ``mapped``, not
    ``within_tolerance``; normalisation absorbed by a string rule still counts as drift."""
    spec = make_spec(fields={
        "status": {"compare": "exact", "values": {"active": ["ACTIVE"], "churned": ["CANCELLED"]}},
        "name": {"compare": "string", "normalize": ["lower"], "values": {"acme": ["ACME Corp"]}},
    })
    a = {"id": [1, 2, 3, 4], "status": ["active", "active", "churned", "active"], "name": ["acme", "Bob", "x", "x"]}
    b = {"id": [1, 2, 3, 4], "status": ["ACTIVE", "active", "CANCELLED", "CANCELLED"], "name": ["ACME Corp", "bob", "x", "x"]}
    result = run(spec, a, b)
    status, name = result.fields["status"], result.fields["name"]
    assert (status.mismatches, status.mapped, status.within_tolerance) == (1, 2, 0)
    assert (name.mismatches, name.mapped, name.within_tolerance) == (0, 1, 1)  # 'ACME Corp' mapped, 'bob' lowered


def test_within_tolerance_counts_timestamp_drift_but_not_a_change_of_zone():
    rule = {"compare": "timestamp", "lag": "60s", "timezone_a": "Europe/Paris"}
    spec = make_spec(fields={"ts": rule, "plan": "exact"})
    a = {"id": [1, 2, 3], "ts": pa.array([T(2026, 1, 5, 10), T(2026, 1, 5, 10), T(2026, 1, 5, 10)], TS), "plan": ["x", "x", "x"]}
    # 1: same instant, other zone (and plan differs, so the pair is evaluated); 2: 30 s drift; 3: 2 h off
    b = {"id": [1, 2, 3], "ts": pa.array([T(2026, 1, 5, 9), T(2026, 1, 5, 9, 0, 30), T(2026, 1, 5, 11)], TS), "plan": ["y", "x", "x"]}
    result = run(spec, a, b)
    ts = result.fields["ts"]
    assert (ts.mismatches, ts.within_tolerance, ts.max_within_tolerance) == (1, 1, 30.0)


# --------------------------------------------------------------------------- severity


SEVERITY = {
    "default": "info",
    "rules": [
        {"kind": ["only_in_a", "only_in_b"], "tier": "critical"},
        {"field": "amount", "min_difference": 100, "tier": "critical"},
        {"field": "amount", "max_difference": 1, "tier": "info"},
        {"field": "amount", "tier": "warning"},
        {"field": "ratio", "min_relative_difference": 0.5, "tier": "critical"},
        {"kind": "field_mismatch", "tier": "warning"},
        {"kind": "only_in_a", "tier": "info"},  # shadowed by the first rule
    ],
}


def test_severity_rules_first_match_wins():
    fields = {"amount": {"compare": "numeric"}, "ratio": {"compare": "numeric"}, "plan": "exact"}
    spec = make_spec(fields=fields, severity=SEVERITY)
    a = {"id": [1, 2, 3, 4, 5, 6, 7, 7], "amount": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
         "ratio": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], "plan": ["p"] * 8}
    b = {"id": [1, 2, 3, 4, 5, 6, 8], "amount": [500.0, 0.5, 50.0, 100.0, 0.0, 0.0, 0.0],
         "ratio": [1.0, 1.0, 1.0, 1.0, 3.0, 1.1, 1.0], "plan": ["p", "p", "p", "p", "p", "q", "p"]}
    result = run(spec, a, b)
    tiers = {(r["kind"], r["key"], r["field"]): r["severity"] for r in rows(result)}
    assert tiers == {
        ("field_mismatch", "1", "amount"): "critical",  # >= 100 (also matches the catch-all amount rule)
        ("field_mismatch", "2", "amount"): "info",      # <= 1
        ("field_mismatch", "3", "amount"): "warning",   # between
        ("field_mismatch", "4", "amount"): "critical",  # min_difference is inclusive
        ("field_mismatch", "5", "ratio"): "critical",   # relative 2/3
        ("field_mismatch", "6", "ratio"): "warning",    # relative 0.09: falls to the field_mismatch rule
        ("field_mismatch", "6", "plan"): "warning",
        ("only_in_b", "8", None): "critical",
        ("duplicate_key_a", "7", None): "info",         # no rule: the default tier
    }


def test_severity_default_tier_without_rules():
    spec = make_spec(fields={"plan": "exact"}, severity={"default": "critical"})
    result = run(spec, {"id": [1, 2], "plan": ["x", "y"]}, {"id": [1], "plan": ["z"]})
    assert [r["severity"] for r in rows(result)] == ["critical", "critical"]
    spec = make_spec(fields={"plan": "exact"})
    assert {r["severity"] for r in rows(run(spec, {"id": [1], "plan": ["x"]}, {"id": [1], "plan": ["z"]}))} == {"warning"}


def test_severity_difference_condition_never_matches_record_kinds():
    severity = {"default": "warning", "rules": [{"max_difference": 1000, "tier": "info"}]}
    spec = make_spec(fields={"amount": {"compare": "numeric"}}, severity=severity)
    result = run(spec, {"id": [1, 2], "amount": [1.0, 2.0]}, {"id": [1], "amount": [3.0]})
    tiers = {r["kind"]: r["severity"] for r in rows(result)}
    assert tiers == {"field_mismatch": "info", "only_in_a": "warning"}


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("side", ["a", "b"])
def test_missing_field_column_names_side_and_column(side):
    spec = make_spec(fields={"plan": "exact", "amount": {"compare": "numeric", side: "amt_missing"}})
    data = {"id": [1], "plan": ["x"], "amount": [1.0]}
    with pytest.raises(ComparisonError) as info:
        run(spec, data, data, labels=("crm_side", "erp_side"))
    message = str(info.value)
    assert ("crm_side" if side == "a" else "erp_side") in message
    assert ("erp_side" if side == "a" else "crm_side") not in message
    assert "amt_missing" in message


def test_missing_key_column_names_side_and_column():
    spec = make_spec(key=[{"name": "id", "a": "id", "b": "ref"}], fields={"plan": "exact"})
    with pytest.raises(ComparisonError, match=r"erp_side.*ref"):
        run(spec, {"id": [1], "plan": ["x"]}, {"id": [1], "plan": ["x"]}, labels=("crm_side", "erp_side"))


# --------------------------------------------------------------------------- randomized property test


PROPERTY_FIELDS = {
    "plan": "exact",
    "amount": {"compare": "numeric", "abs_tol": 0.01, "rel_tol": 0.001},
    "seen": {"compare": "timestamp", "lag": "60s", "timezone_a": "Europe/Paris", "timezone_b": "UTC"},
    "status": {"compare": "exact", "nulls": {"both_null": "differ"}},
    "qty": {"compare": "numeric", "nulls": {"allow_null_in": ["b"]}},
}
PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC


def _random_sides(n: int, seed: int):
    rng = np.random.default_rng(seed)
    plans = ["free", "pro", "team", "enterprise"]
    statuses = ["open", "closed", None]
    base = dt.datetime(2026, 1, 2)  # January-February: no DST change in Paris
    a_rows, b_rows = [], []
    for i in range(n):
        key = i
        in_a, in_b = rng.random() > 0.03, rng.random() > 0.03
        plan = plans[rng.integers(4)]
        amount = round(float(rng.uniform(-5000, 10000)), 2)
        local = base + dt.timedelta(seconds=int(rng.integers(0, 55 * 86400)), milliseconds=int(rng.integers(0, 1000)))
        status = statuses[rng.integers(3)]
        qty = int(rng.integers(0, 50))
        a = {"id": key, "plan": plan, "amount": amount, "seen": local, "status": status, "qty": qty}
        # B: mostly the same, with drift inside and outside every tolerance
        b_plan = plan if rng.random() > 0.05 else plans[rng.integers(4)]
        roll = rng.random()
        if roll < 0.5:
            b_amount = repr(amount)  # the text DuckDB gives the double: equal hashes
        elif roll < 0.75:
            b_amount = f"{amount:.2f}"
        elif roll < 0.85:
            b_amount = f"{amount + float(rng.uniform(-0.009, 0.009)):.4f}"
        elif roll < 0.95:
            b_amount = f"{amount + float(rng.choice([-1, 1]) * rng.uniform(0.02, 30)):.3f}"
        elif roll < 0.98:
            b_amount = None
        else:
            b_amount = ["n/a", "", "12,5", "1e3x"][rng.integers(4)]
        instant = local.replace(tzinfo=PARIS).astimezone(UTC)
        roll = rng.random()
        if roll < 0.6:
            shift = 0.0
        elif roll < 0.8:
            shift = float(rng.uniform(-59, 59))
        else:
            shift = float(rng.choice([-1, 1]) * rng.uniform(61, 86400))
        b_instant = instant + dt.timedelta(milliseconds=round(shift * 1000))
        offset = dt.timezone(dt.timedelta(hours=int(rng.integers(-5, 6))))
        roll = rng.random()
        if roll < 0.03:
            b_seen = None
        elif roll < 0.08:
            b_seen = ["unknown", "2026-02-30T10:00:00Z"][rng.integers(2)]
        elif roll < 0.5:
            b_seen = b_instant.astimezone(offset).isoformat()
        else:
            b_seen = b_instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        b_status = status if rng.random() > 0.1 else statuses[rng.integers(3)]
        b_qty = qty if rng.random() > 0.1 else (None if rng.random() < 0.5 else qty + 1)
        b = {"id": str(key), "plan": b_plan, "amount": b_amount, "seen": b_seen, "status": b_status, "qty": b_qty}
        # sprinkle nulls on A too
        if rng.random() < 0.02:
            a["amount"] = None
        if rng.random() < 0.05:
            a["seen"] = None
        if rng.random() < 0.03:
            a["qty"] = None
        if in_a:
            a_rows.append(a)
            if rng.random() < 0.004:
                a_rows.append(dict(a))  # duplicate key in A
        if in_b:
            b_rows.append(b)
            if rng.random() < 0.004:
                b_rows.append(dict(b, plan="dup"))
    for i in range(5):  # invalid keys
        a_rows.append({"id": None, "plan": "x", "amount": 1.0, "seen": base, "status": None, "qty": 1})
        b_rows.append({"id": ["", " ", None][i % 3], "plan": "x", "amount": "1", "seen": None, "status": None, "qty": 1})
    a_rows.sort(key=lambda r: rng.random())
    b_rows.sort(key=lambda r: rng.random())
    return a_rows, b_rows


def _to_table(rows_, types):
    return pa.table({name: pa.array([r[name] for r in rows_], t) for name, t in types.items()})


A_TYPES = {"id": pa.int64(), "plan": pa.string(), "amount": pa.float64(), "seen": TS, "status": pa.string(), "qty": pa.int64()}
B_TYPES = {"id": pa.string(), "plan": pa.string(), "amount": pa.string(), "seen": pa.string(), "status": pa.string(), "qty": pa.int64()}


def _ref_number(value):
    """The exact decimal a value stands for (a double's own binary value), None if not a number."""
    if value is None:
        return None
    if isinstance(value, float):
        return Decimal(value)
    try:
        return Decimal(str(value).strip())
    except ArithmeticError:
        return None


def _ref_instant(value, zone):
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=zone) if value.tzinfo is None else value
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed


def _ref_field(name, rule, a, b):
    """Reason for one field of one pair, written from the spec reference, not the engine."""
    nulls = rule.get("nulls", {}) if isinstance(rule, dict) else {}
    allow = nulls.get("allow_null_in", [])
    if a is None and b is None:
        return "both_null" if nulls.get("both_null") == "differ" else None
    if a is None:
        return None if "a" in allow else "null_in_a"
    if b is None:
        return None if "b" in allow else "null_in_b"
    compare_ = rule if isinstance(rule, str) else rule.get("compare", "exact")
    if compare_ == "exact":
        return None if str(a) == str(b) else "value_differs"
    if compare_ == "numeric":
        va, vb = _ref_number(a), _ref_number(b)
        if va is None:
            return "type_mismatch_a"
        if vb is None:
            return "type_mismatch_b"
        big = max(abs(va), abs(vb))
        tolerance = max(Decimal(repr(rule.get("abs_tol", 0.0))), Decimal(repr(rule.get("rel_tol", 0.0))) * big)
        # A is a DOUBLE column: the spec allows the rounding of doubles, a few ulps, nothing more.
        # (The drawn drift stays far from the tolerance, so 4 or 8 ulps give the same verdicts.)
        rounding = 4 * Decimal(math.ulp(float(max(big, tolerance))))
        return None if abs(va - vb) <= tolerance + rounding else "value_differs"
    assert compare_ == "timestamp"
    va = _ref_instant(a, PARIS)
    vb = _ref_instant(b, UTC)
    if va is None:
        return "type_mismatch_a"
    if vb is None:
        return "type_mismatch_b"
    lag = 60.0
    return None if abs((va - vb).total_seconds()) <= lag + 1e-6 else "value_differs"


def _reference(a_rows, b_rows):
    out = set()
    groups = {"a": {}, "b": {}}
    for side, rows_ in (("a", a_rows), ("b", b_rows)):
        invalid = {}
        for r in rows_:
            key = r["id"]
            if key is None or (isinstance(key, str) and key.strip() == ""):
                rendered = "<null>" if key is None else key
                invalid[rendered] = invalid.get(rendered, 0) + 1
            else:
                groups[side].setdefault(str(key), []).append(r)
        out |= {(f"invalid_key_{side}", k, None, "invalid_key") for k in invalid}
    dup = set()
    for side in ("a", "b"):
        for k, rs in groups[side].items():
            if len(rs) > 1:
                out.add((f"duplicate_key_{side}", k, None, "duplicate_key"))
                dup.add(k)
    matched = 0
    for k in (set(groups["a"]) | set(groups["b"])) - dup:
        if k not in groups["b"]:
            out.add(("only_in_a", k, None, "missing_in_b"))
        elif k not in groups["a"]:
            out.add(("only_in_b", k, None, "missing_in_a"))
        else:
            matched += 1
            ra, rb = groups["a"][k][0], groups["b"][k][0]
            found = {(name, _ref_field(name, rule, ra[name], rb[name])) for name, rule in PROPERTY_FIELDS.items()}
            found = {(n, reason) for n, reason in found if reason}
            out |= {("field_mismatch", k, n, reason) for n, reason in found}
    return out, matched


def test_engine_matches_a_reference_implementation_on_random_data():
    a_rows, b_rows = _random_sides(5000, seed=20260101)
    spec = make_spec(fields=PROPERTY_FIELDS)
    result = run(spec, _to_table(a_rows, A_TYPES), _to_table(b_rows, B_TYPES))
    expected, matched = _reference(a_rows, b_rows)
    got = outcomes(result)
    assert got - expected == set(), f"engine only: {sorted(got - expected)[:10]}"
    assert expected - got == set(), f"reference only: {sorted(expected - got)[:10]}"
    assert result.match.matched == matched
    assert result.match.identical > 500  # the hash fast path settled many pairs
    # The data really exercises every path.
    kinds = {k for k, *_ in expected}
    assert kinds >= {"only_in_a", "only_in_b", "duplicate_key_a", "duplicate_key_b", "invalid_key_a", "invalid_key_b", "field_mismatch"}
    reasons = {(f, r) for kind, _, f, r in expected if kind == "field_mismatch"}
    assert reasons >= {
        ("plan", "value_differs"), ("amount", "value_differs"), ("amount", "null_in_b"), ("amount", "type_mismatch_b"),
        ("amount", "null_in_a"), ("seen", "value_differs"), ("seen", "type_mismatch_b"), ("seen", "null_in_b"),
        ("status", "both_null"), ("status", "value_differs"), ("qty", "value_differs"), ("qty", "null_in_a"),
    }
    assert ("qty", "null_in_b") not in reasons  # allowed on B
    assert result.fields["amount"].within_tolerance > 100
    assert result.fields["seen"].within_tolerance > 100
    assert 0 < result.fields["seen"].max_within_tolerance <= 60
