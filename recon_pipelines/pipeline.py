"""One reconciliation run, and its steps: the one sequence every entry point follows.

``run(spec, scope, storage, tracker)`` is the whole run in one process: ``recon run`` (with
and without ``--track``), the ``recheck_<name>`` op (keys, a date range, the weekly deep scan)
and the benchmarks call it. The asset graph runs the same steps one asset at a time (each
asset calls exactly one of them, see dagster_defs/assets.py):

    choose_strategy -> take_snapshot(a), take_snapshot(b) -> match_pairs -> find_discrepancies -> update_tracker

A run has a scope: everything (a deep scan), a time window (a daily partition or a date
range) or a list of keys (an on-demand or event-triggered re-check). Each step reads and
writes files in the run's folder, so a step can run in its own process.

Where the records are paired is a *pairing strategy* (engine/strategies/), chosen per run.
When it pairs where the data lives (two tables in PostgreSQL, say), a snapshot step copies
nothing: it records a reference, and ``match_pairs`` fetches only what may differ. A file
may also be scanned in place (``in_place``: the one-process run does). Otherwise the snapshot
is a Parquet copy of the side within the scope.

A window run reads the records modified in the window on either side, takes the union of
their keys, and reads the counterparts of those keys from the other side, so a record
modified on one side only is still compared with the other side's current version. Window and
keys scopes always pair locally: their snapshots are small.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recon_pipelines.engine import ComparisonError, ComparisonResult, MatchStats, Side, evaluate, side_columns, suggest
from recon_pipelines.engine import strategies
from recon_pipelines.engine.compare import combine_discrepancies
from recon_pipelines.engine.strategies import Choice, Pairing, Sides, reads_sources
from recon_pipelines.instants import instant_sql
from recon_pipelines.snapshots import (
    UPDATED_AT,
    connector_for,
    partial_path,
    snapshot_columns,
    snapshot_side,
    write_snapshot,
)
from recon_pipelines.sources.base import RecordFilter
from recon_pipelines.sources.files import FileConnector
from recon_pipelines.spec.models import FileSource
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal
from recon_pipelines.tracker import Scope, Tracker
from recon_pipelines.tracker.guard import SAMPLE_SIZE, Guard, Observation, SideSample, baseline_sample
from recon_pipelines.tracker.store import RunOutcome

# DuckDB's hash() is about ten times faster than md5() but may change between DuckDB versions:
# samples made by another version are not compared (the row counts still are).
KEY_HASH = f"duckdb-{duckdb.__version__}-hash"
_HASH_MAX = 2**64 - 1  # hash() is a UBIGINT

log = logging.getLogger(__name__)

MATCH_STATS_KEY = "recon_match_stats"
TRACKER_RUN_ID_MAX = 64  # recon_runs.run_id is VARCHAR(64)
FILES = {
    "snapshot_a": "snapshot_a.parquet",
    "snapshot_b": "snapshot_b.parquet",
    "scope_keys": "scope_keys.parquet",
    "pairs": "matched_pairs.parquet",
    "discrepancies": "discrepancies.parquet",
    "in_flight": "in_flight.parquet",
    "sample_keys": "sample_keys.parquet",  # a sampled run's keys: the only ones it may resolve
    "groups": "group_discrepancies.parquet",  # what the match: group and window rules found
    # Instead of a Parquet snapshot: where the side is read (a file in place, or at its source).
    "reference_a": "snapshot_a.ref.json",
    "reference_b": "snapshot_b.ref.json",
}


@dataclass(frozen=True)
class RunScope:
    """What one run compares; ``label`` names its folder and its tracker scope."""

    label: str = "full"
    window: tuple[datetime, datetime] | None = None
    keys: tuple[str, ...] | None = None

    @classmethod
    def full(cls) -> "RunScope":
        return cls()

    @classmethod
    def of_window(cls, start: datetime, end: datetime, label: str | None = None) -> "RunScope":
        return cls(label or f"{start:%Y-%m-%dT%H%M}..{end:%Y-%m-%dT%H%M}", (_utc(start), _utc(end)))

    @classmethod
    def of_keys(cls, keys) -> "RunScope":
        keys = tuple(dict.fromkeys(str(k) for k in keys))
        digest = hashlib.md5("\x1f".join(keys).encode()).hexdigest()[:10]
        return cls(f"keys-{digest}", keys=keys)

    @property
    def is_full(self) -> bool:
        return self.window is None and self.keys is None


@dataclass(frozen=True)
class MatchDecisions:
    """The suggested pairs an operator decided (tracker/matches.py), as a run uses them."""

    confirmed: tuple[tuple[str, str], ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, tracker: "Tracker | None", spec: ReconciliationSpec) -> "MatchDecisions":
        if tracker is None or spec.suggest is None:
            return cls()
        from recon_pipelines.tracker.matches import decided_pairs

        return cls(tuple(decided_pairs(tracker, spec.name, "confirmed")), tuple(decided_pairs(tracker, spec.name, "rejected")))


@dataclass(frozen=True)
class RunFolder:
    """Where one (reconciliation, scope) run keeps its files."""

    root: Path

    @classmethod
    def of(cls, storage_dir: str | Path, spec: ReconciliationSpec, scope: RunScope) -> "RunFolder":
        root = Path(storage_dir) / spec.name / scope.label
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    def __getitem__(self, name: str) -> Path:
        return self.root / FILES[name]


# --------------------------------------------------------------------------- 0. the strategy


def choose_strategy(spec: ReconciliationSpec, scope: RunScope, explicit=None) -> Choice:
    """Where this run pairs the records (logged with the reason; see engine/strategies)."""
    return strategies.choose(spec, explicit, full_scope=scope.is_full)


# --------------------------------------------------------------------------- 1. snapshots


def take_snapshot(spec: ReconciliationSpec, side: str, scope: RunScope, folder: RunFolder,
                  days: Sequence[tuple[RunScope, RunFolder]] = (), *, choice: Choice | None = None,
                  in_place: bool = False) -> dict:
    """Read one side within the scope into ``snapshot_<side>.parquet``; returns metadata.

    When ``choice`` pairs where the data lives, nothing is read: a reference is recorded
    (``at_source``). With ``in_place`` a file source of a full scope is referenced and scanned
    in place rather than copied. ``days`` splits a window into the days it spans (a single-run
    backfill of daily partitions): the keys are then read day by day, and each day's folder gets
    the snapshot a run of that day alone would take (cut from this one, without reading the
    records again), under ``"days"``."""
    source = spec.source_a if side == "a" else spec.source_b
    columns = snapshot_columns(spec, side)
    key_column = columns[spec.key[0].name]
    path = folder[f"snapshot_{side}"]
    if scope.is_full and choice is not None and reads_sources(choice.strategy):
        return _reference(folder, side, source, columns, {"at_source": choice.name, "reason": choice.reason})
    if scope.is_full and in_place and isinstance(source, FileSource):
        return _reference(folder, side, source, columns, {"in_place": True})
    folder[f"reference_{side}"].unlink(missing_ok=True)
    if scope.is_full:
        info = write_snapshot(source, columns, path, skip_missing=True)
        return {"rows": info.rows, "source": info.label, "missing": info.missing}

    if scope.keys is not None:
        keys, own_window = set(scope.keys), set()
        info = write_snapshot(source, columns, path, _by_keys(key_column, keys), skip_missing=True)
    else:
        other = "b" if side == "a" else "a"
        # Key-only reads per day (the very filter a day's own run uses), so each day's scope is exact.
        by_day = {day.label: (window_keys(spec, side, day), window_keys(spec, other, day)) for day, _ in days}
        if by_day:
            own_window = set().union(*(own for own, _ in by_day.values()))
            keys = own_window.union(*(theirs for _, theirs in by_day.values()))
        else:
            own_window = window_keys(spec, side, scope)
            keys = own_window | window_keys(spec, other, scope)
        modified = write_snapshot(source, columns, path.with_name(f"window_{side}.parquet"),
                                  _by_window(source, scope), skip_missing=True)
        counterparts = write_snapshot(source, columns, path.with_name(f"counterparts_{side}.parquet"),
                                      _by_keys(key_column, keys - own_window), skip_missing=True)
        _concat([modified.path, counterparts.path], path)
        info = modified
    write_keys(folder["scope_keys"], keys)
    rows = pq.read_metadata(path).num_rows
    result = {"rows": rows, "source": info.label, "missing": info.missing, "scope_keys": len(keys),
              "modified_in_window": len(own_window)}
    if scope.window is not None and days:
        result["days"] = {
            day.label: {**_cut_day(spec, side, path, day, day_folder, *by_day[day.label]),
                        "source": info.label, "missing": info.missing}
            for day, day_folder in days
        }
    return result


def _reference(folder: RunFolder, side: str, source, columns: dict[str, str], how: dict) -> dict:
    """Record where the side is read instead of copying it. A file's schema is read (for the
    columns it lacks); a side paired at its source is checked by its strategy, which reads the
    table's definition anyway."""
    with connector_for(source) as connector:
        label = connector.label
        if isinstance(connector, FileConnector):
            available, scan = set(connector.schema().names), connector.scan_sql()
        else:
            available, scan = set(columns.values()), None
    missing = tuple(name for name, src in columns.items() if src not in available)
    present = {name: src for name, src in columns.items() if name not in missing}
    reference = {**how, "source": label, "columns": present, **({"scan": scan} if scan else {})}
    partial = partial_path(folder[f"reference_{side}"])
    partial.write_text(json.dumps(reference))
    partial.replace(folder[f"reference_{side}"])
    folder[f"snapshot_{side}"].unlink(missing_ok=True)
    result = {"rows": None, "source": label, "missing": missing}
    if "at_source" in how:
        result.update(strategy=how["at_source"], strategy_reason=how["reason"], rows_moved=0)
    return result


