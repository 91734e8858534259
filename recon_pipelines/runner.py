"""Run one reconciliation end to end without Dagster (``recon run``, tests, the benchmark);
``run_tracked`` also folds it into the tracker (``recon run --track``).

The Dagster assets run the same steps one asset at a time (see dagster_defs/assets.py).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from recon_pipelines.engine import ComparisonError, ComparisonResult, Side, compare, side_columns, suggest
from recon_pipelines.snapshots import direct_side, snapshot_columns, snapshot_side, write_snapshot
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect

if TYPE_CHECKING:  # the tracker (SQLAlchemy, Alembic) is loaded only by runs that track
    from recon_pipelines.pipeline import MatchDecisions
    from recon_pipelines.tracker import RunOutcome, Tracker


log = logging.getLogger(__name__)


def open_side(spec: ReconciliationSpec, side: str, workdir: Path,
              warn: Callable[[str], None] | None = None) -> Side:
    """Files are scanned in place; SQL and HTTP sources are streamed to a Parquet snapshot first.
    The side's expectations are checked here: a failed ``error`` one raises ExpectationFailed."""
    from recon_pipelines import expectations

    source = spec.source_a if side == "a" else spec.source_b
    direct = direct_side(spec, side)
    if direct is not None:
        if source.expect:
            outcomes = expectations.evaluate_scan(spec, side, direct.scan, snapshot_columns(spec, side))
            expectations.enforce(spec, side, outcomes, warn or log.warning)
        return direct
    columns = side_columns(spec, side)
    # With expectations the snapshot also carries __updated_at (for freshness); the engine ignores it.
    info = write_snapshot(source, snapshot_columns(spec, side) if source.expect else columns,
                          workdir / f"snapshot_{side}.parquet")
    if source.expect:
        expectations.enforce(spec, side, expectations.evaluate_snapshot(spec, side, info.path), warn or log.warning)
    return snapshot_side(info.path, list(columns), info.label)


def open_mapping(spec: ReconciliationSpec, workdir: Path) -> Side | None:
    mapping = spec.key_mapping
    if mapping is None:
        return None
    info = write_snapshot(mapping.source, {"a": mapping.a, "b": mapping.b}, workdir / "key_mapping.parquet")
    return snapshot_side(info.path, ["a", "b"], info.label)


def run_reconciliation(spec: ReconciliationSpec, workdir: Path | None = None,
                       warn: Callable[[str], None] | None = None,
                       decided: MatchDecisions | None = None, engine: str | None = None,
                       spark_master: str | None = None) -> ComparisonResult:
    """``warn`` receives one line per failed ``warn`` expectation (default: the log); ``decided``
    holds the suggested pairs an operator confirmed or rejected (spec ``suggest:``). ``engine``
    (``duckdb`` or ``spark``) overrides the spec's ``engine.type``; ``spark_master`` its master."""
    if (engine or spec.engine.type) == "spark":
        return _run_on_spark(spec, warn, spark_master)
    expect = bool(spec.source_a.expect or spec.source_b.expect)
    if spec.pushdown and not expect and spec.sample is None:  # SQL tables (PostgreSQL, MariaDB): compare in the database, fetch only what differs
        from recon_pipelines.engine.pushdown import compare_in_database

        result = compare_in_database(spec)
        if result is not None:
            return result
    with tempfile.TemporaryDirectory(prefix="recon-") as tmp:
        work = Path(workdir or tmp)
        side_a, side_b = open_side(spec, "a", work, warn), open_side(spec, "b", work, warn)
        mapping = open_mapping(spec, work)
        confirmed, rejected = (decided.confirmed, decided.rejected) if decided else ((), ())
        side_b = suggest.rekeyed(spec, side_b, confirmed)
        try:
            if spec.sample is None:
                return with_suggestions(spec, compare(spec, side_a, side_b, mapping), side_a, side_b, confirmed + rejected)
            from recon_pipelines import sampling

            side_a, side_b, keys = sampling.sample_sides(spec, side_a, side_b)
            result = compare(spec, side_a, side_b, mapping)
            result.sample = sampling.sample_summary(spec, keys, set(result.discrepancies.column("key").to_pylist()))
            return result
        except duckdb.Error as exc:
            raise ComparisonError(_blame(exc, [side_a, side_b, mapping])) from None


def with_suggestions(spec: ReconciliationSpec, result: ComparisonResult, side_a: Side, side_b: Side,
                     decided: tuple[tuple[str, str], ...]) -> ComparisonResult:
    """Add the suggested matches among the records left unmatched (spec ``suggest:``)."""
    if spec.suggest is None:
        return result
    found = suggest.suggest(spec, side_a, side_b, *suggest.unmatched_keys(result.discrepancies), decided=decided)
    result.discrepancies = pa.concat_tables([result.discrepancies, suggest.as_discrepancies(spec, found)])
    result.suggestions = found.summary()
    return result


