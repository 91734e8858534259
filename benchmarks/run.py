"""Benchmark the comparison engine against its peers, and the project's own paths at scale.

Run from the repository root (one command; generates missing data under benchmarks/.data/):

    .venv/bin/python -m benchmarks.run --sizes 1e5,1e6,1e7 [--sparse]
    .venv/bin/python -m benchmarks.run --sizes 1e7 --repeat 3 --alternate --stat median   # ratios on a shared machine
    .venv/bin/python -m benchmarks.run --case dagster --sizes 1e7          # + the engine, as its baseline
    .venv/bin/python -m benchmarks.run --case tracker [--tracker-rows 1e5,1e6]
    .venv/bin/python -m benchmarks.run --case incremental --sizes 1e7

(``python benchmarks/run.py ...`` works too; ``--case`` and ``--cases`` are the same option.)
For each size it generates, or reuses, a seeded pair of files with known discrepancies
(benchmarks/generate.py), runs every case in a fresh subprocess (so peak RSS is that
case's alone), checks each case's discrepancy set (kind, key, field) against the
generator's ground truth and prints a table per size. Results are also written as JSON
under benchmarks/.data/.

Cases
    recon_pipelines  the project's engine: ``engine.compare`` over ``read_parquet`` scans.
    datacompy        ``datacompy`` (pandas) on the files read with pandas, its output
                     post-processed for the rules it cannot express (listed in its notes).
    pandas           a plain pandas outer merge with vectorised per-column rules.
    duckdb_query     one hand-written DuckDB query (full outer join, a CASE per field): the
                     bar the engine is held to; asserted to find the engine's discrepancy count.
    hash_scan        the floor: one DuckDB query counting and hashing every row of both files.
    engine_before    (only when named) the engine of another checkout (--baseline-tree DIR).
    dagster          the spec's five assets materialised in process (``execute_in_process``,
                     SQLite tracker) on the same files; time per step and inside the steps.
    tracker          (only when named; standalone) ``Tracker.apply_run`` of 1e5 / 1e6 new
                     discrepancies, then of the same set again, on PostgreSQL and SQLite.
    incremental      (only when named) both sides loaded into PostgreSQL, 0.1% of the rows
                     moved into one day; a daily-partition run against a full scan, both
                     through the SQL connector.

The tracker and incremental cases create a throwaway database on ``--pg-url``'s server
(``recon_bench_<case>_<random>``) and drop it, also when the worker is killed on timeout.

Adding a case is one function registered in ``CASES``: decorate
``def my_case(data: BenchData, spec) -> dict`` with ``@case("name")``. It runs in its
own subprocess and returns ``{"seconds": float}`` plus optionally ``"discrepancies"``
(a pyarrow Table / pandas DataFrame with string columns kind, key, field; or an
iterable of (kind, key, field) tuples), which is then checked against ground truth,
``"notes"`` (list of strings) and ``"details"`` (a JSON-able dict). Pass
``default=False`` for cases to run only when named in ``--cases``, ``peer=True`` for
cases that hold the data in memory and are skipped above ``--skip-peers-above``,
``checks_truth=False`` for cases that produce no discrepancy set (or check their own:
they may return ``"check"``), ``standalone=True`` for cases that need no generated data
(``data.rows`` is then their own size), ``needs_engine=True`` to run the engine as the
baseline, ``timeout=`` for a longer default, ``render=`` for a report of their own, and
``uses_postgres=True`` for a throwaway database (its name in ``data.options["pg_db"]``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Self

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import generate as gen  # numpy + pyarrow only

COMMAND = ".venv/bin/python -m benchmarks.run --sizes 1e5,1e6,1e7 [--sparse]"
ENGINE = "recon_pipelines"


# --------------------------------------------------------------------------- the case registry


@dataclass(frozen=True)
class BenchData:
    """What a case gets: the two Parquet files of one generated data set."""

    dir: Path
    a: Path
    b: Path
    rows: int  # rows of side A (B differs by the drift); for a standalone case, its own size
    drift: str
    options: dict = field(default_factory=dict)  # case options from the command line (--pg-url, ...)

    def scan(self, side: str) -> str:
        """DuckDB table expression reading one side."""
        path = str(self.a if side == "a" else self.b).replace("'", "''")
        return f"read_parquet('{path}')"


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable[[BenchData, object], dict]
    description: str = ""
    peer: bool = False  # an in-memory peer: skipped above --skip-peers-above
    default: bool = True  # run without being named in --cases
    checks_truth: bool = True  # returns a discrepancy set to check against ground truth
    standalone: bool = False  # needs no generated data set: runs once per its own sizes, after the data cases
    needs_engine: bool = False  # compared with the engine: naming it alone runs the engine case too
    timeout: float | None = None  # its default --timeout (seconds), when longer than the usual 600
    render: Callable[[list[dict]], str] | None = None  # its own report, from the results of every size
    uses_postgres: bool = False  # creates (and drops) throwaway databases on --pg-url's server


CASES: dict[str, Case] = {}


def case(name: str, *, description: str = "", peer: bool = False, default: bool = True, checks_truth: bool = True,
         standalone: bool = False, needs_engine: bool = False, timeout: float | None = None,
         render: Callable[[list[dict]], str] | None = None, uses_postgres: bool = False):
    """Register ``fn(data, spec) -> {"seconds": ..., ["discrepancies": ...], ["notes": [...]], ["details": {...}]}``."""

    def register(fn):
        CASES[name] = Case(name, fn, description or (fn.__doc__ or "").strip().splitlines()[0], peer, default,
                           checks_truth, standalone, needs_engine, timeout, render, uses_postgres)
        return fn

    return register


def build_spec(data: BenchData):
    """The reconciliation every case implements (the peers read their rules from it too)."""
    from recon_pipelines.spec import parse_spec

    return parse_spec(
        {
            "name": "benchmark",
            "source_a": {"type": "file", "path": str(data.a), "name": "a"},
            "source_b": {"type": "file", "path": str(data.b), "name": "b"},
            "key": "id",
            "fields": gen.SPEC_FIELDS,
        }
    )




# --------------------------------------------------------------------------- cases


@case(ENGINE, description="recon_pipelines.engine.compare on read_parquet() scans (DuckDB)")
def run_engine(data: BenchData, spec) -> dict:
    from recon_pipelines.engine import Side, compare, side_columns

    started = time.perf_counter()
    result = compare(spec, Side(data.scan("a"), side_columns(spec, "a"), "a"), Side(data.scan("b"), side_columns(spec, "b"), "b"))
    seconds = time.perf_counter() - started
    m = result.match
    return {
        "seconds": seconds,
        "discrepancies": result.discrepancies.select(["kind", "key", "field"]),
        "notes": [(f"{m.candidate_pairs:,} candidate pairs of {m.matched:,} matched evaluated; "
                   "output: the full discrepancy table (values, reason, severity, stable id)")],
        "details": result.summary() | {"fields": None},
    }


@case("engine_before", default=False,
      description="the engine of another checkout (--baseline-tree DIR), for before/after figures in one run")
def run_engine_before(data: BenchData, spec) -> dict:
    tree = data.options.get("baseline_tree")
    if not tree:
        raise SystemExit("engine_before needs --baseline-tree DIR (e.g. a `git archive` of the commit to compare with)")
    for name in [m for m in sys.modules if m == "recon_pipelines" or m.startswith("recon_pipelines.")]:
        del sys.modules[name]  # the worker imported this checkout's package to parse the spec
    sys.path.insert(0, str(Path(tree).resolve()))
    out = run_engine(data, build_spec(data))
    import recon_pipelines

    out["notes"].append(f"engine imported from {Path(recon_pipelines.__file__).parent}")
    return out


def _pandas_sides(data: BenchData):
    import pandas as pd

    return pd.read_parquet(data.a), pd.read_parquet(data.b)


def _normalise(series, steps: Iterable[str]):
    for step in steps:
        if step == "trim":
            series = series.str.strip()
        elif step == "lower":
            series = series.str.lower()
        elif step == "upper":
            series = series.str.upper()
        else:  # nfc / collapse_whitespace: not used by the benchmark spec
            raise NotImplementedError(f"normalisation {step!r} is not implemented for the pandas peers")
    return series


def _frame(kind: str, keys, field: str | None):
    import pandas as pd

    return pd.DataFrame({"kind": kind, "key": keys.astype("int64").astype(str).to_numpy(dtype=object), "field": field})


@case("datacompy", peer=True, description="datacompy.Compare (pandas) + post-processing for the rules it lacks")
def run_datacompy(data: BenchData, spec) -> dict:
    import datacompy
    import pandas as pd

    from recon_pipelines.spec import NumericRule, StringRule, TimestampRule

    compare_cls = getattr(datacompy, "Compare", None) or datacompy.PandasCompare
    key = spec.key[0].name
    numeric = [r for r in spec.fields if isinstance(r, NumericRule)]
    started = time.perf_counter()
    df_a, df_b = _pandas_sides(data)
    loaded = time.perf_counter()
    cmp = compare_cls(
        df_a, df_b, join_columns=key,
        abs_tol={"default": 0.0, **{r.name: r.abs_tol for r in numeric}},
        rel_tol={"default": 0.0, **{r.name: r.rel_tol for r in numeric}},
        # ignore_case/ignore_spaces would apply to every string column (plan, status and
        # country are exact), so datacompy compares raw text and email's trim+lower is
        # applied below to the pairs it reports.
        ignore_case=False, ignore_spaces=False, df1_name="a", df2_name="b",
    )
    compared = time.perf_counter()
    rows = cmp.intersect_rows
    parts = [_frame("only_in_a", cmp.df1_unq_rows[key], None), _frame("only_in_b", cmp.df2_unq_rows[key], None)]
    dropped = {}
    for rule in spec.fields:
        bad = rows.loc[~rows[f"{rule.name}_match"].astype(bool), [key, f"{rule.name}_a", f"{rule.name}_b"]]
        va, vb = bad[f"{rule.name}_a"], bad[f"{rule.name}_b"]
        both = va.notna() & vb.notna()
        agree = None
        if isinstance(rule, StringRule) and rule.normalize:
            agree = both & (_normalise(va[both].astype(str), rule.normalize) == _normalise(vb[both].astype(str), rule.normalize)).reindex(bad.index, fill_value=False)
        elif isinstance(rule, TimestampRule) and rule.lag:
            agree = both & ((pd.to_datetime(va) - pd.to_datetime(vb)).abs() <= pd.Timedelta(seconds=rule.lag))
        if agree is not None:
            dropped[rule.name] = int(agree.sum())
            bad = bad.loc[~agree]
        parts.append(_frame("field_mismatch", bad[key], rule.name))
    result = pd.concat(parts, ignore_index=True)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "discrepancies": result,
        "notes": [
            "configured: join_columns=id, per-column abs_tol dict {amount: 0.01, balance: 0.01}, ignore_case=False",
            ("post-processed in pandas (on datacompy's mismatching pairs only): email trim+lower "
             f"(dropped {dropped.get('email', 0):,} case-only pairs); updated_at 60 s lag (dropped {dropped.get('updated_at', 0):,} pairs)"),
            f"read parquet {loaded - started:.1f} s, datacompy.Compare {compared - loaded:.1f} s, extraction+post-processing {seconds - (compared - started):.1f} s",
        ],
        "details": {"read_seconds": loaded - started, "compare_seconds": compared - loaded, "post_dropped": dropped},
    }


@case("pandas", peer=True, description="plain pandas: outer merge with indicator + vectorised per-column rules")
def run_pandas(data: BenchData, spec) -> dict:
    import numpy as np
    import pandas as pd

    from recon_pipelines.engine.rules import FLOAT_ULPS
    from recon_pipelines.spec import ExactRule, NumericRule, StringRule, TimestampRule

    key = spec.key[0].name
    started = time.perf_counter()
    df_a, df_b = _pandas_sides(data)
    loaded = time.perf_counter()
    merged = df_a.merge(df_b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    del df_a, df_b
    status = merged["_merge"]
    paired = (status == "both").to_numpy()
    parts = [_frame("only_in_a", merged.loc[(status == "left_only").to_numpy(), key], None),
             _frame("only_in_b", merged.loc[(status == "right_only").to_numpy(), key], None)]
    for rule in spec.fields:
        a, b = merged[f"{rule.name}_a"], merged[f"{rule.name}_b"]
        null_a, null_b = a.isna().to_numpy(), b.isna().to_numpy()
        if isinstance(rule, NumericRule):
            va, vb = a.to_numpy(dtype="float64", na_value=np.nan), b.to_numpy(dtype="float64", na_value=np.nan)
            diff = np.abs(va - vb)
            tol = np.maximum(rule.abs_tol, rule.rel_tol * np.maximum(np.abs(va), np.abs(vb)))
            # the engine's allowance for two double columns: a few ulps, not a share of the magnitude
            noise = FLOAT_ULPS * np.spacing(np.maximum(np.maximum(np.abs(va), np.abs(vb)), tol))
            equal = diff <= tol + noise
        elif isinstance(rule, TimestampRule):
            diff = (a - b).abs()
            equal = (diff <= pd.Timedelta(seconds=rule.lag)).to_numpy()
        elif isinstance(rule, (StringRule, ExactRule)):
            if getattr(rule, "values", None):
                raise NotImplementedError("value mappings are not implemented for the pandas peer")
            equal = a.eq(b).fillna(False).to_numpy(dtype=bool, copy=True)
            steps = rule.normalize if isinstance(rule, StringRule) else []
            if steps:  # normalise only the pairs whose raw text differs
                retry = paired & ~equal & ~null_a & ~null_b
                equal[retry] = (_normalise(a[retry].astype(str), steps).to_numpy() == _normalise(b[retry].astype(str), steps).to_numpy())
        else:  # pragma: no cover
            raise TypeError(rule)
        # null vs null agrees (the spec's default null policy), null vs value never does
        mismatch = paired & ~(null_a & null_b) & ((null_a ^ null_b) | ~equal)
        parts.append(_frame("field_mismatch", merged.loc[mismatch, key], rule.name))
    result = pd.concat(parts, ignore_index=True)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "discrepancies": result,
        "notes": [f"read parquet {loaded - started:.1f} s, merge + rules {seconds - (loaded - started):.1f} s"],
        "details": {"read_seconds": loaded - started},
    }


# --------------------------------------------------------------------------- DuckDB baselines: the bar the engine is held to


def handwritten_query(spec, scan_a: str, scan_b: str) -> str:
    """The best single DuckDB query a person would write for the benchmark's rules: a full outer
    join on the key, one CASE per field (normalising only where the raw values differ), the
    disagreements unpivoted to (kind, key, field). Written per rule class, not generated by the
    engine's rule compiler: it is the engine's yardstick, so it must not share its code."""
    from recon_pipelines.engine.rules import FLOAT_ULPS
    from recon_pipelines.instants import WHITESPACE
    from recon_pipelines.spec import ExactRule, NumericRule, StringRule, TimestampRule
    from recon_pipelines.sqlutil import quote_ident as q
    from recon_pipelines.sqlutil import sql_literal

    key = q(spec.key[0].name)
    ws = sql_literal(WHITESPACE)
    steps = {"trim": "trim({}, " + ws + ")", "lower": "lower({})", "upper": "upper({})"}
    flags = []
    for rule in spec.fields:
        a, b = f"a.{q(rule.name)}", f"b.{q(rule.name)}"
        if isinstance(rule, NumericRule):  # tolerance plus the engine's float allowance (a few ulps)
            if rule.rel_tol or rule.scale_a != 1 or rule.scale_b != 1:
                raise NotImplementedError("the hand-written query implements abs_tol only")
            mag = f"greatest(abs({a}), abs({b}), {rule.abs_tol!r})"
            differs = f"abs({a} - {b}) > {rule.abs_tol!r} + {FLOAT_ULPS} * (nextafter({mag}, 'inf'::DOUBLE) - {mag})"
        elif isinstance(rule, TimestampRule):
            differs = f"abs(epoch_us({a}) - epoch_us({b})) > {round(rule.lag * 1e6)}"
        elif isinstance(rule, StringRule) and rule.normalize:
            na, nb = a, b
            for step in rule.normalize:
                na, nb = steps[step].format(na), steps[step].format(nb)
            differs = f"{a} <> {b} AND {na} <> {nb}"  # normalise only the pairs whose raw text differs
        elif isinstance(rule, (StringRule, ExactRule)) and not getattr(rule, "values", None):
            differs = f"{a} <> {b}"
        else:  # pragma: no cover - not in the benchmark's spec
            raise NotImplementedError(f"{rule.name}: not implemented in the hand-written query")
        # null vs null agrees, null vs value differs (the spec's default null policy)
        flags.append(f"CASE WHEN {a} IS NULL AND {b} IS NULL THEN NULL WHEN {a} IS NULL OR {b} IS NULL OR ({differs}) "
                     f"THEN {sql_literal(rule.name)} END")
    return f"""SELECT CASE WHEN b.{key} IS NULL THEN 'only_in_a' WHEN a.{key} IS NULL THEN 'only_in_b' ELSE 'field_mismatch' END AS kind,
               CAST(coalesce(a.{key}, b.{key}) AS VARCHAR) AS key,
               unnest(CASE WHEN a.{key} IS NULL OR b.{key} IS NULL THEN [NULL::VARCHAR]
                           ELSE list_filter([{', '.join(flags)}], lambda f: f IS NOT NULL) END) AS field
        FROM {scan_a} a FULL JOIN {scan_b} b ON a.{key} = b.{key}"""


@case("duckdb_query", peer=True, description="one hand-written DuckDB query: full outer join, a CASE per field (the bar to beat at 2% drift)")
def run_duckdb_query(data: BenchData, spec) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    started = time.perf_counter()
    table = con.execute(handwritten_query(spec, data.scan("a"), data.scan("b"))).to_arrow_table()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "discrepancies": table,
            "notes": ["output: (kind, key, field) only; the engine's table also carries values, reason, severity and ids"]}


@case("hash_scan", checks_truth=False,
      description="the floor: one DuckDB query that reads both files, counting and hashing every row (no comparison)")
def run_hash_scan(data: BenchData, spec) -> dict:
    import duckdb

    from recon_pipelines.sqlutil import quote_ident as q

    columns = ", ".join(q(c) for c in [spec.key[0].name, *(f.name for f in spec.fields)])
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    started = time.perf_counter()
    (a, b), = con.execute(f"""SELECT (SELECT (count(*), sum(hash({columns})::HUGEINT)) FROM {data.scan('a')}),
                                     (SELECT (count(*), sum(hash({columns})::HUGEINT)) FROM {data.scan('b')})""").fetchall()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "notes": [f"(rows, hash sum): A {tuple(a)}, B {tuple(b)}"]}


# --------------------------------------------------------------------------- scale cases: shared helpers


class _Timer:
    """Wall seconds spent in chosen functions, measured by wrapping module attributes for the
    duration of a ``with`` block (the package is not changed: the names are restored after)."""

    def __init__(self, targets: list[tuple[object, str, str]]):
        self.targets = targets  # (module, attribute, label)
        self.seconds: dict[str, list[float]] = {}
        self._saved: list[tuple[object, str, object]] = []

    def __enter__(self) -> Self:
        for module, name, label in self.targets:
            original = getattr(module, name)
            self._saved.append((module, name, original))
            setattr(module, name, self._wrap(original, label))
        return self

    def __exit__(self, *exc) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)
        self._saved.clear()

    def _wrap(self, fn, label: str):
        import functools

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds.setdefault(label, []).append(time.perf_counter() - started)

        return timed

    def total(self, label: str) -> float:
        return sum(self.seconds.get(label, []))


def _scratch(data: BenchData, prefix: str) -> Path:
    """A scratch folder inside the run's own temporary folder (removed by the parent even when
    the worker is killed), next to the data when run outside the harness."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=data.options.get("work_dir") or data.dir))


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _best_details(record: dict, key: str) -> float | None:
    """The fastest value of ``details[key]`` over a case's repeated runs (noise only adds time)."""
    values = [d.get(key) for d in record.get("runs_details", [record.get("details", {})]) if d.get(key) is not None]
    return min(values) if values else None