def read_reference(folder: RunFolder, side: str) -> dict | None:
    path = folder[f"reference_{side}"]
    return json.loads(path.read_text()) if path.exists() else None


def snapshot_of(spec: ReconciliationSpec, folder: RunFolder, side: str) -> Side:
    """The side's snapshot as the engine reads it, under the spec's names (``__updated_at``
    included when the source has one): the Parquet copy, or the file it references."""
    reference = read_reference(folder, side)
    names = list(side_columns(spec, side))
    if reference is None:
        return snapshot_side(folder[f"snapshot_{side}"], names, f"snapshot_{side}")
    if "scan" not in reference:
        raise ComparisonError(f"{spec.name}: side {side.upper()} is paired at its source ({reference.get('at_source')}); "
                              "it has no local snapshot")
    select = ", ".join(f"{quote_ident(src)} AS {quote_ident(name)}" for name, src in reference["columns"].items())
    return Side(f"(SELECT {select} FROM {reference['scan']})", {n: n for n in names}, reference["source"])


def source_schema(spec: ReconciliationSpec, side: str) -> pa.Schema:
    """The side's columns under the spec's names with the types a snapshot would hold, read from
    the source's schema alone (no records)."""
    source = spec.source_a if side == "a" else spec.source_b
    with connector_for(source) as connector:
        schema = connector.schema()
    return pa.schema([pa.field(name, schema.field(src).type) for name, src in snapshot_columns(spec, side).items()
                      if src in schema.names])