def check_engine(spec: ReconciliationSpec) -> None:
    """Raise ComparisonError naming why the spec's engine cannot run it (before any source is read)."""
    if spec.engine.type != "spark":
        return
    from recon_pipelines.engine.strategies.spark import SparkPairing

    reason = SparkPairing().refuses(spec)
    if reason:
        raise ComparisonError(f"{spec.name}: the spark engine cannot run this spec: {reason}")


def _run_on_spark(spec: ReconciliationSpec, warn, master: str | None) -> ComparisonResult:
    """Pair on Spark, judge locally (engine/strategies/spark.py); refused specs name the reason."""
    from recon_pipelines.engine import evaluate
    from recon_pipelines.engine.strategies.spark import SparkPairing, resolve_master

    strategy = SparkPairing(resolve_master(master, spec.engine.master))
    check_engine(spec)
    with tempfile.TemporaryDirectory(prefix="recon-") as tmp:
        sides = (open_side(spec, "a", Path(tmp), warn), open_side(spec, "b", Path(tmp), warn))
        con = duckdb_connect()
        pairing = strategy.pair(spec, con, sides)
        table, fields = evaluate(con, spec, "__pairs")
    log.info("%s: %s; rows moved to the driver: %s", spec.name, pairing.reason, pairing.rows_moved)
    return ComparisonResult(table, pairing.stats, fields)


def _blame(exc: duckdb.Error, sides: list[Side | None]) -> str:
    """DuckDB does not always say which input failed (a corrupt Parquet page reads as "don't
    know what type"): read each side whole, once the comparison has failed, to name it."""
    with duckdb_connect() as con:
        for side in sides:
            if side is None:
                continue
            try:
                con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {side.scan}").fetchall()
            except duckdb.Error as side_exc:
                return f"{side.label}: cannot read: {side_exc}"
    return str(exc)


@dataclass
class TrackedRun:
    """``recon run --track``: what the run found, and what the tracker made of it."""

    summary: dict
    discrepancies: pa.Table
    outcome: RunOutcome


def run_tracked(spec: ReconciliationSpec, tracker: Tracker, run_id: str | None = None,
                warn: Callable[[str], None] | None = None, engine: str | None = None,
                spark_master: str | None = None) -> TrackedRun:
    """The Dagster run's steps in this process (a full scope), then the tracker, with the export
    guard and the notification outbox, as a deep scan would update it."""
    from recon_pipelines import expectations, pipeline
    from recon_pipelines.remediation.notifications import notification_writer

    scope = pipeline.RunScope.full()
    run_id = run_id or f"cli-{uuid.uuid4().hex[:12]}:{scope.label}"
    with tempfile.TemporaryDirectory(prefix="recon-") as tmp:  # a held run's discrepancies stay in the tracker
        folder = pipeline.RunFolder.of(tmp, spec, scope)
        check_schema_drift(spec, tracker, run_id, warn or log.warning)
        for side in "ab":
            missing = pipeline.take_snapshot(spec, side, scope, folder)["missing"]
            if missing:
                raise ComparisonError(f"{spec.name}: side {side.upper()} lacks column(s) {', '.join(missing)}")
            outcomes = expectations.evaluate_snapshot(spec, side, folder[f"snapshot_{side}"])
            expectations.enforce(spec, side, outcomes, warn or log.warning)
        decided = pipeline.MatchDecisions.of(tracker, spec)
        strategy = None
        if (engine or spec.engine.type) == "spark":
            from recon_pipelines.engine.strategies.spark import SparkPairing, resolve_master

            strategy = SparkPairing(resolve_master(spark_master, spec.engine.master))
        stats = pipeline.match_pairs(spec, folder, confirmed=decided.confirmed, strategy=strategy)
        found = pipeline.find_discrepancies(spec, folder, decided=decided.confirmed + decided.rejected,
                                            confirmed=decided.confirmed)
        outcome = pipeline.update_tracker(spec, folder, scope, tracker, run_id, on_outcome=notification_writer(spec))
    summary = {**stats, "discrepancies": found.table.num_rows,
               "fields": {name: asdict(field_stats) for name, field_stats in found.fields.items()},
               **({"sample": found.sample} if found.sample is not None else {}),
               **({"suggestions": found.suggestions} if found.suggestions is not None else {})}
    return TrackedRun(summary, found.table, outcome)


# --------------------------------------------------------------------------- schema drift (schema_diff.py)


class SchemaChanged(ComparisonError):
    """``expect.schema_change: error`` and a side's columns changed since the last run."""


def check_schema_drift(spec: ReconciliationSpec, tracker: Tracker, run_id: str, warn: Callable[[str], None]) -> None:
    """Each side against the schema the tracker recorded at its last run (then recorded anew): one
    line per change; with ``expect.schema_change: error`` a change stops the run."""
    from recon_pipelines import schema_diff

    drifts = [d for d in (schema_diff.observe(spec, schema_diff.read_side(spec, side), tracker, run_id) for side in "ab")
              if d is not None]
    changes = schema_diff.schema_lines(spec, drifts, [])
    if changes and spec.expect.schema_change == "error":
        raise SchemaChanged("; ".join(changes) + " (expect.schema_change: error; the new schema is now the baseline)")
    for line in changes:
        warn(line)
