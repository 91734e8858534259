"""Pairing on Spark: a sound pre-filter runs on the cluster, the exact rules run locally.

Spark reads both files (Parquet or CSV), audits the keys (null or blank keys as
``engine/keys.py`` defines them, duplicate keys), groups each side by key carrying one
64-bit ``xxhash64`` of each record's compared fields, full-outer-joins the two on the key and
counts the pairs whose hashes agree. Only the *candidates* come back to the driver: one-sided
records, pairs whose hashes differ or that a hash cannot settle, and the key anomalies. Spark
writes them as Parquet to a staging folder; the local DuckDB connection reads them into
``__pairs`` (spilling to disk if it must, never holding them as Python objects), in exactly the
shape ``compare.match`` leaves, and ``compare.evaluate`` applies the field rules
(``engine/rules.py``, defined once, compiled for DuckDB only).

Soundness: a pair Spark calls identical is never looked at again, so Spark's equality must imply
the equality DuckDB sees after reading the same file. Hence (docs/engine-spark.md):

* every column Spark reads must have the type DuckDB reads (``_SAME_VALUES``), else refused;
* a field is hashed raw only when both sides have the same type and the rule agrees on equal
  raw values; integers and decimals of different types are hashed as one exact DECIMAL under a
  numeric or plain exact rule; any other case makes every pair a candidate (correct, not fast);
* values a rule may reject even when equal (text under a numeric rule, an epoch out of range,
  ``both_null: differ``) make their pair a candidate, as ``rules.unsettled`` does locally;
* each value is hashed beside its null flag (Spark's hash skips nulls); -0.0 and 0.0 hash
  alike on both engines, as DuckDB's ``IS DISTINCT FROM`` has them equal.

What crosses the wire is the candidates and their keys (``Pairing.rows_moved``), so the cost to
the driver grows with drift, not with the tables: at high drift the local evaluation (one
machine's cores and disk) becomes the limit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from recon_pipelines.engine.compare import ComparisonError, MatchStats, Side, _key_text
from recon_pipelines.engine.rules import _is_number_type, _sides_read_differently
from recon_pipelines.engine.strategies.base import Pairing, Sides
from recon_pipelines.instants import WHITESPACE
from recon_pipelines.spec.models import ExactRule, FileSource, NumericRule, ReconciliationSpec, TimestampRule
from recon_pipelines.sqlutil import quote_ident as q
from recon_pipelines.sqlutil import sql_literal


MASTER_ENV = "RECON_SPARK_MASTER"
DEFAULT_MASTER = "local[2]"
# Session settings that make Spark read values as DuckDB does: instants in UTC, dates and
# times proleptic Gregorian (never rebased), column names case-sensitive as DuckDB's quoted ones.
SESSION_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.caseSensitive": "true",
    "spark.sql.parquet.datetimeRebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.int96RebaseModeInRead": "CORRECTED",
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # staged candidates: not INT96
    "spark.sql.adaptive.enabled": "true",
    # Few shuffle partitions for a small local master; a cluster raises it (SparkPairing.conf).
    "spark.sql.shuffle.partitions": "16",
    "spark.driver.memory": "2g",
}
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
# Text a numeric rule always reads as a finite number (whitespace trimmed, at most 36 digits and
# a two-digit exponent: far inside a double): an equal pair of such texts agrees, and DuckDB's
# hash settles it too. Anything else under a numeric rule is left to the rules.
_TRIM = "[" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]*"
_PLAIN_NUMBER = rf"^{_TRIM}[+-]?([0-9]{{1,18}}(\.[0-9]{{0,18}})?|\.[0-9]{{1,18}})([eE][+-]?[0-9]{{1,2}})?{_TRIM}\z"
# Epochs (in seconds) the timestamp rule reads (instants.py: years 1..9999).
_EPOCH_RANGE_S = (-62_135_596_800, 253_402_300_799)
_EPOCH_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000}


class SparkUnavailable(ComparisonError):
    """The Spark engine cannot start here (no pyspark, no Java); the message says how to fix it."""


# --------------------------------------------------------------------------- the session


_lock = threading.Lock()
_session = None  # ours, not SparkSession.getActiveSession(): that one is per thread (Dagster runs steps in threads)


def java_available() -> bool:
    home = os.environ.get("JAVA_HOME")
    return bool((home and (Path(home) / "bin" / "java").exists()) or shutil.which("java"))


def spark_session(master: str, conf: dict[str, str] | None = None):
    """The process's one Spark session on ``master`` (a session on another master is stopped:
    a process holds one SparkContext)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable("spark engine: pyspark is not installed (pip install 'recon-pipelines[spark]')") from None
    if not java_available():
        raise SparkUnavailable("spark engine: no Java runtime found (install Java 17 or set JAVA_HOME)")
    global _session
    with _lock:
        if _session is not None and _session.sparkContext._jsc is not None and _session.sparkContext.master == master:
            return _session
        if _session is not None:
            _session.stop()
        builder = SparkSession.builder.master(master).appName("recon-pipelines")
        for key, value in {**SESSION_CONF, **(conf or {})}.items():
            builder = builder.config(key, value)
        _session = builder.getOrCreate()
        _session.sparkContext.setLogLevel("ERROR")
        return _session