def at_source(folder: RunFolder) -> str | None:
    """The strategy both snapshot steps left the pairing to, if they did (else None: local)."""
    names = {(read_reference(folder, side) or {}).get("at_source") for side in "ab"}
    return names.pop() if len(names) == 1 else None


def _cut_day(spec: ReconciliationSpec, side: str, path: Path, day: RunScope, day_folder: RunFolder,
             own: set[str], theirs: set[str]) -> dict:
    """The day's snapshot, cut from the range's: the records whose key the day compares, and
    the keyless records modified that day (reported as invalid keys by the day's own run)."""
    source = spec.source_a if side == "a" else spec.source_b
    key = quote_ident(spec.key[0].name)
    keys = own | theirs
    start, end = day.window
    scan = f"read_parquet({sql_literal(str(path))})"
    with duckdb_connect() as con:
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        con.register("day_keys", pa.table({"key": pa.array(sorted(keys), pa.string())}))
        keyless = "FALSE"
        if UPDATED_AT in types:
            instant = instant_sql(quote_ident(UPDATED_AT), types[UPDATED_AT], source.timezone)
            keyless = (f"{key} IS NULL AND {instant} >= {sql_literal(start.isoformat())}::TIMESTAMPTZ "
                       f"AND {instant} < {sql_literal(end.isoformat())}::TIMESTAMPTZ")
        out = day_folder[f"snapshot_{side}"]
        partial = out.with_suffix(".partial")
        con.execute(f"COPY (SELECT * FROM {scan} WHERE CAST({key} AS VARCHAR) IN (SELECT key FROM day_keys) "
                    f"OR ({keyless})) TO {sql_literal(str(partial))} (FORMAT parquet)")
    partial.replace(out)
    write_keys(day_folder["scope_keys"], keys)
    return {"rows": pq.read_metadata(out).num_rows, "scope_keys": len(keys), "modified_in_window": len(own)}


def window_keys(spec: ReconciliationSpec, side: str, scope: RunScope) -> set[str]:
    """Keys of the records of ``side`` modified within the scope's window (keys only are read)."""
    source = spec.source_a if side == "a" else spec.source_b
    key_column = getattr(spec.key[0], side)
    keys: set[str] = set()
    with connector_for(source) as connector:
        for batch in connector.batches([key_column], _by_window(source, scope)):
            keys.update(str(k) for k in batch.column(0).to_pylist() if k is not None)
    return keys


def _by_window(source, scope: RunScope) -> RecordFilter:
    start, end = scope.window
    return RecordFilter(updated_column=source.updated_at, updated_timezone=source.timezone,
                        modified_from=start, modified_to=end)


def _by_keys(key_column: str, keys: set[str]) -> RecordFilter:
    return RecordFilter(key_column=key_column, keys=tuple(sorted(keys)))


def _concat(parts: list[Path], out: Path) -> None:
    files = ", ".join(sql_literal(str(p)) for p in parts)
    partial = partial_path(out)
    with duckdb_connect() as con:
        con.execute(f"COPY (SELECT * FROM read_parquet([{files}], union_by_name = true)) "
                    f"TO {sql_literal(str(partial))} (FORMAT parquet)")
    partial.replace(out)
    for part in parts:
        part.unlink(missing_ok=True)


