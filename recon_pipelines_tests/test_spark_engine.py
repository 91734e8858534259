"""The Spark engine (engine/strategies/spark.py) reports exactly what the default DuckDB engine
reports: the same discrepancies (ids, kinds, fields, values), match stats and field stats, on
Spark local[2], on a standalone master with two workers started here, from ``recon run
--engine spark`` and from the Dagster assets. Needs pyspark and Java: skipped without them,
failed under CI=true."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from recon_pipelines.engine import ComparisonError, compare, evaluate
from recon_pipelines.engine.strategies.spark import SparkPairing, java_available, stop_session
from recon_pipelines.snapshots import direct_side
from recon_pipelines.spec import load_spec
from recon_pipelines_tests import spark_data

ROOT = Path(__file__).resolve().parents[1]
ROWS = 100_000


def _spark_or_skip() -> None:
    problem = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        problem = "pyspark is not installed (pip install -e '.[spark]')"
    if problem is None and not java_available():
        problem = "no Java runtime (java on PATH or JAVA_HOME)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the Spark engine cannot run: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def every_rule(tmp_path_factory):
    """100,000 records per side with drift for every rule type, and the default engine's answer."""
    folder = tmp_path_factory.mktemp("spark_data")
    spec = load_spec(spark_data.write_spec(folder, spark_data.generate(ROWS, folder)))
    sides = tuple(direct_side(spec, side) for side in "ab")
    return spec, sides, compare(spec, *sides)


def _on_spark(spec, sides, strategy: SparkPairing):
    con = duckdb.connect()
    pairing = strategy.pair(spec, con, sides)
    table, fields = evaluate(con, spec, "__pairs")
    return pairing, table, fields


def _assert_same(expected, pairing, table, fields) -> None:
    assert table.num_rows == expected.discrepancies.num_rows
    assert table.to_pylist() == expected.discrepancies.to_pylist()  # ids, kinds, fields, values, severities
    assert pairing.stats == expected.match
    assert fields == expected.fields


@pytest.fixture(scope="module")
def local_spark():
    _spark_or_skip()
    yield SparkPairing("local[2]")
    stop_session()


def test_local_spark_finds_exactly_what_duckdb_finds_for_every_rule(every_rule, local_spark):
    spec, sides, expected = every_rule
    pairing, table, fields = _on_spark(spec, sides, local_spark)
    _assert_same(expected, pairing, table, fields)
    # The data reaches every rule: each field disagrees somewhere, tolerances and aliases absorb
    # drift, and every record-level kind occurs.
    kinds = {(r["kind"], r["field"]) for r in table.to_pylist()}
    assert {("field_mismatch", f) for f in spark_data.FIELDS} <= kinds
    assert {k for k, _ in kinds} >= {"only_in_a", "only_in_b", "duplicate_key_a", "duplicate_key_b",
                                     "invalid_key_a", "invalid_key_b"}
    reasons = {r["reason"] for r in table.to_pylist()}
    assert {"both_null", "null_in_a", "type_mismatch_a", "value_differs"} <= reasons
    for name in ("amount", "ratio", "price_text", "updated_at", "seen_epoch", "email"):
        assert fields[name].within_tolerance > 0, name
    assert fields["status"].mapped > 0
    # Only candidates crossed the wire: the identical pairs were counted on Spark.
    assert pairing.stats.identical > 0.9 * ROWS
    assert pairing.rows_moved["candidates"] < 0.1 * ROWS
    assert pairing.rows_moved["a"] == pairing.stats.candidate_pairs + pairing.stats.only_in_a