def stop_session() -> None:
    """Stop this process's Spark session (its JVM stays for the next one)."""
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None


# --------------------------------------------------------------------------- the strategy


@dataclass(frozen=True)
class SparkPairing:
    """Pairs two files on Spark (``master``: ``local[2]``, ``spark://host:7077``, ...)."""

    master: str | None = None  # None: resolve_master (--spark-master, $RECON_SPARK_MASTER, the spec's, local[2])
    conf: dict[str, str] = field(default_factory=dict)
    # Where Spark writes the candidates for the driver's DuckDB to read: a folder both see (on a
    # cluster, a shared volume); default a temporary folder on this machine. Removed after loading.
    staging_dir: str | None = None
    name: str = "spark"
    reads_sources = False  # it pairs the sides' files, opened locally (Side.file)
    reads_whole_files = True  # each side must be one file under the spec's names (a snapshot, not a scan in place)
    why = "the spec's engine is spark: paired on Spark, judged in DuckDB"

    def refuses(self, spec: ReconciliationSpec) -> str | None:
        if spec.key_mapping is not None:
            return "key_mapping: the mapping translates keys locally"
        if spec.sample is not None:
            return "sample: keys are sampled with DuckDB's hash"
        for side in "ab":
            source = spec.source_a if side == "a" else spec.source_b
            if not isinstance(source, FileSource):
                return f"source_{side}: Spark reads files (Parquet, CSV); a {source.type} source runs on the default engine"
            if source.filter is not None:
                return f"source_{side}.filter: written in DuckDB SQL, which Spark does not run"
            if source.resolved_format == "csv" and source.columns:
                return f"source_{side}.columns: Spark and DuckDB parse declared CSV types differently"
        return None

    def pair(self, spec: ReconciliationSpec, con: duckdb.DuckDBPyConnection, sides) -> Pairing:
        sides = (sides.a, sides.b) if isinstance(sides, Sides) else tuple(sides)
        for side in sides:
            if side.file is None or (side.file.filter is not None):
                raise ComparisonError(f"{side.label}: the spark engine reads whole files only")
        master = resolve_master(self.master, spec.engine.master)
        spark = spark_session(master, self.conf)
        plan = _Plan(spec, con, spark, sides)
        with tempfile.TemporaryDirectory(prefix="recon-spark-", dir=self.staging_dir) as staging:
            stats, moved = plan.run(Path(staging))
        return Pairing(stats, self.name, f"paired on Spark ({master})", moved)


def resolve_master(given: str | None = None, spec_master: str | None = None) -> str:
    """The master to use: given (``--spark-master``, a resource), else $RECON_SPARK_MASTER, else
    the spec's ``engine.master``, else ``local[2]``: the deployment's cluster wins over the spec's."""
    return given or os.environ.get(MASTER_ENV) or spec_master or DEFAULT_MASTER


# --------------------------------------------------------------------------- the plan