def write_keys(path: Path, keys) -> None:
    # Both snapshot steps write the scope's keys (the same keys), possibly at once: replace atomically.
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    pq.write_table(pa.table({"key": pa.array(sorted(keys), pa.string())}), partial)
    partial.replace(path)


def read_keys(path: Path) -> list[str]:
    return pq.read_table(path).column("key").to_pylist() if path.exists() else []


# --------------------------------------------------------------------------- 2. matched pairs


def match_pairs(spec: ReconciliationSpec, folder: RunFolder, memory_limit: str | None = None,
                spill_dir: str | None = None, confirmed: Sequence[tuple[str, str]] = (), *,
                choice: Choice | None = None) -> dict:
    """Pair the sides by key with the run's strategy (``choice``; by default the one the
    snapshot steps recorded, else local); compare summaries first when the spec asks. Returns
    metadata (MatchStats, the strategy, why, rows moved, summaries, group rules); the candidate
    pairs go to ``matched_pairs.parquet`` with that metadata inside. ``confirmed``: suggested
    pairs an operator confirmed (their B key is read as their A key; local pairing only)."""
    con = duckdb_connect(memory_limit, spill_dir)
    folder["sample_keys"].unlink(missing_ok=True)
    if choice is None:
        remote = at_source(folder)
        choice = (Choice(strategies.strategy(remote), read_reference(folder, "a")["reason"], {}) if remote
                  else Choice(strategies.strategy(strategies.LOCAL), "compared locally in DuckDB", {}))
    summaries, skip = {}, False
    if reads_sources(choice.strategy):
        pairing = choice.strategy.pair(spec, con, None)
    else:
        pairing, summaries, skip = _pair_locally(spec, folder, con, choice, confirmed)
    pairing = replace(pairing, reason=choice.reason)
    log.info("%s: paired with %s (%s): %s rows of A and %s of B moved", spec.name, pairing.strategy, pairing.reason,
             f"{pairing.rows_moved.get('a', 0):,}", f"{pairing.rows_moved.get('b', 0):,}")
    metadata = {**asdict(pairing.stats), **summaries, "summary_skip": skip, **pairing_metadata(pairing),
                **_match_groups(con, spec, folder, skip)}
    partial = partial_path(folder["pairs"])
    con.execute(f"COPY __pairs TO {sql_literal(str(partial))} (FORMAT parquet, "
                f"KV_METADATA {{{MATCH_STATS_KEY}: {sql_literal(json.dumps(metadata))}}})")
    partial.replace(folder["pairs"])
    return metadata


def snapshot_sides(spec: ReconciliationSpec, folder: RunFolder) -> list:
    return [snapshot_of(spec, folder, s) for s in "ab"]


def _match_groups(con, spec: ReconciliationSpec, folder: RunFolder, skip: bool) -> dict:
    """The spec's group and window rules, on the records key pairing left on one side (before
    ``__pairs`` is written: they take those rows over); their discrepancies go to their own file."""
    folder["groups"].unlink(missing_ok=True)
    if not spec.aggregate_rules or skip:
        return {}
    from recon_pipelines.engine.groups import match_groups

    table, stats = match_groups(con, spec)
    partial = partial_path(folder["groups"])
    pq.write_table(table, partial)
    partial.replace(folder["groups"])
    return {"groups": asdict(stats)}


def pairing_metadata(pairing: Pairing) -> dict:
    """The strategy's figures as metadata: which, why, rows moved per side, and the push-down
    detail (phases, buckets) when there is one."""
    out = {"strategy": pairing.strategy, "strategy_reason": pairing.reason,
           "rows_moved_a": int(pairing.rows_moved.get("a", 0)), "rows_moved_b": int(pairing.rows_moved.get("b", 0)),
           # a strategy's own figures beside the sides' (Spark: the candidate keys sent to the driver)
           **{f"rows_moved_{what}": int(n) for what, n in pairing.rows_moved.items() if what not in ("a", "b")}}
    detail = getattr(pairing, "pushdown", None)
    if detail is not None:
        out["pushdown"] = asdict(detail)
    return out


