"""Evaluate a side's ``expect:`` list over its records, before the comparison.

One DuckDB query per side counts the failing records of every expectation (plus the row count
and the newest update time); a second, only for the expectations that failed, picks a few
failing keys. The input is a relation under the spec's names: a snapshot Parquet file (the
Dagster assets, ``recon run`` for SQL and HTTP sources) or a file scanned in place.
No Dagster here: ``dagster_defs`` turns the outcomes into asset checks, ``pipeline.run`` into a stop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from recon_pipelines.engine import ComparisonError
from recon_pipelines.instants import instant_sql
from recon_pipelines.readonly_sql import check_filter
from recon_pipelines.snapshots import UPDATED_AT
from recon_pipelines.spec.expectations import (
    AcceptedValues, Freshness, NotNull, Range, Regex, RowCount, SqlExpectation, Unique,
)
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal

FAILING_KEYS_SHOWN = 5


class ExpectationFailed(ComparisonError):
    """An ``error`` expectation failed: the comparison does not run; the message names the side."""


@dataclass(frozen=True)
class Outcome:
    expectation: object  # one of spec.expectations' models
    passed: bool
    failing_rows: int
    failing_keys: tuple[str, ...]
    detail: str

    @property
    def check_name(self) -> str:
        return self.expectation.check_name

    @property
    def severity(self) -> str:
        return self.expectation.severity

    def metadata(self) -> dict:
        return {"failing_rows": self.failing_rows, "failing_keys": ", ".join(self.failing_keys) or "none",
                "detail": self.detail, "severity": self.severity}


def evaluate_snapshot(spec: ReconciliationSpec, side: str, path: Path, now: datetime | None = None) -> list[Outcome]:
    return evaluate(spec, side, f"read_parquet({sql_literal(str(path))})", now)


def evaluate_scan(spec: ReconciliationSpec, side: str, scan: str, columns: Mapping[str, str],
                  now: datetime | None = None) -> list[Outcome]:
    """Over a source scanned in place: ``columns`` maps each spec name to its source column."""
    select = ", ".join(f"{quote_ident(src)} AS {quote_ident(name)}" for name, src in columns.items())
    return evaluate(spec, side, f"(SELECT {select} FROM {scan})", now)


def evaluate(spec: ReconciliationSpec, side: str, relation: str, now: datetime | None = None) -> list[Outcome]:
    source = spec.source_a if side == "a" else spec.source_b
    expectations = list(source.expect)
    if not expectations:
        return []
    now = now or datetime.now(timezone.utc)
    try:
        return _evaluate(spec, source, expectations, relation, now)
    except duckdb.Error as exc:  # e.g. a sql predicate casting text that is not a number
        system = spec.source_names[0 if side == "a" else 1]
        raise ExpectationFailed(f"{spec.name}: side {side.upper()} ({system}): expectations cannot be evaluated: "
                                f"{str(exc).strip().splitlines()[0]}") from None


def _evaluate(spec: ReconciliationSpec, source, expectations: list, relation: str, now: datetime) -> list[Outcome]:
    key = "concat_ws('|', " + ", ".join(f"CAST({quote_ident(k.name)} AS VARCHAR)" for k in spec.key) + ")"
    with duckdb_connect() as con:
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
        windows = [f"count(*) OVER (PARTITION BY {quote_ident(e.column)}) AS __dup_{i}"
                   for i, e in enumerate(expectations) if isinstance(e, Unique)]
        rows = f"(SELECT *{''.join(', ' + w for w in windows)} FROM {relation})"
        failing = {i: _failing_sql(e, i) for i, e in enumerate(expectations) if _failing_sql(e, i)}
        newest = (instant_sql(quote_ident(UPDATED_AT), types[UPDATED_AT], source.timezone)
                  if UPDATED_AT in types else "NULL::TIMESTAMPTZ")
        counts = ", ".join([f"count(*) FILTER (WHERE {sql})" for sql in failing.values()] or ["0"])
        total, newest_value, *failed = con.execute(f"SELECT count(*), max({newest}), {counts} FROM {rows}").fetchone()
        failed_by = dict(zip(failing, failed))
        outcomes = []
        for i, e in enumerate(expectations):
            if i in failing:
                n = failed_by[i]
                keys = tuple(r[0] for r in con.execute(
                    f"SELECT {key} FROM {rows} WHERE {failing[i]} LIMIT {FAILING_KEYS_SHOWN}").fetchall()) if n else ()
                outcomes.append(Outcome(e, n == 0, n, keys, f"{n:,} of {total:,} records fail"))
            elif isinstance(e, RowCount):
                ok = (e.min is None or total >= e.min) and (e.max is None or total <= e.max)
                bounds = " and ".join(b for b in (e.min is not None and f"at least {e.min:,}",
                                                  e.max is not None and f"at most {e.max:,}") if b)
                outcomes.append(Outcome(e, ok, 0, (), f"{total:,} records, expected {bounds}"))
            elif isinstance(e, Freshness):
                limit = now - timedelta(seconds=e.max_age)
                ok = newest_value is not None and newest_value >= limit
                shown = newest_value.astimezone(timezone.utc).isoformat() if newest_value else "none"
                outcomes.append(Outcome(e, ok, 0, (), f"newest updated_at {shown}, expected after {limit.isoformat()}"))
        return outcomes


def _failing_sql(e, index: int) -> str | None:
    """The condition under which one record fails ``e``; None for the whole-side kinds. A NULL
    passes every column kind but not_null (as in dbt); a ``sql`` predicate must be true."""
    if isinstance(e, (RowCount, Freshness)):
        return None
    if isinstance(e, SqlExpectation):
        return f"({check_filter(e.predicate, 'duckdb').sql(dialect='duckdb')}) IS NOT TRUE"
    c = quote_ident(e.column)
    if isinstance(e, NotNull):
        return f"{c} IS NULL"
    if isinstance(e, Unique):
        return f"{c} IS NOT NULL AND __dup_{index} > 1"
    if isinstance(e, AcceptedValues):
        values = ", ".join(sql_literal(str(v).lower() if isinstance(v, bool) else str(v)) for v in e.values)
        return f"{c} IS NOT NULL AND CAST({c} AS VARCHAR) NOT IN ({values})"
    if isinstance(e, Range):
        number = f"TRY_CAST({c} AS DOUBLE)"
        out = [f"{number} IS NULL"] + ([f"{number} < {e.min!r}"] if e.min is not None else []) + (
            [f"{number} > {e.max!r}"] if e.max is not None else [])
        return f"{c} IS NOT NULL AND ({' OR '.join(out)})"
    if isinstance(e, Regex):
        return f"{c} IS NOT NULL AND NOT regexp_matches(CAST({c} AS VARCHAR), {sql_literal(e.pattern)})"
    raise TypeError(f"unknown expectation {type(e).__name__}")


def enforce(spec: ReconciliationSpec, side: str, outcomes: list[Outcome], warn: Callable[[str], None]) -> None:
    """Raise ExpectationFailed on the first failed ``error`` expectation; ``warn`` each failed ``warn`` one."""
    for outcome in outcomes:
        if outcome.passed:
            continue
        line = describe(spec, side, outcome)
        if outcome.severity == "error":
            raise ExpectationFailed(line)
        warn(line)


def describe(spec: ReconciliationSpec, side: str, outcome: Outcome) -> str:
    system = spec.source_names[0 if side == "a" else 1]
    keys = f" (keys {', '.join(outcome.failing_keys)})" if outcome.failing_keys else ""
    return f"{spec.name}: side {side.upper()} ({system}): expectation {outcome.check_name} failed: {outcome.detail}{keys}"