class _Plan:
    """One pairing: reads both sides on Spark, checks their types against DuckDB's, pairs them
    (``run``) and loads the candidates into DuckDB (``_load``)."""

    def __init__(self, spec: ReconciliationSpec, con, spark, sides: tuple[Side, Side]):
        from pyspark.sql import functions as F

        self.F, self.spec, self.con, self.spark = F, spec, con, spark
        self.keys = [k.name for k in spec.key]
        self.fields = [f.name for f in spec.fields]
        self.duck = {s: _duck_types(con, side) for s, side in zip("ab", sides)}
        self.frames = {s: self._read(side, self.duck[s]) for s, side in zip("ab", sides)}
        # Keys typed differently on each side are joined as text, as compare.match does.
        self.key_types = {}
        for k in self.keys:
            ta, tb = self.duck["a"][k], self.duck["b"][k]
            if ta != tb and not all(t in _INTEGERS or t == "VARCHAR" for t in (ta, tb)):
                raise ComparisonError(f"key {k}: typed {ta} on A and {tb} on B; the spark engine joins such keys "
                                      "as text only for integers and text")
            if ta in ("FLOAT", "DOUBLE") or tb in ("FLOAT", "DOUBLE"):
                raise ComparisonError(f"key {k}: a floating-point key; the spark engine does not pair on it")
            self.key_types[k] = ta if ta == tb else "VARCHAR"

    def _read(self, side: Side, duck: dict[str, str]):
        F, source = self.F, side.file
        path = source.path
        try:
            if source.resolved_format == "parquet":
                if Path(path).is_dir():
                    path = str(Path(path) / "*.parquet")
                frame = self.spark.read.parquet(path)
            else:  # RFC 4180, every column text: what FileConnector asks DuckDB for
                frame = (self.spark.read.option("header", "true").option("sep", source.delimiter).option("quote", '"')
                         .option("escape", '"').option("multiLine", "true").option("mode", "FAILFAST").csv(path))
            frame = frame.select([F.col(_spark_name(src)).alias(name) for name, src in side.columns.items()])
        except Exception as exc:  # noqa: BLE001 - Spark's analysis errors come as several classes
            raise ComparisonError(f"{side.label}: Spark cannot read it: {_first_line(exc)}") from None
        for column in frame.schema.fields:
            if not _same_values(column.dataType, duck[column.name]):
                raise ComparisonError(f"{side.label}: column {column.name}: Spark reads {column.dataType.simpleString()}, "
                                      f"DuckDB {duck[column.name]}; the spark engine needs both to read the same values")
        return frame

    # ----------------------------------------------------------------- per side

    def _side(self, s: str):
        """One side grouped by key: rows per key, the record hash, and whether a hash can settle it."""
        F, other = self.F, "b" if s == "a" else "a"
        frame, own, theirs = self.frames[s], self.duck[s], self.duck[other]
        operands, strict = [], []
        for rule in self.spec.fields:
            ops, tests = self._field(rule, F.col(_spark_name(rule.name)), own[rule.name], theirs[rule.name], s)
            operands += ops
            strict += tests
        row_hash = F.xxhash64(*operands) if operands else F.lit(0).cast("long")
        unsettled = _any(F, strict)
        keys = [F.col(_spark_name(k)).cast("string").alias(k) if self.key_types[k] != own[k] else F.col(_spark_name(k))
                for k in self.keys]
        invalid = _any(F, [F.col(_spark_name(k)).isNull() for k in self.keys]
                       + [F.col(_spark_name(k)).rlike(_blank_regex()) for k in self.keys if own[k] == "VARCHAR"])
        grouped = (frame.select(*keys, row_hash.alias("__h"), unsettled.alias("__u")).groupBy(*self.keys)
                   .agg(F.count(F.lit(1)).alias("__n"), F.min("__h").alias("__h"), F.max("__u").alias("__u")))
        # Invalid is a property of the key, so it is computed once per group.
        grouped = grouped.withColumn("__inv", invalid)
        return grouped.select(*[F.col(_spark_name(k)).alias(f"__{s}{i}") for i, k in enumerate(self.keys)],
                              *[F.col(f"__{c}").alias(f"__{s}_{c}") for c in ("n", "h", "u", "inv")])

    def _field(self, rule, col, own: str, other: str, side: str):
        """(hash operands, unsettled tests) of one field on one side; see the module docstring."""
        F = self.F
        always = F.lit(True)
        tests = [col.isNull()] if rule.nulls.both_null == "differ" else []
        if isinstance(rule, TimestampRule) and _sides_read_differently(rule):
            return [], [always]
        if isinstance(rule, NumericRule) and rule.scale_a != rule.scale_b:
            return [], [always]
        value = col
        if own != other:
            common = _common_decimal(own, other)
            plain_exact = isinstance(rule, ExactRule) and not rule.values
            if common is None or not (isinstance(rule, NumericRule) or plain_exact):
                return [], [always]
            value = col.cast(common)
        if isinstance(rule, NumericRule) and not _is_number_type(own):
            # BOOLEAN or text: only a plain decimal text is surely read alike on both sides.
            plain = col.rlike(_PLAIN_NUMBER) if own == "VARCHAR" else F.lit(False)
            tests.append(col.isNotNull() & ~plain)
        if isinstance(rule, TimestampRule) and not (own.startswith("TIMESTAMP") or own == "DATE"):
            unit = _EPOCH_PER_S[(rule.epoch_unit_a if side == "a" else rule.epoch_unit_b) or "s"]
            low, high = (_EPOCH_RANGE_S[0] * unit, _EPOCH_RANGE_S[1] * unit)
            in_range = col.between(low, high) if own in _INTEGERS else F.lit(False)
            tests.append(col.isNotNull() & ~in_range)
        # Spark's hash skips nulls: the null flag keeps (NULL, 'x') apart from ('x', NULL).
        # -0.0 and 0.0 (and every NaN) hash alike, as DuckDB's hash and IS DISTINCT FROM have them.
        return [col.isNull(), value], tests

    # ----------------------------------------------------------------- pairing

    def run(self, staging: Path) -> tuple[MatchStats, dict[str, int]]:
        F = self.F
        a, b = self._side("a"), self._side("b")
        on = [a[f"__a{i}"].eqNullSafe(b[f"__b{i}"]) for i in range(len(self.keys))]
        condition = on[0]
        for extra in on[1:]:
            condition = condition & extra
        joined = a.join(b, condition & ~a["__a_inv"] & ~b["__b_inv"], "full_outer")
        in_a, in_b = F.col("__a_n").isNotNull(), F.col("__b_n").isNotNull()
        inv_a, inv_b = in_a & F.col("__a_inv"), in_b & F.col("__b_inv")
        dup_a, dup_b = in_a & ~F.col("__a_inv") & (F.col("__a_n") > 1), in_b & ~F.col("__b_inv") & (F.col("__b_n") > 1)
        status = (F.when(inv_a, "invalid_key_a").when(inv_b, "invalid_key_b").when(dup_a | dup_b, "duplicate")
                  .when(~in_b, "only_in_a").when(~in_a, "only_in_b")
                  .when((F.col("__a_h") != F.col("__b_h")) | F.col("__a_u") | F.col("__b_u"), "pair").otherwise("identical"))
        keys = [F.when(in_a, F.col(f"__a{i}")).otherwise(F.col(f"__b{i}")).alias(f"__k{i}") for i in range(len(self.keys))]
        classified = joined.select(*keys, status.alias("status"), F.coalesce("__a_n", F.lit(0)).alias("n_a"),
                                   F.coalesce("__b_n", F.lit(0)).alias("n_b"), dup_a.alias("dup_a"), dup_b.alias("dup_b"))
        # One pass: the identical pairs are only counted (an observed metric), everything else is
        # staged as Parquet, which DuckDB reads (and can spill) without holding it in Python.
        from pyspark.sql import Observation

        observed = Observation("recon_identical")
        counted = classified.observe(observed, F.count(F.when(F.col("status") == "identical", 1)).alias("identical"))
        counted.filter(F.col("status") != "identical").write.mode("overwrite").parquet(str(staging / "candidates"))
        identical = int(observed.get["identical"])
        candidates = self.spark.read.parquet(str(staging / "candidates"))
        for s in "ab":
            self._values(s, candidates).write.mode("overwrite").parquet(str(staging / f"values_{s}"))
        return self._load(staging, identical)

    def _values(self, s: str, candidates):
        """The compared fields of the records whose values the rules need (pairs and one-sided)."""
        F = self.F
        wanted = ["pair", "only_in_a"] if s == "a" else ["pair", "only_in_b"]
        names = [f"__k{i}" for i in range(len(self.keys))]
        own = self.duck[s]
        side = self.frames[s].select(
            *[(F.col(_spark_name(k)).cast("string") if self.key_types[k] != own[k] else F.col(_spark_name(k))).alias(f"__k{i}")
              for i, k in enumerate(self.keys)],
            *[F.col(_spark_name(f)).alias(f"__v{j}") for j, f in enumerate(self.fields)])
        return side.join(candidates.filter(F.col("status").isin(wanted)).select(*names), names, "inner")

    def _load(self, staging: Path, identical: int) -> tuple[MatchStats, dict[str, int]]:
        """``__pairs`` on the DuckDB connection, in the shape ``compare.match`` leaves; the stats;
        and the rows that crossed from Spark."""
        con, keys, fields = self.con, self.keys, self.fields
        staged = {name: f"read_parquet({sql_literal(str(staging / name / '*.parquet'))})"
                  for name in ("candidates", "values_a", "values_b")}
        names = [f"__k{i}" for i in range(len(keys))]

        def typed_keys(alias: str) -> list[str]:
            return [f"CAST({alias}.{q(n)} AS {self.key_types[k]})" for n, k in zip(names, keys)]

        key_text = _key_text(typed_keys("c"))
        join = lambda s: " AND ".join(f"{s}.{q(n)} = c.{q(n)}" for n in names)  # noqa: E731

        def side_values(s: str) -> str:
            return ", ".join(f"CAST(v{s}.{q(f'__v{j}')} AS {self.duck[s][f]}) AS {q(s + '__' + f)}" for j, f in enumerate(fields))

        nulls = ", ".join(f"CAST(NULL AS {self.duck[s][f]}) AS {q(s + '__' + f)}" for s in "ab" for f in fields)
        sep = ", " if fields else ""
        cand = staged["candidates"]
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __pairs AS
            SELECT c.status AS __status, {key_text} AS __key, 1::BIGINT AS __count{sep}{side_values('a')}{sep}{side_values('b')}
            FROM {cand} c LEFT JOIN {staged['values_a']} va ON {join('va')} LEFT JOIN {staged['values_b']} vb ON {join('vb')}
            WHERE c.status IN ('pair', 'only_in_a', 'only_in_b')
            UNION ALL
            SELECT 'duplicate_key_a', {key_text}, CAST(c.n_a AS BIGINT){sep}{nulls} FROM {cand} c WHERE c.dup_a
            UNION ALL
            SELECT 'duplicate_key_b', {key_text}, CAST(c.n_b AS BIGINT){sep}{nulls} FROM {cand} c WHERE c.dup_b
            UNION ALL
            SELECT c.status, {key_text}, CAST(sum(CASE c.status WHEN 'invalid_key_a' THEN c.n_a ELSE c.n_b END) AS BIGINT){sep}{nulls}
            FROM {cand} c WHERE c.status LIKE 'invalid_key_%' GROUP BY ALL""")
        row = con.execute(f"""SELECT
            sum(n_a), sum(n_b),
            coalesce(sum(n_a) FILTER (status = 'invalid_key_a'), 0), coalesce(sum(n_b) FILTER (status = 'invalid_key_b'), 0),
            count(*) FILTER (dup_a), count(*) FILTER (dup_b),
            coalesce(sum(n_a) FILTER (dup_a), 0), coalesce(sum(n_b) FILTER (dup_b), 0),
            count(*) FILTER (status = 'only_in_a'), count(*) FILTER (status = 'only_in_b'),
            count(*) FILTER (status = 'pair'),
            coalesce(sum(n_a) FILTER (status = 'duplicate'), 0), coalesce(sum(n_b) FILTER (status = 'duplicate'), 0),
            count(*), (SELECT count(*) FROM {staged['values_a']}), (SELECT count(*) FROM {staged['values_b']})
            FROM {cand}""").fetchall()[0]
        (rows_a, rows_b, inv_a, inv_b, dkeys_a, dkeys_b, drows_a, drows_b, only_a, only_b, pairs,
         excluded_a, excluded_b, moved_keys, moved_a, moved_b) = (int(v or 0) for v in row)
        rows_a, rows_b = rows_a + identical, rows_b + identical
        matched = rows_a - inv_a - excluded_a - only_a
        stats = MatchStats(rows_a=rows_a, rows_b=rows_b, invalid_key_rows_a=inv_a, invalid_key_rows_b=inv_b,
                           duplicate_keys_a=dkeys_a, duplicate_keys_b=dkeys_b, duplicate_rows_a=drows_a,
                           duplicate_rows_b=drows_b, only_in_a=only_a, only_in_b=only_b, matched=matched,
                           identical=matched - pairs, candidate_pairs=pairs)
        return stats, {"a": moved_a, "b": moved_b, "candidates": moved_keys}


# --------------------------------------------------------------------------- helpers


def _duck_types(con, side: Side) -> dict[str, str]:
    """The DuckDB type of each spec name on one side: what the local engine would read (a schema read)."""
    select = ", ".join(f"{q(src)} AS {q(name)}" for name, src in side.columns.items())
    try:
        rows = con.execute(f"DESCRIBE SELECT {select} FROM {side.scan}").fetchall()
    except duckdb.Error as exc:
        raise ComparisonError(f"{side.label}: {str(exc).strip().splitlines()[0]}") from None
    return {r[0]: r[1] for r in rows}


def _same_values(spark_type, duck: str) -> bool:
    """True when Spark's type holds exactly DuckDB's values of ``duck`` (and Arrow carries them back)."""
    from pyspark.sql import types as T

    simple = {
        T.ByteType: ("TINYINT",), T.ShortType: ("SMALLINT", "UTINYINT"), T.IntegerType: ("INTEGER", "USMALLINT"),
        T.LongType: ("BIGINT", "UINTEGER"), T.FloatType: ("FLOAT",), T.DoubleType: ("DOUBLE",),
        T.StringType: ("VARCHAR",), T.BooleanType: ("BOOLEAN",), T.DateType: ("DATE",),
        T.TimestampType: ("TIMESTAMP WITH TIME ZONE",),
        T.TimestampNTZType: ("TIMESTAMP", "TIMESTAMP_MS", "TIMESTAMP_S"),
    }
    for kind, duck_types in simple.items():
        if type(spark_type) is kind:
            return duck in duck_types
    if isinstance(spark_type, T.DecimalType):
        own = f"DECIMAL({spark_type.precision},{spark_type.scale})"
        return duck == own or (duck == "UBIGINT" and (spark_type.precision, spark_type.scale) == (20, 0))
    return False


def _common_decimal(own: str, other: str) -> str | None:
    """A Spark DECIMAL holding every value of two integer/decimal types exactly, if there is one."""
    shapes = []
    for duck in (own, other):
        if duck in _INTEGERS:
            shapes.append((20, 0))
        elif duck.startswith("DECIMAL("):
            width, scale = (int(x) for x in duck[8:-1].split(","))
            shapes.append((width - scale, scale))
        else:
            return None
    scale = max(s for _, s in shapes)
    if max(i for i, _ in shapes) + scale > 38:
        return None
    return f"decimal(38,{scale})"


def _blank_regex() -> str:
    """Java regex for text that is blank after trimming ``WHITESPACE`` (as keys.invalid_key_sql)."""
    return "^[" + "".join(f"\\u{ord(c):04x}" for c in WHITESPACE) + "]*\\z"


def _spark_name(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _any(F, tests: list):
    if not tests:
        return F.lit(False)
    out = tests[0]
    for test in tests[1:]:
        out = out | test
    return F.coalesce(out, F.lit(False))


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