def _pair_locally(spec: ReconciliationSpec, folder: RunFolder, con, choice: Choice,
                  confirmed: Sequence[tuple[str, str]] = ()) -> tuple[Pairing, dict, bool]:
    """The local strategy on the snapshots: confirmed suggestions rekey B, sampling first,
    summaries, then the pairing."""
    whole = snapshot_sides(spec, folder)
    sides = [whole[0], suggest.rekeyed(spec, whole[1], confirmed)]
    if spec.sample is not None:  # the same keys of both sides, before anything is paired
        from recon_pipelines import sampling

        *sides, keys = sampling.sample_sides(spec, *sides)
        write_keys(folder["sample_keys"], keys)
    # Summaries cost a full hashing pass of each side: only when the spec asks for them.
    summaries = _summaries(con, spec, whole) if wants_summaries(spec) else {}
    skip = bool(spec.incremental and spec.incremental.skip_when_summaries_match and summaries["summaries_match"])
    if skip:  # identical by counts, sums and content hashes: nothing to pair
        stats = MatchStats(rows_a=summaries["count_a"], rows_b=summaries["count_b"],
                           matched=summaries["count_a"], identical=summaries["count_a"])
        con.execute(f"CREATE OR REPLACE TEMP TABLE __pairs AS SELECT * FROM ({_empty_pairs(con, spec, sides)})")
        return Pairing(stats, choice.name, choice.reason, {"a": 0, "b": 0}), summaries, skip

    def mapping() -> Side | None:
        if spec.key_mapping is None:
            return None
        info = write_snapshot(spec.key_mapping.source, {"a": spec.key_mapping.a, "b": spec.key_mapping.b},
                              folder.root / "key_mapping.parquet")
        return snapshot_side(info.path, ["a", "b"], info.label)

    opened = Sides(lambda s: sides[0] if s == "a" else sides[1], mapping)
    try:
        pairing = choice.strategy.pair(spec, con, opened)
    except duckdb.Error as exc:
        raise ComparisonError(_blame(exc, opened.opened)) from None
    return pairing, summaries, skip


def _blame(exc: duckdb.Error, sides: list[Side]) -> str:
    """DuckDB does not always say which input failed (a corrupt Parquet page reads as "don't
    know what type"): read each side whole, once the comparison has failed, to name it."""
    with duckdb_connect() as con:
        for side in sides:
            try:
                con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {side.scan}").fetchall()
            except duckdb.Error as side_exc:
                return f"{side.label}: cannot read: {side_exc}"
    return str(exc)


def wants_summaries(spec: ReconciliationSpec) -> bool:
    inc = spec.incremental
    return bool(inc and (inc.summary_fields or inc.skip_when_summaries_match))


def _summaries(con, spec: ReconciliationSpec, sides: list[Side]) -> dict:
    """Counts, sums of the chosen fields and an order-independent content hash per side."""
    fields = spec.incremental.summary_fields if spec.incremental else []
    names = [k.name for k in spec.key] + [f.name for f in spec.fields]
    row_hash = f"hash({', '.join(f'CAST({quote_ident(n)} AS VARCHAR)' for n in names)})"
    out: dict = {}
    exact_sums: dict = {}
    for side, relation in zip("ab", sides):
        # Exact sums (DECIMAL, to 9 places): a DOUBLE sum depends on the order rows are read in,
        # so the same records could show different sums in a range run and a day run alone.
        sums = "".join(f", sum(TRY_CAST({quote_ident(f)} AS DECIMAL(38, 9)))" for f in fields)
        row = con.execute(f"SELECT count(*), sum({row_hash})::VARCHAR{sums} "
                          f"FROM {relation.scan}").fetchone()
        out[f"count_{side}"], out[f"content_hash_{side}"] = int(row[0]), row[1] or "0"
        for name, value in zip(fields, row[2:]):
            exact_sums[f"{name}_{side}"] = value or 0
            out[f"sum_{name}_{side}"] = float(value or 0)
    same_sums = all(exact_sums[f"{f}_a"] == exact_sums[f"{f}_b"] for f in fields)
    out["summaries_match"] = out["count_a"] == out["count_b"] and same_sums and out["content_hash_a"] == out["content_hash_b"]
    return out


def _empty_pairs(con, spec: ReconciliationSpec, sides) -> str:
    """A zero-row ``__pairs`` with the columns evaluate() expects."""
    columns = ["'pair' AS __status", "'' AS __key", "0::BIGINT AS __count"]
    for side, prefix in zip(sides, ("a__", "b__")):
        types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {side.scan}").fetchall()}
        columns += [f"CAST(NULL AS {types[f.name]}) AS {quote_ident(prefix + f.name)}" for f in spec.fields]
    return f"SELECT {', '.join(columns)} WHERE FALSE"


def read_match_stats(path: Path) -> dict:
    return json.loads((pq.read_metadata(path).metadata or {})[MATCH_STATS_KEY.encode()])


# --------------------------------------------------------------------------- 3. discrepancies


@dataclass
class Found:
    table: pa.Table
    fields: dict
    in_flight: list[str]
    sample: dict | None = None  # a sampled run: keys sampled, mismatch rate and its 95% interval
    suggestions: dict | None = None  # spec suggest: how many pairs were scored and suggested