def test_csv_files_read_alike_on_spark_and_duckdb(tmp_path, local_spark):
    """Quoted separators, doubled quotes, embedded newlines, empty and quoted-empty fields, NBSP."""
    (tmp_path / "a.csv").write_text('id,v,w\n1,,x\n2,"",y\n3, a ,"b, c"\n4,"multi\nline",z\n5,"q""uote",\n6,NULL,\u00a0\n'
                                    '7,same,same\n', encoding="utf-8")
    (tmp_path / "b.csv").write_text('id,v,w\n1,"",x\n2,,y\n3,a,"b, c"\n4,"multi\r\nline",z\n5,"q""uote",""\n6,NULL, \n'
                                    '7,same,same\n8,new,\n', encoding="utf-8")
    spec = load_spec(_spec_file(tmp_path, {"a": tmp_path / "a.csv", "b": tmp_path / "b.csv"},
                                {"v": "exact", "w": {"compare": "string", "normalize": ["trim"]}}))
    sides = tuple(direct_side(spec, side) for side in "ab")
    expected = compare(spec, *sides)
    _assert_same(expected, *_on_spark(spec, sides, local_spark))
    assert expected.match.identical >= 2  # 1, 2 and 7 agree: some pairs were settled on Spark


def test_what_a_hash_could_hide_is_a_candidate_on_spark(tmp_path, local_spark):
    """The cases where a careless row hash calls two different records identical: nulls that
    change places between two fields, numbers of different types, text a numeric rule cannot
    read (the same on both sides, still a type mismatch), text beyond a double, padded numbers,
    nulls under both_null: differ, an integer key against a text key, -0.0 against 0.0 and NaN
    against NaN. Spark must settle exactly the pairs DuckDB settles."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    d = decimal.Decimal
    a = pa.table({
        "id": pa.array([1, 2, 3, 4, 5, 6, 7], pa.int32()),
        "x": ["p", None, "same", "s", "s", "s", "s"], "y": [None, "p", "same", "t", "t", "t", "t"],
        "n": pa.array([d("1.50"), d("2.00"), d("3.00"), d("4.00"), None, d("6.00"), d("7.00")], pa.decimal128(10, 2)),
        "txt": ["1e400", "n/a", "12.5", " 7 ", "1", "2", "3"],
        "note": [None, "a", None, "b", "c", "d", "e"],
        "f": [-0.0, 0.0, float("nan"), 1.0, 2.0, 3.0, 4.0],
    })
    b = pa.table({
        "id": ["1", "2", "3", "4", "5", "6", "8"],
        "x": [None, "p", "same", "s", "s", "s", "s"], "y": ["p", None, "same", "t", "t", "t", "t"],
        "n": pa.array([d("1.5000"), d("2.0001"), d("3"), d("4"), None, d("6"), d("8")], pa.decimal128(12, 4)),
        "txt": ["1e400", "n/a", "12.5", " 7 ", "1", "2", "3"],
        "note": [None, "a", "x", "b", "c", "d", "e"],
        "f": [0.0, -0.0, float("nan"), 1.0, 2.0, 3.0, 4.0],
    })
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    spec = load_spec(_spec_file(tmp_path, {s: tmp_path / f"{s}.parquet" for s in "ab"}, {
        "x": "exact", "y": "exact", "n": {"compare": "numeric"}, "txt": {"compare": "numeric"},
        "note": {"compare": "exact", "nulls": {"both_null": "differ"}}, "f": {"compare": "string", "normalize": []}}))
    sides = tuple(direct_side(spec, side) for side in "ab")
    expected = compare(spec, *sides)
    _assert_same(expected, *_on_spark(spec, sides, local_spark))
    found = {(r["key"], r["field"], r["reason"]) for r in expected.discrepancies.to_pylist()}
    assert {("1", "x", "null_in_b"), ("1", "y", "null_in_a"), ("2", "n", "value_differs"),
            ("2", "txt", "type_mismatch_a"), ("1", "note", "both_null")} <= found
    # Keys 4, 5 and 6 settle by hash: an int key against a text key, 4.00 against 4.0000, ' 7 ' on both sides.
    assert expected.match.identical == 3


@pytest.mark.parametrize("column, refusal", [
    # Nanosecond timestamps: DuckDB reads them, Spark refuses the Parquet type.
    (("ns", [1, 2]), r"Spark cannot read it: .*Illegal Parquet type"),
    # A list: DuckDB and Spark each read it, as types the engine does not pair on.
    (("list", [[1], [2]]), r"column t: Spark reads array<bigint>, DuckDB BIGINT\[\]; the spark engine needs"),
])
def test_a_column_spark_cannot_read_as_duckdb_does_is_refused(tmp_path, local_spark, column, refusal):
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind, values = column
    t = pa.array(values, pa.timestamp("ns")) if kind == "ns" else pa.array(values, pa.list_(pa.int64()))
    for side in "ab":
        pq.write_table(pa.table({"id": [1, 2], "t": t}), tmp_path / f"{side}.parquet")
    spec = load_spec(_spec_file(tmp_path, {s: tmp_path / f"{s}.parquet" for s in "ab"}, {"t": "exact"}))
    sides = tuple(direct_side(spec, side) for side in "ab")
    with pytest.raises(ComparisonError, match=r"^file \(.*a\.parquet\): " + refusal):
        SparkPairing("local[2]").pair(spec, duckdb.connect(), sides)


def test_dagster_assets_pair_on_spark_with_the_same_answer(tmp_path, local_spark):
    import dagster as dg
    import pyarrow.parquet as pq

    from recon_pipelines.dagster_defs import build_definitions
    from recon_pipelines.dagster_defs.resources import ReconResource, SparkEngine

    paths = spark_data.generate(3_000, tmp_path, seed=11)
    spec_file = spark_data.write_spec(tmp_path, paths, name="on_spark", engine={"type": "spark"})
    spec = load_spec(spec_file)
    expected = compare(spec, *(direct_side(spec, side) for side in "ab"))
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    defs = build_definitions(specs=[spec], recon=recon, spark=SparkEngine(master="local[2]"))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_on_spark").execute_in_process(instance=instance)
    assert result.success
    pairs = [e.materialization.metadata for e in result.get_asset_materialization_events()
             if e.materialization.asset_key.path[-1] == "matched_pairs"][0]
    assert pairs["rows_moved_candidates"].value > 0  # the Spark strategy paired, not DuckDB
    found = pq.read_table(tmp_path / "store" / "on_spark" / "full" / "discrepancies.parquet")
    assert found.to_pylist() == expected.discrepancies.to_pylist()


# --------------------------------------------------------------------------- the command line


def _recon(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recon_pipelines.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)


def test_recon_run_engine_spark_prints_the_default_engines_discrepancies(tmp_path):
    _spark_or_skip()
    spec_file = spark_data.write_spec(tmp_path, spark_data.generate(2_000, tmp_path, seed=5, fmt="csv"))
    local = _recon("run", str(spec_file), "--format", "json", "-o", str(tmp_path / "duckdb.json"))
    spark = _recon("run", str(spec_file), "--engine", "spark", "--spark-master", "local[2]",
                   "--format", "json", "-o", str(tmp_path / "spark.json"))
    assert (local.returncode, spark.returncode) == (1, 1), spark.stderr[-2000:]
    rows = {name: [json.loads(line) for line in (tmp_path / f"{name}.json").read_text().splitlines()]
            for name in ("duckdb", "spark")}
    assert rows["spark"] == rows["duckdb"] and len(rows["spark"]) > 50


def test_recon_run_engine_spark_refuses_a_sql_source_in_one_line(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(json.dumps({
        "name": "sql_side", "key": "id", "fields": {"v": "exact"},
        "source_a": {"type": "sql", "url": "postgresql+psycopg2://127.0.0.1/none", "table": "t"},
        "source_b": {"type": "file", "path": str(tmp_path / "b.parquet")}}))
    done = _recon("run", str(spec_file), "--engine", "spark")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: sql_side: the spark engine cannot run this spec: source_a: Spark reads files (Parquet, CSV); "
        "a sql source runs on the default engine"]


def test_recon_run_engine_spark_without_java_says_so_in_one_line(tmp_path):
    pytest.importorskip("pyspark")
    paths = spark_data.generate(100, tmp_path, seed=3)
    spec_file = spark_data.write_spec(tmp_path, paths)
    python_only = str(Path(sys.executable).parent)  # no java on this PATH
    done = _recon("run", str(spec_file), "--engine", "spark", env={"PATH": python_only, "JAVA_HOME": ""})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "error: spark engine: no Java runtime found (install Java 17 or set JAVA_HOME)"


def test_recon_validate_says_where_a_spark_spec_is_paired(tmp_path):
    paths = spark_data.generate(100, tmp_path, seed=4)
    spark_data.write_spec(tmp_path, paths, name="on_spark", engine={"type": "spark", "master": "spark://127.0.0.1:7077"})
    refused = tmp_path / "refused.yaml"
    refused.write_text(json.dumps({
        "name": "sql_on_spark", "key": "id", "fields": {"v": "exact"}, "engine": {"type": "spark"},
        "source_a": {"type": "sql", "url": "sqlite:///" + str(tmp_path / "a.sqlite"), "table": "t"},
        "source_b": {"type": "file", "path": str(paths["b"])}}))
    done = _recon("validate", "--offline", str(tmp_path))
    assert done.returncode == 0, done.stderr
    done = _recon("validate", str(tmp_path / "on_spark.yaml"), env={"RECON_SPARK_MASTER": ""})
    assert "    engine: spark on spark://127.0.0.1:7077; the rules run locally" in done.stdout.splitlines(), done.stdout
    assert "strategy:" not in done.stdout  # push-down is not what pairs a spark spec
    from recon_pipelines.cli import _pairing_lines

    assert _pairing_lines(load_spec(refused)) == [
        "engine: spark refuses this spec: source_a: Spark reads files (Parquet, CSV); a sql source runs on the default engine"]


# --------------------------------------------------------------------------- a standalone cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not ready after {seconds:.0f} s")


def _workers_alive(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Spark standalone master and two one-core workers on 127.0.0.1, stopped by process group
    (the spark-class wrappers would leave their java children running)."""
    _spark_or_skip()
    import pyspark

    stop_session()  # one SparkContext per process: the local one goes first
    home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("spark_cluster")
    env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(work),
           "SPARK_WORKER_DIR": str(work)}
    port, ui = _free_port(), _free_port()
    spark_class = str(home / "bin" / "spark-class")
    commands = [[spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                 "--webui-port", str(ui)]]
    commands += [[spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}", "--host", "127.0.0.1",
                  "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()), "--work-dir", str(work)]
                 for _ in range(2)]
    started = []
    try:
        for i, command in enumerate(commands):
            log = open(work / f"process{i}.log", "wb")  # noqa: SIM115 - closed with the process
            started.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            if i == 0:
                _wait("Spark master", lambda: _port_open(port))
        _wait("two Spark workers", lambda: _workers_alive(ui) == 2)
        yield SparkPairing(f"spark://127.0.0.1:{port}", {
            "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.executor.memory": "1g", "spark.cores.max": "2"})
    finally:
        stop_session()
        for process in started:
            try:
                os.killpg(process.pid, signal.SIGTERM)  # the group this fixture started: wrapper and java
            except ProcessLookupError:
                pass
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_standalone_cluster_finds_exactly_what_duckdb_finds(every_rule, cluster):
    spec, sides, expected = every_rule
    _assert_same(expected, *_on_spark(spec, sides, cluster))


def _spec_file(folder: Path, paths: dict, fields: dict) -> Path:
    path = folder / "spec.yaml"
    path.write_text(json.dumps({"name": "spark_case", "key": "id", "fields": fields,
                                "source_a": {"type": "file", "path": str(paths["a"])},
                                "source_b": {"type": "file", "path": str(paths["b"])}}))
    return path
