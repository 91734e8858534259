"""The timestamp rule on epochs (units, out of range, NaN, infinities) and offsets after a space.

Every case runs through ``pair_outcome`` (alone and beside a differing field), so the hash
fast path and evaluation must agree too. The expected instants come from Python's datetime.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from recon_pipelines.instants import instant_sql
from recon_pipelines.sqlutil import duckdb_connect
from recon_pipelines_tests.test_engine_rules import reason_of

UTC = dt.timezone.utc
INSTANT = dt.datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
EPOCH_S = int(INSTANT.timestamp())
TS = {"compare": "timestamp"}

CASES = [
    # ---------------------------------------------------------------- epochs and units
    ("seconds-default", TS, EPOCH_S, "2026-01-01T08:00:00Z", pa.int64(), None, None),
    ("seconds-float", TS, EPOCH_S + 0.5, "2026-01-01T08:00:00.5Z", pa.float64(), None, None),
    ("millis", {**TS, "epoch_unit_a": "ms"}, EPOCH_S * 1000, "2026-01-01T08:00:00Z", pa.int64(), None, None),
    ("millis-read-as-seconds-is-far-off", TS, EPOCH_S * 1000, "2026-01-01T08:00:00Z", pa.int64(), None, "type_mismatch_a"),
    ("micros", {**TS, "epoch_unit_b": "us"}, "2026-01-01T08:00:00.000001Z", EPOCH_S * 1_000_000 + 1, None, pa.int64(), None),
    ("micros-exact-past-2^53", {**TS, "epoch_unit_a": "us", "epoch_unit_b": "us"},
     EPOCH_S * 1_000_000 + 2, EPOCH_S * 1_000_000, pa.int64(), pa.int64(), "value_differs"),  # 1 µs is the tolerance
    ("same-number-other-units", {**TS, "epoch_unit_a": "s", "epoch_unit_b": "ms"}, 1000, 1000, pa.int64(), pa.int64(), "value_differs"),
    ("same-instant-other-units", {**TS, "epoch_unit_a": "s", "epoch_unit_b": "ms"}, EPOCH_S, EPOCH_S * 1000, pa.int64(), pa.int64(), None),
    ("epoch-text-with-unit", {**TS, "epoch_unit_a": "ms"}, str(EPOCH_S * 1000), "2026-01-01T08:00:00Z", None, None, None),
    ("epoch-text-without-unit", TS, str(EPOCH_S), "2026-01-01T08:00:00Z", None, None, "type_mismatch_a"),
    ("decimal-epoch", TS, pa.array([EPOCH_S], pa.decimal128(20, 3)), "2026-01-01T08:00:00Z", None, None, None),
    # ---------------------------------------------------------------- unreadable epochs: mismatches, not crashes
    ("nan", TS, float("nan"), "2026-01-01T08:00:00Z", pa.float64(), None, "type_mismatch_a"),
    ("inf", TS, "2026-01-01T08:00:00Z", float("inf"), None, pa.float64(), "type_mismatch_b"),
    ("minus-inf", TS, float("-inf"), "2026-01-01T08:00:00Z", pa.float64(), None, "type_mismatch_a"),
    ("huge-double", TS, 1e20, "2026-01-01T08:00:00Z", pa.float64(), None, "type_mismatch_a"),
    ("huge-int", {**TS, "epoch_unit_a": "ms"}, 2**63 - 1, "2026-01-01T08:00:00Z", pa.int64(), None, "type_mismatch_a"),
    ("beyond-year-9999", TS, 253_402_300_800, "2026-01-01T08:00:00Z", pa.int64(), None, "type_mismatch_a"),
    ("year-9999-is-fine", TS, 253_402_300_799, "9999-12-31T23:59:59Z", pa.int64(), None, None),
    ("nan-both-sides", TS, float("nan"), float("nan"), pa.float64(), pa.float64(), "type_mismatch_a"),
    ("huge-text-with-unit", {**TS, "epoch_unit_a": "s"}, "1e400", "2026-01-01T08:00:00Z", None, None, "type_mismatch_a"),
    # ---------------------------------------------------------------- offsets after a space
    ("space-offset", TS, "2026-01-01 10:00:00 +02:00", "2026-01-01T08:00:00Z", None, None, None),
    ("space-z", TS, "2026-01-01 08:00:00 Z", "2026-01-01T08:00:00Z", None, None, None),
    ("space-lower-z", TS, "2026-01-01T08:00:00 z", "2026-01-01T08:00:00Z", None, None, None),
    ("space-compact-offset", TS, "2026-01-01 03:00:00.000 -0500", "2026-01-01T08:00:00Z", None, None, None),
    ("space-offset-not-the-zone", {**TS, "timezone_a": "Asia/Tokyo"}, "2026-01-01 10:00:00 +02:00", "2026-01-01T08:00:00Z", None, None, None),
    ("space-offset-differs", TS, "2026-01-01 10:00:00 +03:00", "2026-01-01T08:00:00Z", None, None, "value_differs"),
    ("minutes-only-with-space-offset", TS, "2026-01-01 10:00 +02:00", "2026-01-01T08:00:00Z", None, None, None),
    ("bare-date-is-not-an-offset", {**TS, "timezone_a": "Europe/Paris"}, "2026-01-01", "2025-12-31T23:00:00Z", None, None, None),
]


@pytest.mark.parametrize("rule, a, b, type_a, type_b, expected", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_timestamp_rule(rule, a, b, type_a, type_b, expected):
    assert reason_of(rule, a, b, type_a, type_b) == expected


@pytest.mark.parametrize("value, duck_type, unit, expected", [
    (EPOCH_S, "BIGINT", None, INSTANT),
    (EPOCH_S * 1000 + 250, "BIGINT", "ms", INSTANT + dt.timedelta(milliseconds=250)),
    (-1, "INTEGER", None, dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
    (float("nan"), "DOUBLE", None, None),
    (1e300, "DOUBLE", "us", None),
    ("2026-01-01 10:00:00 +02:00", "VARCHAR", None, INSTANT),
    (" 1767254400 ", "VARCHAR", "s", INSTANT),
    ("1767254400", "VARCHAR", None, None),
])
def test_instant_sql_reads_the_instant_python_reads(value, duck_type, unit, expected):
    with duckdb_connect() as con:
        got = con.execute(f"SELECT {instant_sql('v', duck_type, 'UTC', unit)} FROM (SELECT CAST(? AS {duck_type}) AS v)",
                          [value]).fetchone()[0]
    assert got == expected


def test_epoch_unit_is_validated():
    from recon_pipelines.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="epoch_unit_a"):
        parse_spec({"name": "t", "source_a": {"type": "file", "path": "a.csv"}, "source_b": {"type": "file", "path": "b.csv"},
                    "key": "id", "fields": {"at": {**TS, "epoch_unit_a": "ns"}}}, source_file="t.yaml")