def find_discrepancies(spec: ReconciliationSpec, folder: RunFolder, as_of: datetime | None = None,
                       memory_limit: str | None = None, spill_dir: str | None = None,
                       decided: Sequence[tuple[str, str]] = (), confirmed: Sequence[tuple[str, str]] = ()) -> Found:
    """Apply the field rules to the candidate pairs, then hold back what is still in flight:
    a key modified on either side less than ``propagation_lag`` before ``as_of`` is not judged.
    With ``suggest:``, the records left unmatched are scored (``decided`` pairs are not suggested again)."""
    con = duckdb_connect(memory_limit, spill_dir)
    table, fields = evaluate(con, spec, f"read_parquet({sql_literal(str(folder['pairs']))})")
    if folder["groups"].exists():  # the match: group and window rules' findings (match_pairs)
        table = combine_discrepancies(table, pq.read_table(folder["groups"]))
    in_flight = in_flight_keys(spec, folder, as_of or datetime.now(timezone.utc))
    if in_flight:
        table = table.filter(pc.invert(pc.is_in(table.column("key"), pa.array(in_flight, pa.string()))))
    write_keys(folder["in_flight"], in_flight)
    suggestions = None
    if spec.suggest is not None:  # among the records left unmatched and not in flight
        side_a, side_b = snapshot_sides(spec, folder)
        scored = suggest.suggest(spec, side_a, suggest.rekeyed(spec, side_b, confirmed), *suggest.unmatched_keys(table),
                                 decided=decided)
        table, suggestions = pa.concat_tables([table, suggest.as_discrepancies(spec, scored)]), scored.summary()
    partial = partial_path(folder["discrepancies"])
    pq.write_table(table, partial)
    partial.replace(folder["discrepancies"])
    sample = None
    if spec.sample is not None:
        from recon_pipelines.sampling import sample_summary

        judged = sorted(set(read_keys(folder["sample_keys"])) - set(in_flight))
        sample = sample_summary(spec, judged, set(table.column("key").to_pylist()))
    return Found(table, fields, in_flight, sample, suggestions)


def in_flight_keys(spec: ReconciliationSpec, folder: RunFolder, as_of: datetime) -> list[str]:
    if not spec.propagation_lag:
        return []
    cutoff = _utc(as_of) - timedelta(seconds=spec.propagation_lag)
    key = quote_ident(spec.key[0].name) if len(spec.key) == 1 else None
    keys: set[str] = set()
    with duckdb_connect() as con:
        for side, source in (("a", spec.source_a), ("b", spec.source_b)):
            scan = snapshot_of(spec, folder, side).scan
            types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
            if UPDATED_AT not in types or key is None:
                continue
            instant = instant_sql(quote_ident(UPDATED_AT), types[UPDATED_AT], source.timezone)
            rows = con.execute(f"SELECT DISTINCT CAST({key} AS VARCHAR) FROM {scan} "
                               f"WHERE {instant} > {sql_literal(cutoff.isoformat())}::TIMESTAMPTZ").fetchall()
            keys.update(r[0] for r in rows if r[0] is not None)
    return sorted(keys)


# --------------------------------------------------------------------------- 4. tracker


def update_tracker(spec: ReconciliationSpec, folder: RunFolder, scope: RunScope, tracker: Tracker, run_id: str,
                   on_outcome: Callable | None = None, started_at: datetime | None = None):
    """Fold the run's discrepancies into the tracker, resolving only what the run compared;
    a full run whose side is empty or shrank too far is held instead (``outcome.held``)."""
    found = pq.read_table(folder["discrepancies"])
    in_flight = read_keys(folder["in_flight"])
    summary = read_match_stats(folder["pairs"])
    sampled = spec.sample is not None
    if scope.is_full and not sampled:
        tracker_scope = Scope.full(exclude=in_flight, label=scope.label)
    else:
        # A sampled run judged its sample only: a discrepancy whose key it did not draw stays open.
        judged = set(read_keys(folder["sample_keys"])) if sampled else set()
        if not scope.is_full:
            judged = (judged & set(read_keys(folder["scope_keys"]))) if sampled else set(read_keys(folder["scope_keys"]))
        tracker_scope = Scope.of_keys(sorted(judged - set(in_flight)), label=scope.label + ("-sample" if sampled else ""))
    return tracker.apply_run(
        spec.name, run_id=tracker_run_id(spec.name, run_id), found=found, scope=tracker_scope, summary=summary,
        started_at=started_at, escalation=spec.escalation, on_outcome=on_outcome,
        # A sample's row counts say nothing about the sides' sizes: no export guard.
        guard=None if sampled else export_guard(spec, folder, scope, tracker, summary),
    )


def export_guard(spec: ReconciliationSpec, folder: RunFolder, scope: RunScope, tracker: Tracker,
                 summary: dict) -> Guard | None:
    """Full runs only: a window or a list of keys varies in size by nature (tracker/guard.py)."""
    if not scope.is_full:
        return None
    baseline = tracker.baseline(spec.name, scope.label)
    remote = at_source(folder)
    if remote:  # paired at the source: no local key column to sample; the row counts are still guarded
        observed = Observation(f"at-source-{remote}", {s: SideSample(int(summary[f"rows_{s}"])) for s in "ab"},
                               (baseline or {}).get("run_id"))
        return Guard(spec.guard, spec.source_names, observed)
    return Guard(spec.guard, spec.source_names, key_samples(spec, folder, summary, baseline))