# --------------------------------------------------------------------------- dagster: the full asset path

DAGSTER_STEPS = ("snapshot_a", "snapshot_b", "matched_pairs", "discrepancies", "tracker_state")
# What the steps spend their time on: package functions, timed while the job runs
# (module, function, label). Both snapshot steps copy their side and check its keys.
DAGSTER_PARTS = (
    ("pipeline", "write_snapshot", "snapshot copies a+b"),  # Parquet -> Parquet copy of each side (DuckDB COPY)
    ("assets", "_key_health", "key checks a+b"),  # asset checks key_not_null / key_unique: a GROUP BY scan per side
    ("pipeline", "_summaries", "summaries"),  # count, sums and a content hash of every row of both snapshots
    ("pipeline", "match", "match"),  # the engine's match on the snapshots
    ("pipeline", "evaluate", "evaluate"),  # the engine's evaluate on the candidate pairs
    ("assets", "discrepancy_metadata", "discrepancy metadata"),  # counts per kind/severity, the markdown sample
    ("pipeline", "update_tracker", "tracker write"),  # Tracker.apply_run (SQLite here)
    ("assets", "tracker_metadata", "tracker metadata"),
)


def _render_dagster(results: list[dict]) -> str:
    lines = [("| rows per side | engine s | Dagster, 5 assets s | ratio | CPU ratio | without tracker_state s | ratio | "
              "snapshot_a | snapshot_b | matched_pairs | discrepancies | tracker_state | Dagster itself |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for res in results:
        r, e = res["cases"].get("dagster", {}), res["cases"].get(ENGINE, {})
        if r.get("status") != "ok":
            continue
        d = r["details"]
        engine_s = e.get("seconds") if e.get("status") == "ok" else None
        engine_cpu = e.get("cpu_seconds") if e.get("status") == "ok" else None
        no_tracker = r["seconds"] - d["steps"].get("tracker_state", 0.0)
        lines.append(
            f"| {res['rows']:,} | {_fmt_s(engine_s)} | {r['seconds']:.2f} | {_ratio(r['seconds'], engine_s)} | "
            f"{_ratio(r.get('cpu_seconds'), engine_cpu)} | "
            f"{no_tracker:.2f} | {_ratio(no_tracker, engine_s)} | "
            + " | ".join(_fmt_s(d["steps"].get(s)) for s in DAGSTER_STEPS) + f" | {d['dagster_overhead']:.2f} |")
        parts = d["parts"]
        notes.append(f"{res['rows']:,} rows, inside the steps (s): " + ", ".join(
            f"{label} {v:.2f}" for label, v in parts.items()))
    if len(lines) == 2:
        return ""
    return "\n".join([("Dagster path (fastest run of each; ratios against the engine's fastest run; CPU ratio: "
                       "CPU seconds of those runs; steps from the run's step stats; 'Dagster itself' = the run's "
                       "wall time minus its steps):"), "", *lines, "", *notes])


@case("dagster", needs_engine=True, render=_render_dagster,
      description="the spec's five assets materialised in process (execute_in_process), SQLite tracker")
def run_dagster(data: BenchData, spec) -> dict:
    import shutil

    import dagster as dg
    import pyarrow.parquet as pq

    from recon_pipelines import pipeline
    from recon_pipelines.dagster_defs import assets as dagster_assets
    from recon_pipelines.dagster_defs import build_definitions
    from recon_pipelines.dagster_defs.resources import ReconResource

    work = _scratch(data, "dagster-")
    try:
        storage, home = work / "storage", work / "home"
        home.mkdir()
        recon = ReconResource(storage_dir=str(storage), tracker_url=f"sqlite:///{work / 'tracker.sqlite'}")
        job = build_definitions(specs=[spec], recon=recon).resolve_job_def(f"reconcile_{spec.name}")
        modules = {"pipeline": pipeline, "assets": dagster_assets}
        timer = _Timer([(modules[module], fn, label) for module, fn, label in DAGSTER_PARTS])
        with dg.instance_for_test(temp_dir=str(home)) as instance, timer:
            recon.tracker()  # creates the tracker's schema (once per deployment), outside the timed run
            started = time.perf_counter()
            result = job.execute_in_process(instance=instance)
            seconds = time.perf_counter() - started
            if not result.success:
                raise RuntimeError("the Dagster run failed")
            stats = instance.get_run_step_stats(result.run_id)
        steps = {s.step_key.split("__", 1)[1]: s.end_time - s.start_time for s in stats}
        steps = {name: steps[name] for name in DAGSTER_STEPS if name in steps}
        parts = {label: timer.total(label) for _, _, label in DAGSTER_PARTS}
        found = pq.read_table(storage / spec.name / "full" / "discrepancies.parquet", columns=["kind", "key", "field"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    overhead = seconds - sum(steps.values())
    return {
        "seconds": seconds,
        "discrepancies": found,
        "notes": ["steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()) + f"; Dagster itself {overhead:.2f}",
                  "inside the steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())],
        "details": {"steps": steps, "parts": parts, "dagster_overhead": overhead, "run_seconds": seconds},
    }


# --------------------------------------------------------------------------- PostgreSQL: throwaway databases

PG_URL_ENV = "RECON_BENCH_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _pg_admin_url(options: dict) -> str:
    return options.get("pg_url") or os.environ.get(PG_URL_ENV) or os.environ.get("RECON_TEST_PG_URL") or DEFAULT_PG_URL


def _create_database(admin_url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``admin_url``; returns its URL."""
    import sqlalchemy as sa

    from recon_pipelines.urls import normalize_url

    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return sa.make_url(normalize_url(admin_url)).set(database=name).render_as_string(hide_password=False)


def _drop_database(admin_url: str, name: str) -> None:
    import sqlalchemy as sa

    from recon_pipelines.urls import normalize_url

    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def _pg_problem(admin_url: str) -> str | None:
    """None when the server answers, else why not (one line)."""
    import sqlalchemy as sa

    from recon_pipelines.urls import normalize_url

    try:
        engine = sa.create_engine(normalize_url(admin_url), connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - reported, the case is skipped
        return f"no PostgreSQL at {sa.make_url(normalize_url(admin_url)).render_as_string(hide_password=True)}: " \
               f"{str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}"


# --------------------------------------------------------------------------- tracker: apply_run at scale


class _StatementTimer:
    """Seconds per kind of SQL statement run through a SQLAlchemy engine (cursor events)."""

    def __init__(self, engine):
        import sqlalchemy as sa

        self.totals: dict[str, float] = {}
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        seconds = time.perf_counter() - conn.info["bench_started"].pop()
        label = _statement_label(statement, executemany)
        self.totals[label] = self.totals.get(label, 0.0) + seconds

    def take(self) -> dict[str, float]:
        out, self.totals = self.totals, {}
        return out


def _statement_label(sql: str, executemany: bool) -> str:
    import re

    text = " ".join(sql.split())
    verb = text.split(" ", 1)[0].upper()
    table = re.search(r"\b(?:INTO|UPDATE|FROM)\s+([\w\"]+)", text, re.IGNORECASE)
    label = f"{verb} {table.group(1) if table else '?'}"
    if verb == "INSERT" and re.search(r"\)\s*SELECT\b", text):
        label += " ... SELECT"
    if verb == "UPDATE" and " FROM recon_staging" in text:
        label += " ... FROM recon_staging"
    if "NOT (EXISTS" in text or "NOT IN" in text:
        label += " (anti-join)"
    return label + (" (executemany)" if executemany else "")


def synthetic_discrepancies(n: int, reconciliation: str = "benchmark"):
    """``n`` distinct discrepancies in the engine's DISCREPANCY_SCHEMA, shaped like its output on
    the 2% drift data: 2/7 only_in_a and 2/7 only_in_b (the whole record as JSON in value_a or
    value_b, ~170 bytes), 3/7 field mismatches over the eight fields (1 in 6 a null in B)."""
    import hashlib

    import pyarrow as pa

    from recon_pipelines.engine.compare import DISCREPANCY_SCHEMA

    fields = gen.FIELDS
    rows = {c: [] for c in DISCREPANCY_SCHEMA.names}
    for i in range(n):
        key = str(i + 1)
        slot = i % 7
        kind = "only_in_a" if slot < 2 else "only_in_b" if slot < 4 else "field_mismatch"
        name = fields[(i // 7) % len(fields)] if kind == "field_mismatch" else None
        value_a = value_b = difference = None
        if kind != "field_mismatch":
            record = (f'{{"email":"{gen.NAMES[i % 20]}{key}@example.com","plan":"{gen.PLANS[i % 5]}","status":"active",'
                      f'"country":"{gen.COUNTRIES[i % 25]}","is_paying":true,"amount":{i % 5000}.{i % 100:02d},'
                      f'"balance":{i % 3000}.{i % 97:02d},"updated_at":"2024-05-09 05:14:50.{i % 1000000:06d}"}}')
            value_a, value_b = (record, None) if kind == "only_in_a" else (None, record)
            reason = "missing_in_b" if kind == "only_in_a" else "missing_in_a"
        else:
            reason = "null_in_b" if (i // 7) % 6 == 5 else "value_differs"
            value_a = f"{i % 5000}.{i % 100:02d}" if name in ("amount", "balance") else f"{name}-{i % 13}"
            value_b = None if reason == "null_in_b" else (
                f"{i % 5000 + 12}.{i % 100:02d}" if name in ("amount", "balance") else f"{name}-{i % 13 + 1}")
            difference = 12.0 if name in ("amount", "balance") and value_b is not None else None
        rows["id"].append(hashlib.md5(f"{reconciliation}\x1f{kind}\x1f{key}\x1f{name}".encode()).hexdigest()[:24])
        rows["reconciliation"].append(reconciliation)
        rows["kind"].append(kind)
        rows["key"].append(key)
        rows["field"].append(name)
        rows["reason"].append(reason)
        rows["value_a"].append(value_a)
        rows["value_b"].append(value_b)
        rows["difference"].append(difference)
        rows["relative_difference"].append(None)
        rows["severity"].append("warning")
        rows["detail"].append("values differ" if kind == "field_mismatch" else None)
    return pa.table(rows, schema=DISCREPANCY_SCHEMA)


TRACKER_BACKENDS = ("postgresql", "sqlite")


def _render_tracker(results: list[dict]) -> str:
    lines = ["| discrepancies | tracker | 1st apply: all new, s | rows/s | 2nd apply: all seen again, s | rows/s | peak RSS GB |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    costs = []
    for res in results:
        r = res["cases"].get("tracker", {})
        if r.get("status") != "ok":
            if r:
                lines.append(f"| {res['rows']:,} | - | {r.get('status', '?').upper()}: "
                             f"{(r.get('error') or '?').splitlines()[0]} | | | | |")
            continue
        n = res["rows"]
        for backend in r["details"]["backends"]:
            first, second = _best_details(r, f"{backend}/first"), _best_details(r, f"{backend}/second")
            lines.append(f"| {n:,} | {backend} | {_fmt_s(first)} | {n / first:,.0f} | {_fmt_s(second)} | {n / second:,.0f} | "
                         f"{_gb(r['peak_rss_bytes'])} |")
            for label in ("first", "second"):
                statements = r["details"].get(f"{backend}/{label}/statements", {})
                top = sorted(statements.items(), key=lambda kv: -kv[1])[:4]
                costs.append(f"- {n:,} {backend}, {label} apply: " + ", ".join(f"{name} {s:.2f} s" for name, s in top))
    if len(lines) == 2:
        return ""
    return "\n".join(["Tracker writes (Tracker.apply_run; the fastest of --repeat runs for each number):", "", *lines, "",
                      "Costliest statements (seconds, from the fastest run):", *costs])


@case("tracker", standalone=True, default=False, checks_truth=False, timeout=1800, render=_render_tracker, uses_postgres=True,
      description="Tracker.apply_run of N new discrepancies, then the same N again (seen again): PostgreSQL and SQLite")
def run_tracker(data: BenchData, spec) -> dict:
    import shutil

    from recon_pipelines.tracker import Tracker

    n = data.rows
    found = synthetic_discrepancies(n)
    backends = list(data.options.get("tracker_backends", TRACKER_BACKENDS))
    details: dict = {"backends": backends}
    notes = []
    total = 0.0
    for backend in backends:
        work = _scratch(data, "tracker-")
        admin_url, db_name = _pg_admin_url(data.options), data.options.get("pg_db") or f"recon_bench_tracker_{os.getpid()}"
        try:
            if backend == "postgresql":
                url = _create_database(admin_url, db_name)
            else:
                url = f"sqlite:///{work / 'tracker.sqlite'}"
            tracker = Tracker(url)  # creates the schema (migrations): not timed
            statements = _StatementTimer(tracker.engine)
            timings = {}
            for label, run_id in (("first", "bench-run-1"), ("second", "bench-run-2")):
                statements.take()
                started = time.perf_counter()
                outcome = tracker.apply_run("benchmark", run_id=run_id, found=found)
                seconds = time.perf_counter() - started
                by_statement = statements.take()
                outside = seconds - sum(by_statement.values())
                if backend == "postgresql":  # the staging COPY runs on the raw DBAPI connection: no cursor event
                    by_statement["COPY into recon_staging (+ CSV encoding, Python)"] = outside
                else:
                    by_statement["staging executemany on the DBAPI cursor + Python between statements"] = outside
                expected_new, expected_seen = (n, 0) if label == "first" else (0, n)
                if len(outcome.new_ids) != expected_new or outcome.seen_again != expected_seen:
                    raise RuntimeError(f"{backend} {label} apply: {len(outcome.new_ids):,} new and {outcome.seen_again:,} "
                                       f"seen again, expected {expected_new:,} and {expected_seen:,}")
                timings[label] = seconds
                details[f"{backend}/{label}"] = seconds
                details[f"{backend}/{label}/statements"] = by_statement
            total += timings["first"] + timings["second"]
            notes.append(f"{backend}: 1st apply (all new) {timings['first']:.2f} s ({n / timings['first']:,.0f} rows/s), "
                         f"2nd apply (all seen again) {timings['second']:.2f} s ({n / timings['second']:,.0f} rows/s)")
            tracker.engine.dispose()
        finally:
            if backend == "postgresql":
                _drop_database(admin_url, db_name)
            shutil.rmtree(work, ignore_errors=True)
    return {"seconds": total, "notes": notes, "details": details}


# --------------------------------------------------------------------------- incremental: a daily partition vs a full scan

WINDOW_DAY = datetime(2025, 6, 15, tzinfo=UTC)  # after every generated updated_at (2023-01-01 .. 2024-12-31)
WINDOW_SHARE = 0.001  # share of the ids whose updated_at is moved into WINDOW_DAY
PG_COLUMNS = ("id bigint NOT NULL, email text, plan text, status text, amount double precision, "
              "balance double precision, updated_at timestamp, country text, is_paying boolean")


def _changed_ids(data: BenchData, share: float, seed: int = 7):
    """The "changed" set: ``share`` of all ids (A's are 1..rows, B's new ones follow them), each
    with a new update time in WINDOW_DAY (between 05:00 and 19:00, so B's planted +/-4 h shifts
    stay in the day) and the side(s) where it changed: half on both sides ("ab": B keeps its
    planted shift against A), a quarter on A only, a quarter on B only (the other side keeps its
    old time, so the partition reads it as a counterpart, and the two update times now differ).
    An Arrow table (id, new_ts, sides)."""
    import numpy as np
    import pyarrow as pa

    max_id = data.rows + len(gen.load_truth(data.dir)["expected"]["only_in_b"])  # B's new ids follow A's
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(max_id, size=max(1, round(share * max_id)), replace=False) + 1)
    day_us = int(WINDOW_DAY.timestamp() * 1_000_000)
    offsets = rng.integers(5 * 3600 * 1_000_000, 19 * 3600 * 1_000_000, len(ids))
    sides = np.array(["ab", "a", "b"])[rng.choice(3, len(ids), p=[0.5, 0.25, 0.25])]
    return pa.table({"id": pa.array(ids, pa.int64()), "new_ts": pa.array(day_us + offsets, pa.timestamp("us")),
                     "sides": pa.array(sides, pa.string())})


def _load_into_postgres(data: BenchData, url: str, changed, work: Path) -> dict:
    """bench_a / bench_b: the generator's sides with the changed ids' updated_at moved into the
    window (B keeps its planted shift against A), COPYed from CSV written by DuckDB; then a
    primary key on id, an index on updated_at, VACUUM ANALYZE. UNLOGGED: loading writes no WAL,
    reading is the same as for a logged table. Returns timings and the ids inside the window."""
    import duckdb
    import sqlalchemy as sa

    from recon_pipelines.sqlutil import sql_literal

    a, b = sql_literal(str(data.a)), sql_literal(str(data.b))
    sides = {
        "a": f"""SELECT s.id, s.email, s.plan, s.status, s.amount, s.balance,
                        CASE WHEN c.sides IN ('ab', 'a') AND s.updated_at IS NOT NULL THEN c.new_ts
                             ELSE s.updated_at END AS updated_at,
                        s.country, s.is_paying
                 FROM read_parquet({a}) s LEFT JOIN changed c ON s.id = c.id""",
        "b": f"""SELECT s.id, s.email, s.plan, s.status, s.amount, s.balance,
                        CASE WHEN c.id IS NULL OR c.sides = 'a' OR s.updated_at IS NULL THEN s.updated_at
                             WHEN c.sides = 'b' OR o.updated_at IS NULL THEN c.new_ts
                             ELSE c.new_ts + (s.updated_at - o.updated_at) END AS updated_at,
                        s.country, s.is_paying
                 FROM read_parquet({b}) s LEFT JOIN changed c ON s.id = c.id
                 LEFT JOIN (SELECT id, updated_at FROM read_parquet({a}) WHERE id IN (SELECT id FROM changed)) o
                        ON s.id = o.id""",
    }
    start, end = WINDOW_DAY.replace(tzinfo=None), (WINDOW_DAY + timedelta(days=1)).replace(tzinfo=None)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    out: dict = {}
    in_window: set[str] = set()
    try:
        con = duckdb.connect()
        con.register("changed", changed)
        for side, select in sides.items():
            csv = work / f"{side}.csv"
            started = time.perf_counter()
            con.execute(f"COPY ({select}) TO {sql_literal(str(csv))} (FORMAT csv, HEADER false)")
            in_window |= {str(r[0]) for r in con.execute(
                f"SELECT id FROM ({select}) WHERE updated_at >= {sql_literal(str(start))}::TIMESTAMP "
                f"AND updated_at < {sql_literal(str(end))}::TIMESTAMP").fetchall()}
            exported = time.perf_counter()
            table = f"bench_{side}"
            with engine.connect() as conn:
                conn.exec_driver_sql(f"CREATE UNLOGGED TABLE {table} ({PG_COLUMNS})")
            raw = engine.raw_connection()
            try:
                with raw.cursor() as cursor, open(csv, "rb") as fh:
                    cursor.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", fh, size=1 << 20)
                raw.commit()
            finally:
                raw.close()
            copied = time.perf_counter()
            with engine.connect() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
                conn.exec_driver_sql(f"CREATE INDEX {table}_updated_at ON {table} (updated_at)")
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
                rows = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
                size = conn.exec_driver_sql(f"SELECT pg_total_relation_size('{table}')").scalar()
            out[side] = {"rows": rows, "export_seconds": exported - started, "copy_seconds": copied - exported,
                         "index_seconds": time.perf_counter() - copied, "bytes": size}
            csv.unlink()
        con.close()
    finally:
        engine.dispose()
    out["in_window"] = sorted(in_window, key=int)
    # A change on one side only leaves the two update times months apart: a discrepancy on
    # updated_at wherever both sides hold the record with a time (the others are already in truth).
    with duckdb.connect() as con:
        con.register("changed", changed)
        out["one_sided_updated_at"] = [str(r[0]) for r in con.execute(
            f"SELECT s.id FROM read_parquet({b}) s JOIN changed c ON s.id = c.id "
            f"WHERE c.sides <> 'ab' AND s.updated_at IS NOT NULL AND s.id <= {int(data.rows)}").fetchall()]
    return out


def _pg_table_reads(url: str) -> dict[str, dict[str, int]]:
    """Server-side counters per benchmark table (pg_stat_user_tables): scans and tuples read."""
    import sqlalchemy as sa

    time.sleep(1.0)  # backends publish their counters when they exit; the connectors just closed theirs
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT relname, seq_scan, coalesce(seq_tup_read, 0), coalesce(idx_scan, 0), coalesce(idx_tup_fetch, 0) "
                "FROM pg_stat_user_tables WHERE relname IN ('bench_a', 'bench_b')").fetchall()
    finally:
        engine.dispose()
    return {r[0]: {"seq_scan": r[1], "seq_tup_read": r[2], "idx_scan": r[3], "idx_tup_fetch": r[4]} for r in rows}


class _RowCounter:
    """Counts the rows the SQL connector hands over, per table and per kind of read (the
    connector's ``batches`` wrapped for the duration of a ``with`` block)."""

    def __init__(self):
        self.rows: dict[str, int] = {}

    def __enter__(self) -> Self:
        from recon_pipelines.sources.sql import SqlConnector

        self._original = original = SqlConnector.batches
        counter = self

        def batches(connector, columns=None, record_filter=None):
            f = record_filter
            if f is None or (f.modified_from is None and f.modified_to is None and f.keys is None):
                kind = "all"
            elif f.keys is not None:
                kind = "counterparts"
            elif columns is not None and len(columns) == 1:
                kind = "window keys"
            else:
                kind = "window rows"
            label = f"{connector.spec.table}/{kind}"
            for batch in original(connector, columns, record_filter):
                counter.rows[label] = counter.rows.get(label, 0) + batch.num_rows
                yield batch

        SqlConnector.batches = batches
        return self

    def __exit__(self, *exc) -> None:
        from recon_pipelines.sources.sql import SqlConnector

        SqlConnector.batches = self._original

    def side(self, table: str) -> int:
        return sum(v for k, v in self.rows.items() if k.startswith(f"{table}/"))


def _incremental_spec(url: str):
    from recon_pipelines.spec import parse_spec

    return parse_spec({
        "name": "benchmark_incremental",
        "source_a": {"type": "sql", "url": url, "table": "bench_a", "name": "a", "updated_at": "updated_at"},
        "source_b": {"type": "sql", "url": url, "table": "bench_b", "name": "b", "updated_at": "updated_at"},
        "key": "id",
        "fields": gen.SPEC_FIELDS,
        "incremental": {"start": "2025-01-01"},
    })


def _reconcile(spec, scope, storage: Path, url: str) -> dict:
    """One run of the pipeline's comparison steps (snapshots, pairs, discrepancies) in ``scope``."""
    from recon_pipelines import pipeline

    folder = pipeline.RunFolder.of(storage, spec, scope)
    before = _pg_table_reads(url)
    seconds: dict[str, float] = {}
    meta: dict = {}
    with _RowCounter() as counter:
        for step, call in (("snapshot_a", lambda: pipeline.take_snapshot(spec, "a", scope, folder)),
                           ("snapshot_b", lambda: pipeline.take_snapshot(spec, "b", scope, folder)),
                           ("matched_pairs", lambda: pipeline.match_pairs(spec, folder)),
                           ("discrepancies", lambda: pipeline.find_discrepancies(spec, folder))):
            started = time.perf_counter()
            meta[step] = call()
            seconds[step] = time.perf_counter() - started
    after = _pg_table_reads(url)
    server = {t: {k: after.get(t, {}).get(k, 0) - before.get(t, {}).get(k, 0) for k in after.get(t, {})}
              for t in ("bench_a", "bench_b")}
    found = meta["discrepancies"].table
    return {
        "seconds": sum(seconds.values()), "steps": seconds,
        "rows_read": {"a": counter.side("bench_a"), "b": counter.side("bench_b")}, "reads": counter.rows,
        "server": server, "snapshot_rows": {s: meta[f"snapshot_{s}"]["rows"] for s in "ab"},
        "scope_keys": meta["snapshot_a"].get("scope_keys"), "discrepancies": found.num_rows,
        "found": set(zip(*(found.column(c).to_pylist() for c in ("kind", "key", "field")))),
    }


def _records_read(run: dict, table: str) -> tuple[int, int]:
    """(whole records, keys only) the connector fetched from one table in one run."""
    reads = run["reads"]
    records = sum(v for k, v in reads.items() if k.startswith(f"{table}/") and not k.endswith("/window keys"))
    return records, reads.get(f"{table}/window keys", 0)


def _render_incremental(results: list[dict]) -> str:
    out = []
    for res in results:
        r = res["cases"].get("incremental", {})
        if r.get("status") != "ok":
            continue
        d = r["details"]
        lines = [(f"Incremental run vs full scan, {res['rows']:,} rows per side in PostgreSQL, read through the SQL connector "
                 f"(fastest of {d['partition_runs']} partition runs and of {d['full_runs']} full scans):"), "",
                 ("| run | records read A | records read B | share of records | keys-only reads A + B | snapshot_a s | "
                 "snapshot_b s | matched_pairs s | discrepancies s | total s | discrepancies vs truth |"),
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for label, run in (("daily partition", d["partition"]), ("full scan", d["full"])):
            (rec_a, keys_a), (rec_b, keys_b) = _records_read(run, "bench_a"), _records_read(run, "bench_b")
            share = (rec_a + rec_b) / (d["rows"]["a"] + d["rows"]["b"])
            lines.append(f"| {label} | {rec_a:,} | {rec_b:,} | {share:.3%} | {keys_a + keys_b:,} | "
                         + " | ".join(f"{run['steps'][s]:.2f}" for s in ("snapshot_a", "snapshot_b", "matched_pairs", "discrepancies"))
                         + f" | {run['seconds']:.2f} | {run['check']} |")
        lines += ["", *(f"- {note}" for note in r.get("notes", []))]
        out.append("\n".join(lines))
    return "\n\n".join(out)


@case("incremental", default=False, checks_truth=False, timeout=3600, render=_render_incremental, uses_postgres=True,
      description="a daily partition (0.1% of rows changed) vs a full scan, both read from PostgreSQL via the SQL connector")
def run_incremental(data: BenchData, spec) -> dict:
    import shutil

    from recon_pipelines import pipeline

    share = float(data.options.get("window_share", WINDOW_SHARE))
    admin_url = _pg_admin_url(data.options)
    db_name = data.options.get("pg_db") or f"recon_bench_incremental_{os.getpid()}"
    work = _scratch(data, "incremental-")
    try:
        url = _create_database(admin_url, db_name)
        changed = _changed_ids(data, share)
        started = time.perf_counter()
        load = _load_into_postgres(data, url, changed, work)
        load_seconds = time.perf_counter() - started
        in_window = set(load.pop("in_window"))
        one_sided = load.pop("one_sided_updated_at")
        expected_all = gen.expected_set(gen.load_truth(data.dir)) | {("field_mismatch", k, "updated_at") for k in one_sided}
        expected_window = {t for t in expected_all if t[1] in in_window}
        inc_spec = _incremental_spec(url)
        window = pipeline.RunScope.of_window(WINDOW_DAY, WINDOW_DAY + timedelta(days=1))

        def best(scope, runs: int, expected: set) -> dict:
            """The fastest of ``runs`` runs in ``scope``, each checked against ``expected``."""
            done = []
            for i in range(runs):
                storage = work / f"storage-{i}"
                run = _reconcile(inc_spec, scope, storage, url)
                shutil.rmtree(storage, ignore_errors=True)
                missing, extra = len(expected - run["found"]), len(run["found"] - expected)
                run["missing"], run["extra"] = missing, extra
                del run["found"]
                run["check"] = (f"AGREES ({len(expected):,})" if not missing and not extra
                                else f"DIFFERS ({missing:,} missing, {extra:,} extra of {len(expected):,})")
                done.append(run)
            chosen = min(done, key=lambda r: r["seconds"])
            if any(r["missing"] or r["extra"] for r in done):  # report a differing run, not the fastest
                chosen = dict(next(r for r in done if r["missing"] or r["extra"]))
            chosen["all_seconds"] = [r["seconds"] for r in done]
            return chosen

        partition_runs = int(data.options.get("partition_runs", 3))
        full_runs = int(data.options.get("full_runs", 1))
        partition = best(window, partition_runs, expected_window)
        full = best(pipeline.RunScope.full(), full_runs, expected_all)
    finally:
        _drop_database(admin_url, db_name)
        shutil.rmtree(work, ignore_errors=True)
    differs = [r for r in (partition, full) if r["missing"] or r["extra"]]
    rows = {s: load[s]["rows"] for s in "ab"}
    connector_rate = {s: full["snapshot_rows"][s] / full["steps"][f"snapshot_{s}"] for s in "ab"}
    notes = [
        (f"load: {load_seconds:.0f} s for both sides (DuckDB -> CSV {load['a']['export_seconds'] + load['b']['export_seconds']:.0f} s, "
        f"COPY {load['a']['copy_seconds'] + load['b']['copy_seconds']:.0f} s, primary key + updated_at index + VACUUM ANALYZE "
        f"{load['a']['index_seconds'] + load['b']['index_seconds']:.0f} s); {rows['a']:,} + {rows['b']:,} rows, "
        f"{(load['a']['bytes'] + load['b']['bytes']) / 1e9:.1f} GB with indexes"),
        (f"changed set: {len(changed):,} ids ({share:.2%}) moved into {WINDOW_DAY:%Y-%m-%d} (half on both sides, a quarter "
        f"on A only, a quarter on B only); {len(in_window):,} keys in the window on either side; {len(expected_window):,} "
        f"of the {len(expected_all):,} expected discrepancies are among them (with {len(one_sided):,} update-time "
        "mismatches that the one-sided changes create)"),
        f"partition: {partition['scope_keys']:,} scope keys; rows fetched by the connector: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(partition["reads"].items()))
        + "; server tuples read (seq + index fetches): "
        + ", ".join(f"{t} {v['seq_tup_read'] + v['idx_tup_fetch']:,} ({v['seq_scan']} seq scans, {v['idx_scan']} index scans)"
                    for t, v in partition["server"].items()),
        (f"partition runs (s): {', '.join(f'{s:.2f}' for s in partition['all_seconds'])}; "
        f"full scans (s): {', '.join(f'{s:.2f}' for s in full['all_seconds'])}"),
        (f"partition / full scan: {partition['seconds'] / full['seconds']:.2%} of the time "
        f"({full['seconds'] / partition['seconds']:.0f}x faster); records read "
        f"{sum(_records_read(partition, t)[0] for t in ('bench_a', 'bench_b')) / (rows['a'] + rows['b']):.3%} of the rows, "
        f"plus keys-only reads of {sum(_records_read(partition, t)[1] for t in ('bench_a', 'bench_b')) / (rows['a'] + rows['b']):.3%} "
        "(each side's window keys are read twice: once by each snapshot step)"),
        (f"SQL connector, full snapshot: {connector_rate['a']:,.0f} rows/s (A), {connector_rate['b']:,.0f} rows/s (B), "
        "psycopg2 server-side cursor -> Python rows -> Arrow, 50,000-row chunks"),
    ]
    return {
        "seconds": full["seconds"],  # the main table's row: the full scan
        # checked here: the truth is the generator's plus the update times the changed set moved apart
        "check": "DIFFERS" if differs else "AGREES",
        "missing": sum(r["missing"] for r in differs), "extra": sum(r["extra"] for r in differs), "duplicate_rows": 0,
        "notes": notes,
        "details": {"rows": rows, "load": load, "load_seconds": load_seconds, "changed": len(changed),
                    "in_window": len(in_window), "expected_in_window": len(expected_window),
                    "partition": partition, "full": full, "partition_runs": partition_runs, "full_runs": full_runs,
                    "connector_rows_per_second": connector_rate},
    }


# --------------------------------------------------------------------------- worker (one case, own process)


def _as_table(discrepancies):
    import pyarrow as pa

    if isinstance(discrepancies, pa.Table):
        table = discrepancies
    elif hasattr(discrepancies, "to_dict") and hasattr(discrepancies, "columns"):  # a pandas DataFrame
        table = pa.Table.from_pandas(discrepancies[["kind", "key", "field"]], preserve_index=False)
    else:
        kinds, keys, fields = zip(*discrepancies) if discrepancies else ((), (), ())
        table = pa.table({"kind": list(kinds), "key": list(keys), "field": list(fields)})
    return table.select(["kind", "key", "field"]).cast(pa.schema([("kind", pa.string()), ("key", pa.string()), ("field", pa.string())]))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(name: str, directory: Path, rows: int, drift: str, result_path: Path, options: dict | None = None) -> int:
    data = BenchData(directory, directory / "a.parquet", directory / "b.parquet", rows, drift, options or {})
    spec = None if CASES[name].standalone else build_spec(data)
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    out = CASES[name].fn(data, spec) or {}
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    record = {
        "seconds": out.get("seconds", wall),
        "peak_rss_bytes": peak,
        "cpu_seconds": cpu,
        "notes": out.get("notes", []),
        "details": out.get("details", {}),
        "discrepancies_file": None,
    }
    for key in ("check", "missing", "extra", "duplicate_rows", "missing_examples", "extra_examples"):
        if key in out:  # a case that checks its own result (against a truth of its own)
            record[key] = out[key]
    if out.get("discrepancies") is not None:
        import pyarrow.parquet as pq

        path = result_path.with_suffix(".parquet")
        pq.write_table(_as_table(out["discrepancies"]), path)
        record["discrepancies_file"] = str(path)
    result_path.write_text(json.dumps(record, default=str), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- parent


def run_case(name: str, directory: Path, rows: int, drift: str, timeout: float, options: dict | None = None,
             throwaway_db: bool = False) -> dict:
    """Run one case in a fresh interpreter; returns its record plus the process's own peak RSS."""
    options = dict(options or {})
    if throwaway_db:  # one throwaway database per run, named here so it is dropped whatever happens
        import uuid

        options["pg_db"] = f"recon_bench_{name}_{uuid.uuid4().hex[:10]}"
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="case-", dir=directory) as tmp:
        options["work_dir"] = tmp
        result_path = Path(tmp) / "result.json"
        log_path = Path(tmp) / "output.txt"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--data-dir", str(directory),
               "--worker-rows", str(rows), "--worker-drift", drift, "--worker-result", str(result_path),
               "--worker-options", json.dumps(options)]
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the worker's own session: only what this run started
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen consistent
        elapsed = time.perf_counter() - started
        if options.get("pg_db"):  # the worker drops it; this covers a worker killed on --timeout
            try:
                _drop_database(_pg_admin_url(options), options["pg_db"])
            except Exception as exc:  # noqa: BLE001 - reported, never fatal
                print(f"(could not drop database {options['pg_db']}: {str(exc).splitlines()[0]})", end=" ")
        output = log_path.read_text(encoding="utf-8", errors="replace")
        record: dict = {"process_seconds": elapsed, "process_peak_rss_bytes": usage.ru_maxrss * 1024}
        if timed_out:
            return record | {"status": "timeout", "error": f"killed after {timeout:.0f} s"}
        if proc.returncode != 0 or not result_path.exists():
            tail = "\n".join(output.strip().splitlines()[-15:])
            return record | {"status": "error", "error": f"exit code {proc.returncode}\n{tail}"}
        record |= json.loads(result_path.read_text(encoding="utf-8")) | {"status": "ok"}
        if record.get("discrepancies_file"):
            import pyarrow.parquet as pq

            table = pq.read_table(record["discrepancies_file"])
            record["found"] = set(zip(*(table.column(c).to_pylist() for c in ("kind", "key", "field"))))
            record["found_rows"] = table.num_rows
        return record


def repeat_case(c: Case, directory: Path, rows: int, drift: str, args, expected: set) -> dict:
    """Run a case ``--repeat`` times in a row and combine the runs (see ``combine_runs``)."""
    runs = []
    for _ in range(max(1, args.repeat)):
        record = run_checked(c, directory, rows, drift, args, expected)
        if record["status"] != "ok" or record.get("check") == "DIFFERS":
            return record | {"runs_seconds": [r["seconds"] for r in runs] + [record.get("seconds")]}
        runs.append(record)
    return combine_runs(runs, args.stat)


def run_checked(c: Case, directory: Path, rows: int, drift: str, args, expected: set) -> dict:
    """One run of a case in its own subprocess, its discrepancy set checked against the truth."""
    load = os.getloadavg()[0]
    timeout = args.timeout or c.timeout or DEFAULT_TIMEOUT
    record = run_case(c.name, directory, rows, drift, timeout, case_options(args), needs_postgres(c, args))
    record["load_before"] = load
    if c.checks_truth and record["status"] == "ok":
        check(record, expected, args.examples)
    return record


def combine_runs(runs: list[dict], stat: str = "best") -> dict:
    """The runs of one case as one record: the fastest run (``best``: interference from other
    processes only ever adds time) or the median one (``median``, for ratios between cases run
    alternately on a loaded machine), with the highest peak RSS of all runs. ``runs_details``
    keeps every run's details (a case's own report can take the best of each of its timings)."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    chosen = dict(ordered[(len(ordered) - 1) // 2] if stat == "median" else ordered[0])
    if stat == "median" and len(ordered) % 2 == 0:  # the mean of the two middle runs, as medians go
        chosen["seconds"] = (ordered[len(ordered) // 2 - 1]["seconds"] + ordered[len(ordered) // 2]["seconds"]) / 2
    chosen["stat"] = stat
    chosen["runs_seconds"] = [r["seconds"] for r in runs]
    chosen["runs_load_before"] = [r["load_before"] for r in runs]
    chosen["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
    chosen["runs_details"] = [r.get("details", {}) for r in runs]
    return chosen


def run_alternately(cases: list[Case], directory: Path, rows: int, drift: str, args, expected: set) -> dict[str, dict]:
    """``--repeat`` rounds of every case in turn (A B C, A B C, ...), so a change in the machine's
    load falls on all of them alike; each case's runs are then combined (``--stat``)."""
    runs: dict[str, list[dict]] = {c.name: [] for c in cases}
    failed: dict[str, dict] = {}
    for round_number in range(max(1, args.repeat)):
        for c in cases:
            if c.name in failed:
                continue
            print(f"-- {c.name} (round {round_number + 1}) ...", end=" ", flush=True)
            record = run_checked(c, directory, rows, drift, args, expected)
            print(f"{record['seconds']:.2f} s" if record["status"] == "ok" else record["status"].upper(),
                  f"({record.get('check', 'not checked')}; load {record['load_before']:.1f})" if record["status"] == "ok" else "")
            if record["status"] != "ok" or record.get("check") == "DIFFERS":
                failed[c.name] = record | {"runs_seconds": [r["seconds"] for r in runs[c.name]] + [record.get("seconds")]}
            else:
                runs[c.name].append(record)
    return {c.name: failed.get(c.name) or combine_runs(runs[c.name], args.stat) for c in cases}


DEFAULT_TIMEOUT = 600.0


def needs_postgres(c: Case, args) -> bool:
    """Whether this run of the case needs the PostgreSQL server (the tracker case may be SQLite only)."""
    if c.name == "tracker":
        return "postgresql" in args.tracker_backends.split(",")
    return c.uses_postgres


def case_options(args) -> dict:
    """The command-line options the scale cases read (passed to each worker as JSON)."""
    return {"pg_url": args.pg_url, "baseline_tree": args.baseline_tree, "tracker_backends": args.tracker_backends.split(","),
            "window_share": args.window_share, "partition_runs": args.partition_runs, "full_runs": args.full_runs}


def print_record(name: str, record: dict) -> None:
    """One case's line (and notes) as it finishes."""
    if record["status"] == "ok":
        spread = ""
        if len(record["runs_seconds"]) > 1:
            spread = (f" ({record.get('stat', 'best')} of {', '.join(f'{s:.2f}' for s in record['runs_seconds'])}; 1-min load before each: "
                      f"{', '.join(f'{x:.1f}' for x in record['runs_load_before'])})")
        print(f"{record['seconds']:.2f} s{spread}, CPU {record['cpu_seconds']:.2f} s, "
              f"peak RSS {_gb(record['peak_rss_bytes'])} GB: "
              f"{record.get('check', 'not checked')}")
    else:
        print(f"{record['status'].upper()}: {record['error']}")
    for note in record.get("notes", []):
        print(f"     {note}")
    if record.get("check") == "DIFFERS":
        print(f"     {record['missing']:,} expected but not reported, {record['extra']:,} reported but not expected, "
              f"{record['duplicate_rows']:,} duplicate rows")
        for label in ("missing", "extra"):
            for example in record[f"{label}_examples"]:
                print(f"       {label}: {tuple(example)}")


def check(record: dict, expected: set, examples: int) -> None:
    found = record.pop("found", None)
    if found is None:
        return
    missing, extra = expected - found, found - expected
    duplicates = record.get("found_rows", 0) - len(found)
    record["check"] = "AGREES" if not missing and not extra and not duplicates else "DIFFERS"
    record["missing"], record["extra"], record["duplicate_rows"] = len(missing), len(extra), duplicates

    def key(t):
        return (t[0], t[2] or "", int(t[1]) if t[1].isdigit() else t[1])

    record["missing_examples"] = [list(t) for t in sorted(missing, key=key)[:examples]]
    record["extra_examples"] = [list(t) for t in sorted(extra, key=key)[:examples]]


def _gb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e9:.2f}"


def _ratio(x: float | None, base: float | None) -> str:
    return "-" if x is None or not base else f"{x / base:.1f}x"


def engine_vs_baselines(records: dict[str, dict]) -> list[str]:
    """The issue's targets in one place: the engine against the hand-written query (2% drift:
    no slower) and against the hash-scan floor (0.01% drift: within 1.5x), in wall and in CPU
    seconds (on a shared machine CPU seconds move less). Asserts that the hand-written query
    found exactly the engine's discrepancies: a faster query that answers something else is
    no yardstick."""
    engine = records.get(ENGINE, {})
    if engine.get("status") != "ok":
        return []
    query = records.get("duckdb_query", {})
    if query.get("status") == "ok" and "found_rows" in engine and "found_rows" in query:
        assert query["found_rows"] == engine["found_rows"], (
            f"the hand-written query found {query['found_rows']:,} discrepancies, the engine {engine['found_rows']:,}")
    lines = []
    for name, label in (("duckdb_query", "hand-written query"), ("hash_scan", "hash-scan floor"), ("engine_before", "engine before")):
        other = records.get(name, {})
        if other.get("status") != "ok":
            continue
        lines.append(f"engine / {label}: {engine['seconds'] / other['seconds']:.2f}x wall "
                     f"({engine['seconds']:.2f} s vs {other['seconds']:.2f} s), "
                     f"{engine['cpu_seconds'] / other['cpu_seconds']:.2f}x CPU "
                     f"({engine['cpu_seconds']:.2f} s vs {other['cpu_seconds']:.2f} s), "
                     f"{engine['peak_rss_bytes'] / other['peak_rss_bytes']:.2f}x peak RSS"
                     + (f"; both found {engine['found_rows']:,} discrepancies" if name == "duckdb_query" and "found_rows" in engine else ""))
    return lines


def render_table(rows: int, records: dict[str, dict]) -> str:
    base = records.get(ENGINE, {})
    base_s = base.get("seconds") if base.get("status") == "ok" else None
    base_m = base.get("peak_rss_bytes") if base.get("status") == "ok" else None
    lines = ["| tool | wall s | CPU s | peak RSS GB | rows/s | time vs engine | memory vs engine | discrepancies vs truth |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in records.items():
        if r.get("status") != "ok":
            lines.append(f"| {name} | - | - | - | - | - | - | {r.get('status', '?').upper()}: {(r.get('error') or '?').splitlines()[0]} |")
            continue
        s, m = r["seconds"], r["peak_rss_bytes"]
        verdict = r.get("check", "not checked")
        if verdict == "DIFFERS":
            verdict += f" ({r['missing']:,} missing, {r['extra']:,} extra)"
        lines.append(f"| {name} | {s:.2f} | {r.get('cpu_seconds', float('nan')):.2f} | {_gb(m)} | {rows / s:,.0f} | {_ratio(s, base_s)} | {_ratio(m, base_m)} | {verdict} |")
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    return [gen.parse_count(t.strip()) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=f"Benchmark the engine against datacompy and plain pandas on the same files, and the\n"
                    f"project's own paths at scale (Dagster, tracker writes, incremental runs).\n\n  {COMMAND}",
        epilog="cases: " + "; ".join(f"{c.name}{'' if c.default else ' (only when named)'}: {c.description}" for c in CASES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="rows per side, comma separated (default 1e5,1e6,1e7; 1e8 only when asked)")
    parser.add_argument("--sparse", action="store_true", help="0.01%% drift instead of 2%%")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cases", "--case", help=f"comma separated, from: {', '.join(CASES)} (default: all default cases)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest is reported (default 1; see --stat)")
    parser.add_argument("--alternate", action="store_true",
                        help="run the cases in turn, --repeat rounds (A B C, A B C, ...), instead of each case's runs in a row")
    parser.add_argument("--stat", choices=("best", "median"), default="best",
                        help="with --repeat: report each case's fastest run (default) or its median run")
    parser.add_argument("--timeout", type=float, default=None,
                        help=f"seconds per case run before it is killed (default {DEFAULT_TIMEOUT:.0f}; "
                             "tracker 1800, incremental 3600)")
    parser.add_argument("--skip-peers-above", type=gen.parse_count, default=int(3e7),
                        help="skip in-memory peers (datacompy, pandas) above this many rows (default 3e7: they would exceed memory)")
    parser.add_argument("--baseline-tree", help="engine_before case: a checkout of the package to compare the engine with")
    parser.add_argument("--regenerate", action="store_true", help="regenerate the data even when it exists")
    parser.add_argument("--examples", type=int, default=5, help="example differences shown for a case that DIFFERS")
    parser.add_argument("--json", type=Path, help="write all results here (default benchmarks/.data/results-<drift>-<time>.json)")
    scale = parser.add_argument_group("scale cases (tracker, incremental)")
    scale.add_argument("--pg-url", help=f"PostgreSQL server on which the tracker and incremental cases create and drop "
                                        f"throwaway databases (default ${PG_URL_ENV}, else $RECON_TEST_PG_URL, else {DEFAULT_PG_URL})")
    scale.add_argument("--tracker-rows", default="1e5,1e6", help="tracker case: discrepancies written per run, comma separated (default 1e5,1e6)")
    scale.add_argument("--tracker-backends", default=",".join(TRACKER_BACKENDS), help="tracker case: postgresql,sqlite (default both)")
    scale.add_argument("--window-share", type=float, default=WINDOW_SHARE,
                       help=f"incremental case: share of ids modified in the partition's day (default {WINDOW_SHARE})")
    scale.add_argument("--partition-runs", type=int, default=3, help="incremental case: daily-partition runs, the fastest reported (default 3)")
    scale.add_argument("--full-runs", type=int, default=1, help="incremental case: full scans, the fastest reported (default 1)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-drift", help=argparse.SUPPRESS)
    parser.add_argument("--worker-result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--worker-options", type=json.loads, default={}, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return worker(args.worker, args.data_dir, args.worker_rows, args.worker_drift, args.worker_result, args.worker_options)

    names = [n.strip() for n in args.cases.split(",")] if args.cases else [c.name for c in CASES.values() if c.default]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    names = list(dict.fromkeys(names))
    bad_backends = set(args.tracker_backends.split(",")) - set(TRACKER_BACKENDS)
    if bad_backends:
        parser.error(f"--tracker-backends: unknown {', '.join(sorted(bad_backends))}; known: {', '.join(TRACKER_BACKENDS)}")
    data_names = [n for n in names if not CASES[n].standalone]
    standalone_names = [n for n in names if CASES[n].standalone]
    baseline_added = any(CASES[n].needs_engine for n in data_names) and ENGINE not in data_names
    if baseline_added:  # a ratio against the engine needs the engine, timed the same way
        data_names.insert(0, ENGINE)
    drift = "sparse" if args.sparse else "default"
    sizes = parse_sizes(args.sizes)
    print(f"$ {os.path.relpath(sys.executable)} -m benchmarks.run {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(f"machine: {os.cpu_count()} CPUs, {_total_memory_gb():.0f} GB RAM, Python {sys.version.split()[0]}; "
          f"{_versions()}")
    if baseline_added:
        print(f"({ENGINE} added: {', '.join(n for n in data_names if CASES[n].needs_engine)} is compared with it)")
    pg_problem = None
    if any(needs_postgres(CASES[n], args) for n in names):
        pg_problem = _pg_problem(_pg_admin_url(case_options(args)))
        if pg_problem:
            print(f"({pg_problem}: {', '.join(n for n in names if needs_postgres(CASES[n], args))} skipped; set --pg-url)")

    def skip_reason(c: Case, rows: int) -> str | None:
        if needs_postgres(c, args) and pg_problem:
            return pg_problem
        if c.peer and rows > args.skip_peers_above:
            return f"above --skip-peers-above ({args.skip_peers_above:,} rows): holds both sides and their merge in memory"
        return None

    all_results = []
    for rows in sizes if data_names else []:
        truth = gen.ensure(rows, drift, args.seed)
        directory = gen.data_dir(rows, drift, args.seed)
        expected = gen.expected_set(truth)
        print(f"\n== {rows:,} rows per side, {drift} drift ({gen.DRIFTS[drift].total:.2%} of rows affected): "
              f"{len(expected):,} expected discrepancies; B has {truth['rows_b']:,} rows; data in {directory}")
        print("   expected: " + ", ".join(f"{c['kind']}{'/' + c['field'] if c['field'] else ''} {c['count']:,}" for c in truth["counts"]))
        print("   planted, not discrepancies: " + ", ".join(f"{k} {len(v):,}" for k, v in truth["not_discrepancies"].items()))
        records: dict[str, dict] = {}
        runnable = []
        for name in data_names:
            c = CASES[name]
            reason = skip_reason(c, rows)
            if reason:
                records[name] = {"status": "skipped", "error": reason}
                print(f"-- {name}: skipped, {reason}")
                continue
            runnable.append(c)
            if not args.alternate:
                print(f"-- {name} ...", end=" ", flush=True)
                record = repeat_case(c, directory, rows, drift, args, expected)
                records[name] = record
                print_record(name, record)
        if args.alternate:
            alternated = run_alternately(runnable, directory, rows, drift, args, expected)
            for name, record in alternated.items():
                print(f"-- {name}:", end=" ")
                print_record(name, record)
            records = {name: records.get(name) or alternated[name] for name in data_names}
        print()
        print(render_table(rows, records))
        baseline_lines = engine_vs_baselines(records)
        if baseline_lines:
            print()
            print("\n".join(baseline_lines))
        all_results.append({"rows": rows, "drift": drift, "seed": args.seed, "expected": len(expected),
                            "generation_seconds": truth.get("generation_seconds"), "cases": records})
    for name in data_names:
        report = CASES[name].render(all_results) if CASES[name].render and all_results else ""
        if report:
            print(f"\n{report}")

    standalone_results = []
    for name in standalone_names:
        c = CASES[name]
        counts = parse_sizes(args.tracker_rows) if name == "tracker" else sizes
        print(f"\n== {name}: {c.description}")
        results = []
        for n in counts:
            reason = skip_reason(c, n)
            if reason:
                record = {"status": "skipped", "error": reason}
                print(f"-- {name} {n:,}: skipped, {reason}")
            else:
                print(f"-- {name} {n:,} ...", end=" ", flush=True)
                record = repeat_case(c, gen.DATA_ROOT / "scratch", n, "-", args, set())
                print_record(name, record)
            results.append({"rows": n, "cases": {name: record}})
        report = c.render(results) if c.render else ""
        if report:
            print(f"\n{report}")
        standalone_results += results

    out = args.json or gen.DATA_ROOT / f"results-{drift}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": sys.argv, "cpus": os.cpu_count(), "memory_gb": _total_memory_gb(),
                               "versions": _versions(), "results": all_results, "standalone": standalone_results},
                              indent=2, default=str), encoding="utf-8")
    print(f"\nresults written to {out}")
    return 0 if all(r.get("check", "AGREES") == "AGREES" and r.get("status") in ("ok", "skipped")
                    for res in all_results + standalone_results for r in res["cases"].values()) else 1


def _total_memory_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("duckdb", "pandas", "pyarrow", "datacompy", "dagster", "sqlalchemy"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} -")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
