"""Reading values as instants, and the one time-window filter every connector applies.

Low in the import graph (only ``sqlutil`` below it): the engine's timestamp rule, the
file, SQL and HTTP connectors, snapshots and feeds all read update times through
``instant_sql``, so a record modified at a given instant is in or out of a window the
same way whichever connector read it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal

WHITESPACE = " \t\n\r\x0b\x0c\u00a0"
EPOCH_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1}
# Epochs are read only within years 1..9999: what Python's datetime (and so every reader of the
# results) can hold. Anything beyond, NaN or an infinity is a type mismatch, never an error.
_MIN_US, _MAX_US = -62_135_596_800_000_000, 253_402_300_799_999_999
# An offset counts only after a time of day: the "-01" ending a bare date "2026-01-01" is not one.
_OFFSET_SUFFIX = r"\d:\d{2}(:\d{2}(\.\d*)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)$"
# DuckDB refuses a space before the offset ("10:00:00 +02:00", "10:00:00 Z") and a lower-case z.
_SPACE_BEFORE_OFFSET = r"\s+([+-]\d{2}(:?\d{2})?)$"
_UTC_SUFFIX = r"\s*[Zz]$"
_NUMBER_TEXT = r"[+-]?(\d+(\.\d*)?|\.\d+)"
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_NUMBER_TYPES = (*_INTEGER_TYPES, "FLOAT", "DOUBLE", "REAL", "DECIMAL")


def is_number_type(duck_type: str) -> bool:
    return duck_type.startswith(_NUMBER_TYPES)


def instant_sql(x: str, duck_type: str, zone: str, epoch_unit: str | None = None) -> str:
    """SQL reading ``x`` (of DuckDB type ``duck_type``) as a TIMESTAMPTZ: offsets honoured (also
    after a space), naive values read in ``zone``, numbers as epochs in ``epoch_unit`` (default
    seconds), and text holding only a number too when ``epoch_unit`` is given. NULL when the
    value cannot be read (a type mismatch for the timestamp rule), never an error."""
    tz = sql_literal(zone)
    if duck_type.startswith("TIMESTAMP WITH TIME ZONE") or duck_type == "TIMESTAMPTZ":
        return x
    if duck_type.startswith("TIMESTAMP") or duck_type == "DATE":
        return f"timezone({tz}, CAST({x} AS TIMESTAMP))"
    if is_number_type(duck_type):
        return _epoch(x, duck_type, epoch_unit or "s")
    text = f"trim(CAST({x} AS VARCHAR), {sql_literal(WHITESPACE)})"
    offset = f"regexp_replace({text}, {sql_literal(_SPACE_BEFORE_OFFSET)}, '\\1')"
    with_offset = f"TRY_CAST(regexp_replace({offset}, {sql_literal(_UTC_SUFFIX)}, 'Z') AS TIMESTAMPTZ)"
    parsed = (
        f"CASE WHEN regexp_matches({text}, {sql_literal(_OFFSET_SUFFIX)}) THEN {with_offset} "
        f"ELSE timezone({tz}, TRY_CAST({text} AS TIMESTAMP)) END"
    )
    if epoch_unit is None:
        return parsed
    number = _epoch(f"TRY_CAST({text} AS DOUBLE)", "DOUBLE", epoch_unit)
    return f"(CASE WHEN regexp_full_match({text}, {sql_literal(_NUMBER_TEXT)}) THEN {number} ELSE {parsed} END)"


def _epoch(x: str, duck_type: str, unit: str) -> str:
    factor = EPOCH_UNITS[unit]
    if duck_type.startswith(_INTEGER_TYPES):
        micros = f"(CAST({x} AS HUGEINT) * {factor})"  # exact: a double loses microseconds past 2^53
    else:
        micros = f"round(CAST({x} AS DOUBLE) * {factor})"
    # NaN and infinities fail BETWEEN too (NaN sorts above every number in DuckDB).
    return (f"(CASE WHEN {micros} BETWEEN {_MIN_US} AND {_MAX_US} "
            f"THEN timezone('UTC', make_timestamp(CAST({micros} AS BIGINT))) END)")


# --------------------------------------------------------------------------- the time window


def _utc_literal(value: datetime) -> str:
    value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return f"{sql_literal(value.isoformat())}::TIMESTAMPTZ"


def window_sql(column: str, duck_type: str, zone: str, start: datetime | None, end: datetime | None) -> list[str]:
    """DuckDB conditions keeping the records whose ``column`` (naive values in ``zone``) lies
    in [start, end); a record whose update time cannot be read is outside every window.
    Naive bounds are UTC."""
    instant = instant_sql(quote_ident(column), duck_type, zone)
    clauses = []
    if start is not None:
        clauses.append(f"{instant} >= {_utc_literal(start)}")
    if end is not None:
        clauses.append(f"{instant} < {_utc_literal(end)}")
    return clauses


def window_mask(batch: pa.RecordBatch | pa.Table, column: str, zone: str,
                start: datetime | None, end: datetime | None) -> pa.Array:
    """A boolean mask over ``batch`` by ``window_sql``, for connectors that filter in Arrow
    (HTTP pages, SQL text columns): the same SQL, so the same answer."""
    with duckdb_connect() as con:
        con.execute("SET preserve_insertion_order = true")  # the mask must line up with the rows
        con.register("__batch", pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch)
        described = con.execute(f"DESCRIBE SELECT {quote_ident(column)} FROM __batch").fetchall()
        clauses = window_sql(column, described[0][1], zone, start, end)
        condition = " AND ".join(clauses) or "TRUE"
        return con.sql(f"SELECT coalesce({condition}, false) AS keep FROM __batch").to_arrow_table().column(0).combine_chunks()