def key_samples(spec: ReconciliationSpec, folder: RunFolder, summary: dict, baseline: dict | None) -> Observation:
    """Each side's bottom-k key hashes, and how many of the baseline's it still has.

    One pass over the key column collects only the hashes below a cut that about 4k of them
    fall under (and any up to the baseline's largest sampled hash, for the membership test):
    a filter, not a top-k, about 0.1 s per million rows per side here. When duplicate or null
    keys leave too few below the cut, the exact top-k is taken instead."""
    keys = ", ".join(quote_ident(k.name) for k in spec.key)
    present = " AND ".join(f"{quote_ident(k.name)} IS NOT NULL" for k in spec.key)
    sides = {}
    with duckdb_connect() as con:
        for side in "ab":
            hashed = f"SELECT hash({keys}) AS h FROM {snapshot_of(spec, folder, side).scan} WHERE {present}"
            rows = int(summary[f"rows_{side}"])
            old = baseline_sample(baseline, side, KEY_HASH)
            cut = min(_HASH_MAX, _HASH_MAX * 4 * SAMPLE_SIZE // max(rows, 1))
            below = set(con.execute(f"SELECT list(h) FROM ({hashed}) WHERE h <= {max([cut, *old])}").fetchone()[0] or ())
            sample = sorted(h for h in below if h <= cut)[:SAMPLE_SIZE]
            if len(sample) < SAMPLE_SIZE and cut < _HASH_MAX:
                sample = sorted(set(con.execute(f"SELECT min_by(h, h, {SAMPLE_SIZE}) FROM ({hashed})").fetchone()[0] or ()))
            kept = len(below & set(old)) if old else None
            sides[side] = SideSample(rows, tuple(sample), kept, len(old))
    return Observation(KEY_HASH, sides, (baseline or {}).get("run_id"))


def tracker_run_id(reconciliation: str, run_id: str) -> str:
    """The tracker's id of one reconciliation's run: ``<run_id>:<reconciliation>``.

    The tracker applies a run id once (a retried step changes nothing), so one Dagster run that
    materializes several reconciliations (the UI's "Materialize all", ``dg launch --assets '*'``)
    needs one id per reconciliation, or only the first would be recorded. Ids longer than the
    tracker's column (64) keep the Dagster run id and hash the rest."""
    composed = f"{run_id}:{reconciliation}"
    if len(composed) <= TRACKER_RUN_ID_MAX:
        return composed
    head, _, rest = composed.partition(":")
    return f"{head}:{hashlib.sha256(rest.encode()).hexdigest()}"[:TRACKER_RUN_ID_MAX]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def day_outcome(outcome: RunOutcome, day_folder: RunFolder, resolved_keys: dict[str, str]) -> RunOutcome:
    """The share of a range run's tracker outcome that belongs to one day: the discrepancies
    that day's comparison found, and those resolved among the keys it judged (``resolved_keys``
    maps each resolved id to its key). On a tracker that held none of them, these are the
    counts a run of that day alone reports."""
    ids = set(pq.read_table(day_folder["discrepancies"], columns=["id"]).column("id").to_pylist())
    judged = set(read_keys(day_folder["scope_keys"])) - set(read_keys(day_folder["in_flight"]))
    new = [i for i in outcome.new_ids if i in ids]
    reopened = [i for i in outcome.reopened_ids if i in ids]
    return RunOutcome(
        run_id=outcome.run_id, new_ids=new, reopened_ids=reopened,
        resolved_ids=[i for i in outcome.resolved_ids if resolved_keys.get(i) in judged],
        escalated_ids=[i for i in outcome.escalated_ids if i in ids],
        seen_again=len(ids) - len(new) - len(reopened), open_count=outcome.open_count,
        already_applied=outcome.already_applied,
    )


# --------------------------------------------------------------------------- the whole run


@dataclass
class RunResult(ComparisonResult):
    """What one run found (``discrepancies``, ``match``, ``fields``, ``sample``), how it paired
    (``pairing``), what it held back, and, with a tracker, what the tracker made of it."""

    pairing: Pairing | None = field(default=None, kw_only=True)
    in_flight: list[str] = field(default_factory=list, kw_only=True)
    summaries: dict = field(default_factory=dict, kw_only=True)
    outcome: RunOutcome | None = field(default=None, kw_only=True)
    scope: str = field(default="full", kw_only=True)

    @property
    def pushdown(self):
        """The push-down figures (engine.pushdown.PushdownStats) when the data was paired where it lives."""
        return getattr(self.pairing, "pushdown", None)

    def summary(self) -> dict:
        return {**super().summary(), **self.summaries, **(pairing_metadata(self.pairing) if self.pairing else {}),
                **({"in_flight": len(self.in_flight)} if self.in_flight else {})}


@contextlib.contextmanager
def _run_folder(storage: str | Path | RunFolder | None, spec: ReconciliationSpec, scope: RunScope) -> Iterator[RunFolder]:
    if isinstance(storage, RunFolder):
        yield storage
    elif storage is not None:
        yield RunFolder.of(storage, spec, scope)
    else:  # a one-off run keeps nothing: what it found is returned (and, tracked, in the tracker)
        with tempfile.TemporaryDirectory(prefix="recon-") as tmp:
            yield RunFolder.of(tmp, spec, scope)


def run(spec: ReconciliationSpec, scope: RunScope | None = None, storage: str | Path | RunFolder | None = None,
        tracker: Tracker | None = None, *, run_id: str | None = None, strategy=None,
        warn: Callable[[str], None] | None = None, memory_limit: str | None = None, spill_dir: str | None = None,
        as_of: datetime | None = None, on_outcome: Callable | None = None,
        before_tracker: Callable[[RunFolder], None] | None = None, in_place: bool = True,
        decided: MatchDecisions | None = None) -> RunResult:
    """One reconciliation run in this process: the steps the asset graph runs one by one.

    ``scope`` defaults to everything; ``storage`` is a folder for the run's files (a temporary
    one, removed afterwards, when None); ``tracker`` folds the result into the tracker (export
    guard and ``on_outcome``, e.g. the notification outbox, included); ``strategy`` names the
    pairing strategy (or is one, configured: a Spark master) instead of choosing one. A failed ``error`` expectation raises
    ExpectationFailed; ``warn`` receives one line per failed ``warn`` one (default: the log).
    ``before_tracker`` may rewrite the discrepancies file before the tracker reads it (the
    change-stream re-check relabels what was not propagated). ``decided``: the suggested pairs
    an operator confirmed or rejected (spec ``suggest:``; read from ``tracker`` when None). A
    tracked run first checks each side's schema against the one recorded at its last run."""
    from recon_pipelines import expectations

    scope = scope or RunScope.full()
    started = datetime.now(timezone.utc)
    if decided is None:
        decided = MatchDecisions.of(tracker, spec)
    if tracker is not None:
        run_id = run_id or f"cli-{uuid.uuid4().hex[:12]}:{scope.label}"
        check_schema_drift(spec, tracker, run_id, warn or log.warning)
    with _run_folder(storage, spec, scope) as folder:
        choice = choose_strategy(spec, scope, strategy)
        # A strategy that reads whole files (Spark) gets the run's Parquet snapshots, not a renamed scan in place.
        in_place = in_place and not getattr(choice.strategy, "reads_whole_files", False)
        for side in "ab":
            snapshot = take_snapshot(spec, side, scope, folder, choice=choice, in_place=in_place)
            if snapshot["missing"]:
                raise ComparisonError(f"{spec.name}: side {side.upper()} lacks column(s) {', '.join(snapshot['missing'])}")
            source = spec.source_a if side == "a" else spec.source_b
            if source.expect:  # never with a strategy that reads the sources itself (it refuses)
                outcomes = expectations.evaluate(spec, side, snapshot_of(spec, folder, side).scan)
                expectations.enforce(spec, side, outcomes, warn or log.warning)
        metadata = match_pairs(spec, folder, memory_limit, spill_dir, decided.confirmed, choice=choice)
        found = find_discrepancies(spec, folder, as_of, memory_limit, spill_dir,
                                   decided=decided.confirmed + decided.rejected, confirmed=decided.confirmed)
        table = found.table
        if before_tracker is not None:
            before_tracker(folder)
            table = pq.read_table(folder["discrepancies"])
        outcome = None
        if tracker is not None:
            outcome = update_tracker(spec, folder, scope, tracker, run_id, on_outcome=on_outcome, started_at=started)
    stats = MatchStats(**{k: metadata[k] for k in asdict(MatchStats())})
    pairing = Pairing(stats, metadata["strategy"], metadata["strategy_reason"],
                      {"a": metadata["rows_moved_a"], "b": metadata["rows_moved_b"]})
    if "pushdown" in metadata:
        from recon_pipelines.engine.pushdown import PushdownStats

        pairing = strategies.PushdownPairing(**vars(pairing), pushdown=PushdownStats(**metadata["pushdown"]))
    groups = None
    if "groups" in metadata:
        from recon_pipelines.engine.groups import GroupStats

        groups = GroupStats(**metadata["groups"])
    summaries = {k: v for k, v in metadata.items() if k.startswith(("count_", "sum_", "content_hash_", "summar"))}
    return RunResult(table, stats, found.fields, sample=found.sample, suggestions=found.suggestions, groups=groups,
                     pairing=pairing, in_flight=found.in_flight, summaries=summaries, outcome=outcome, scope=scope.label)


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
