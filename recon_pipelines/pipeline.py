"""The steps of one reconciliation run, shared by the asset graph and the jobs.

A run has a scope: everything (a deep scan), a time window (a daily partition or a date
range) or a list of keys (an on-demand or event-triggered re-check). Each step reads and
writes Parquet files in the run's folder, so a step can run in its own process:

    take_snapshot(a), take_snapshot(b) -> match_pairs -> find_discrepancies -> update_tracker

A window run reads the records modified in the window on either side, takes the union of
their keys, and reads the counterparts of those keys from the other side, so a record
modified on one side only is still compared with the other side's current version.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recon_pipelines.engine import ComparisonError, MatchStats, evaluate, match, side_columns, suggest
from recon_pipelines.engine.compare import combine_discrepancies
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
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.sqlutil import duckdb_connect, quote_ident, sql_literal
from recon_pipelines.tracker import Scope, Tracker
from recon_pipelines.tracker.guard import SAMPLE_SIZE, Guard, Observation, SideSample, baseline_sample
from recon_pipelines.tracker.store import RunOutcome

# DuckDB's hash() is about ten times faster than md5() but may change between DuckDB versions:
# samples made by another version are not compared (the row counts still are).
KEY_HASH = f"duckdb-{duckdb.__version__}-hash"
_HASH_MAX = 2**64 - 1  # hash() is a UBIGINT

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


# --------------------------------------------------------------------------- 1. snapshots


def take_snapshot(spec: ReconciliationSpec, side: str, scope: RunScope, folder: RunFolder,
                  days: Sequence[tuple[RunScope, RunFolder]] = ()) -> dict:
    """Read one side within the scope into ``snapshot_<side>.parquet``; returns metadata.

    ``days`` splits a window into the days it spans (a single-run backfill of daily partitions):
    the keys are then read day by day, and each day's folder gets the snapshot a run of that day
    alone would take (cut from this one, without reading the records again), under ``"days"``."""
    source = spec.source_a if side == "a" else spec.source_b
    columns = snapshot_columns(spec, side)
    key_column = columns[spec.key[0].name]
    path = folder[f"snapshot_{side}"]
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
                spill_dir: str | None = None, confirmed: Sequence[tuple[str, str]] = (), strategy=None) -> dict:
    """Pair the snapshots by key; compare summaries first. Returns metadata (MatchStats and
    summaries); the candidate pairs go to ``matched_pairs.parquet`` with the stats inside.
    ``confirmed``: suggested pairs an operator confirmed (their B key is read as their A key).
    ``strategy`` (engine/strategies) pairs elsewhere, e.g. on Spark; None pairs in DuckDB."""
    if strategy is not None and (reason := strategy.refuses(spec)):
        raise ComparisonError(f"{spec.name}: the {strategy.name} engine cannot run this spec: {reason}")
    con = duckdb_connect(memory_limit, spill_dir)
    sides = snapshot_sides(spec, folder)
    sides[1] = suggest.rekeyed(spec, sides[1], confirmed)
    folder["sample_keys"].unlink(missing_ok=True)
    if spec.sample is not None:  # the same keys of both sides, before anything is paired
        from recon_pipelines import sampling

        *sides, keys = sampling.sample_sides(spec, *sides)
        write_keys(folder["sample_keys"], keys)
    # Summaries cost a full hashing pass of each side: only when the spec asks for them.
    summaries = _summaries(con, spec, folder) if wants_summaries(spec) else {}
    skip = bool(spec.incremental and spec.incremental.skip_when_summaries_match and summaries["summaries_match"])
    if skip:  # identical by counts, sums and content hashes: nothing to pair
        stats = MatchStats(rows_a=summaries["count_a"], rows_b=summaries["count_b"],
                           matched=summaries["count_a"], identical=summaries["count_a"])
        con.execute(f"CREATE OR REPLACE TEMP TABLE __pairs AS SELECT * FROM ({_empty_pairs(con, spec, sides)})")
    else:
        mapping = None
        if spec.key_mapping is not None:
            info = write_snapshot(spec.key_mapping.source, {"a": spec.key_mapping.a, "b": spec.key_mapping.b},
                                  folder.root / "key_mapping.parquet")
            mapping = snapshot_side(info.path, ["a", "b"], info.label)
        if strategy is None:
            stats = match(con, spec, sides[0], sides[1], mapping)
        else:
            pairing = strategy.pair(spec, con, tuple(sides))
            stats = pairing.stats
            summaries = {**summaries, **{f"rows_moved_{what}": n for what, n in pairing.rows_moved.items()}}
    metadata = {**asdict(stats), **summaries, "summary_skip": skip, **_match_groups(con, spec, folder, skip)}
    partial = partial_path(folder["pairs"])
    con.execute(f"COPY __pairs TO {sql_literal(str(partial))} (FORMAT parquet, "
                f"KV_METADATA {{{MATCH_STATS_KEY}: {sql_literal(json.dumps(metadata))}}})")
    partial.replace(folder["pairs"])
    return metadata


def snapshot_sides(spec: ReconciliationSpec, folder: RunFolder) -> list:
    return [snapshot_side(folder[f"snapshot_{s}"], list(side_columns(spec, s)), f"snapshot_{s}") for s in "ab"]
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


def wants_summaries(spec: ReconciliationSpec) -> bool:
    inc = spec.incremental
    return bool(inc and (inc.summary_fields or inc.skip_when_summaries_match))


def _summaries(con, spec: ReconciliationSpec, folder: RunFolder) -> dict:
    """Counts, sums of the chosen fields and an order-independent content hash per side."""
    fields = spec.incremental.summary_fields if spec.incremental else []
    names = [k.name for k in spec.key] + [f.name for f in spec.fields]
    row_hash = f"hash({', '.join(f'CAST({quote_ident(n)} AS VARCHAR)' for n in names)})"
    out: dict = {}
    exact_sums: dict = {}
    for side in "ab":
        # Exact sums (DECIMAL, to 9 places): a DOUBLE sum depends on the order rows are read in,
        # so the same records could show different sums in a range run and a day run alone.
        sums = "".join(f", sum(TRY_CAST({quote_ident(f)} AS DECIMAL(38, 9)))" for f in fields)
        row = con.execute(f"SELECT count(*), sum({row_hash})::VARCHAR{sums} "
                          f"FROM read_parquet({sql_literal(str(folder[f'snapshot_{side}']))})").fetchone()
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
            path = sql_literal(str(folder[f"snapshot_{side}"]))
            types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()}
            if UPDATED_AT not in types or key is None:
                continue
            instant = instant_sql(quote_ident(UPDATED_AT), types[UPDATED_AT], source.timezone)
            rows = con.execute(f"SELECT DISTINCT CAST({key} AS VARCHAR) FROM read_parquet({path}) "
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
            hashed = (f"SELECT hash({keys}) AS h FROM read_parquet({sql_literal(str(folder[f'snapshot_{side}']))}) "
                      f"WHERE {present}")
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
