"""Push-down against the real PostgreSQL: same database, two databases, and the local path.

Run from the repository root (one command):

    .venv/bin/python -m benchmarks.pushdown --sizes 1e6,1e7 --repeat 3 [--sparse] [--pg-url URL] [--keep]

For each size the generator's two sides (benchmarks/generate.py; generated under
benchmarks/.data/ on first use) are loaded with COPY into PostgreSQL tables ``a`` and ``b``
with a primary key on ``id`` (then VACUUM ANALYZE), in a throwaway database
``recon_bench_pushdown_<rows>_<drift>_one``; a second one, ``..._two``, is a copy of it made
with ``CREATE DATABASE ... TEMPLATE``, standing in for a second server. Then, each in a fresh
subprocess (so its peak RSS is its own), best of ``--repeat`` runs:

    same_database  ``pipeline.run`` with both sources on ``_one``: one query in
                   PostgreSQL returns the candidate pairs (engine/pushdown.py)
    two_databases  A from ``_one``, B from ``_two``: bucket summaries per side, then the
                   rows of the differing buckets
    local          ``pushdown: false``: both tables read whole through the SQL connector
                   (snapshots), compared locally; what the project did before push-down

MariaDB (``--cases mariadb_same_database,mariadb_postgres,mariadb_postgres_local``, server
from ``--mariadb-url``): A and B loaded with LOAD DATA into a MariaDB database
``recon_bench_pushdown_<rows>_<drift>_maria`` (utf8mb4_general_ci, primary key on ``id``)
and B again into a PostgreSQL database ``..._mpg``; amounts as DECIMAL(18,4)/numeric(18,4)
and ``is_paying`` as a small integer on both (MariaDB has no boolean, and floats have no
canonical text, see engine/portable_sql.py):

    mariadb_same_database   A and B in the one MariaDB database: joined there
    mariadb_postgres        A in MariaDB, B in PostgreSQL: canonical bucket summaries
    mariadb_postgres_local  the same pair with ``pushdown: false``

Each case's discrepancy set (kind, key, field) is checked against the generator's ground
truth, and the rows that crossed the wire are counted: table records fetched per side and
aggregate rows (bucket summaries, counts). The databases are dropped at the end unless
``--keep`` is given (a later run then reuses them). Results are also written as
JSON to benchmarks/.data/pushdown-results-<drift>-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import generate as gen  # numpy + pyarrow only

COMMAND = ".venv/bin/python -m benchmarks.pushdown --sizes 1e6,1e7 --repeat 3"
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
CASES = ("same_database", "two_databases", "local")
MARIADB_CASES = ("mariadb_same_database", "mariadb_postgres", "mariadb_postgres_local")
DEFAULT_MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306"
MARIADB_DDL = """CREATE TABLE {table} (id bigint, email varchar(255), plan varchar(64), status varchar(64),
    amount decimal(18,4), balance decimal(18,4), updated_at datetime(6), country varchar(64), is_paying smallint)"""
PG_DECIMAL_DDL = """CREATE TABLE {table} (id bigint, email text, plan text, status text, amount numeric(18,4),
    balance numeric(18,4), updated_at timestamp, country text, is_paying smallint)"""
# DuckDB's view of a generated side with MariaDB's types (booleans as 0/1)
AS_DECIMALS = """SELECT id, email, plan, status, amount::DECIMAL(18,4) AS amount, balance::DECIMAL(18,4) AS balance,
    updated_at, country, is_paying::SMALLINT AS is_paying FROM read_parquet({path})"""
DDL = """CREATE TABLE {table} (id bigint, email text, plan text, status text, amount double precision,
    balance double precision, updated_at timestamp, country text, is_paying boolean)"""


# --------------------------------------------------------------------------- databases


def _engine(url: str, **kwargs):
    import sqlalchemy as sa

    from recon_pipelines.urls import normalize_url

    return sa.create_engine(normalize_url(url), **kwargs)


def _url(admin_url: str, database: str) -> str:
    import sqlalchemy as sa

    from recon_pipelines.urls import normalize_url

    return sa.make_url(normalize_url(admin_url)).set(database=database).render_as_string(hide_password=False)


def _admin(admin_url: str, statement: str, params: dict | None = None):
    import sqlalchemy as sa

    engine = _engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(statement), params or {}).fetchall() if statement.lstrip().upper().startswith("SELECT") \
                else conn.execute(sa.text(statement), params or {})
    finally:
        engine.dispose()


def database_names(rows: int, drift: str) -> tuple[str, str]:
    base = f"recon_bench_pushdown_{rows}_{drift}"
    return f"{base}_one", f"{base}_two"


def prepare(admin_url: str, truth: dict, log=print) -> tuple[str, str, dict]:
    """The two databases, loaded (or reused when an earlier run kept them for the same data)."""
    one, two = database_names(truth["rows_a"], truth["params"]["drift"])
    marker = json.dumps(truth["params"], sort_keys=True)
    found = dict(_admin(admin_url, "SELECT d.datname, shobj_description(d.oid, 'pg_database') FROM pg_database d "
                                   "WHERE d.datname IN (:one, :two)", {"one": one, "two": two}))
    timings = {}
    if found.get(one) == marker and found.get(two) == marker:  # left by a run with --keep
        log(f"  reusing {one} and {two}, loaded by an earlier run with --keep")
        return _url(admin_url, one), _url(admin_url, two), timings
    for name in (one, two):
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(admin_url, f'CREATE DATABASE "{one}"')
    directory = Path(truth["dir"])
    for table in ("a", "b"):
        started = time.perf_counter()
        rows = _copy_in(_url(admin_url, one), table, directory / f"{table}.parquet")
        timings[f"load {table}"] = time.perf_counter() - started
        log(f"  loaded {rows:,} rows into {one}.{table} in {timings[f'load {table}']:.1f} s "
            "(COPY, primary key, VACUUM ANALYZE)")
    started = time.perf_counter()
    _admin(admin_url, f'CREATE DATABASE "{two}" TEMPLATE "{one}"')
    timings["copy database"] = time.perf_counter() - started
    log(f"  copied it to {two} in {timings['copy database']:.1f} s")
    for name in (one, two):
        _admin(admin_url, f'COMMENT ON DATABASE "{name}" IS ' + "'" + marker.replace("'", "''") + "'")
    return _url(admin_url, one), _url(admin_url, two), timings


def _copy_in(url: str, table: str, parquet: Path, ddl: str = DDL, select: str = "SELECT * FROM read_parquet({path})") -> int:
    """COPY one Parquet side into a new table (CSV rendered by DuckDB, streamed from a temp file)."""
    import duckdb

    from recon_pipelines.sqlutil import sql_literal

    engine = _engine(url)
    with tempfile.TemporaryDirectory(prefix="pushdown-bench-") as tmp:
        csv = Path(tmp) / f"{table}.csv"
        with duckdb.connect() as con:
            con.execute(f"COPY ({select.format(path=sql_literal(str(parquet)))}) TO {sql_literal(str(csv))} (HEADER false)")
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(ddl.format(table=table))
            with csv.open(encoding="utf-8") as handle:
                cur.copy_expert(f"COPY {table} FROM STDIN (FORMAT csv)", handle)
            cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
            raw.commit()
            raw.driver_connection.autocommit = True  # VACUUM runs outside a transaction
            cur.execute(f"VACUUM ANALYZE {table}")
            cur.execute(f"SELECT count(*) FROM {table}")
            return cur.fetchone()[0]
        finally:
            raw.close()
            engine.dispose()


def cleanup(admin_url: str, rows: int, drift: str) -> None:
    for name in database_names(rows, drift):
        _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def mariadb_names(rows: int, drift: str) -> tuple[str, str]:
    base = f"recon_bench_pushdown_{rows}_{drift}"
    return f"{base}_maria", f"{base}_mpg"


def prepare_mariadb(maria_url: str, pg_admin_url: str, truth: dict, log=print) -> tuple[str, str, dict]:
    """A and B in one MariaDB database, B again in a PostgreSQL database (decimal amounts)."""
    import duckdb
    import sqlalchemy as sa

    from recon_pipelines.sqlutil import sql_literal

    maria, mpg = mariadb_names(truth["rows_a"], truth["params"]["drift"])
    admin = sa.create_engine(maria_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{maria}`"))
        conn.execute(sa.text(f"CREATE DATABASE `{maria}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"))
    admin.dispose()
    maria_db = f"{maria_url.rstrip('/')}/{maria}"
    _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{mpg}" WITH (FORCE)')
    _admin(pg_admin_url, f'CREATE DATABASE "{mpg}"')
    directory, timings = Path(truth["dir"]), {}
    engine = sa.create_engine(maria_db, connect_args={"local_infile": True})
    with tempfile.TemporaryDirectory(prefix="pushdown-bench-") as tmp:
        for table in ("a", "b"):
            started = time.perf_counter()
            csv = Path(tmp) / f"{table}.csv"
            with duckdb.connect() as con:
                select = AS_DECIMALS.format(path=sql_literal(str(directory / f"{table}.parquet")))
                con.execute(f"COPY ({select}) TO {sql_literal(str(csv))} (HEADER false, NULLSTR 'NULL', "
                            "FORCE_QUOTE (email, plan, status, country))")
            with engine.begin() as conn:
                conn.execute(sa.text(MARIADB_DDL.format(table=table)))
                conn.exec_driver_sql(f"LOAD DATA LOCAL INFILE {sql_literal(str(csv))} INTO TABLE {table} CHARACTER SET utf8mb4 "
                                     "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n'")
                conn.execute(sa.text(f"ALTER TABLE {table} ADD PRIMARY KEY (id)"))
                conn.execute(sa.text(f"ANALYZE TABLE {table}"))
            timings[f"load maria {table}"] = time.perf_counter() - started
            log(f"  loaded {table} into MariaDB {maria} in {timings[f'load maria {table}']:.1f} s")
    engine.dispose()
    started = time.perf_counter()
    _copy_in(_url(pg_admin_url, mpg), "b", directory / "b.parquet", ddl=PG_DECIMAL_DDL, select=AS_DECIMALS)
    timings["load postgres b"] = time.perf_counter() - started
    log(f"  loaded b into PostgreSQL {mpg} in {timings['load postgres b']:.1f} s")
    return maria_db, _url(pg_admin_url, mpg), timings


def cleanup_mariadb(maria_url: str, pg_admin_url: str, rows: int, drift: str) -> None:
    import sqlalchemy as sa

    maria, mpg = mariadb_names(rows, drift)
    admin = sa.create_engine(maria_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{maria}`"))
    admin.dispose()
    _admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{mpg}" WITH (FORCE)')


# --------------------------------------------------------------------------- one case (in its own process)


def build_spec(url_a: str, url_b: str, pushdown: bool):
    """The benchmark's reconciliation (benchmarks/run.py's rules) over two PostgreSQL tables."""
    from recon_pipelines.spec import parse_spec

    return parse_spec({
        "name": "benchmark",
        "pushdown": pushdown,
        "source_a": {"type": "sql", "url": url_a, "table": "a", "name": "a"},
        "source_b": {"type": "sql", "url": url_b, "table": "b", "name": "b"},
        "key": "id",
        "fields": gen.SPEC_FIELDS,
    })


# Each case: (A's database, B's database, push-down on, the mode push-down must take)
CASE_SETUP = {
    "same_database": ("one", "one", True, "same_database"),
    "two_databases": ("one", "two", True, "buckets"),
    "local": ("one", "one", False, None),
    "mariadb_same_database": ("one", "one", True, "same_database"),
    "mariadb_postgres": ("one", "two", True, "canonical_buckets"),
    "mariadb_postgres_local": ("one", "two", False, None),
}


def run_case(name: str, url_one: str, url_two: str, truth_dir: str) -> dict:
    from recon_pipelines import pipeline

    where_a, where_b, pushdown_on, mode = CASE_SETUP[name]
    urls = {"one": url_one, "two": url_two}
    spec = build_spec(urls[where_a], urls[where_b], pushdown=pushdown_on)
    started = time.perf_counter()
    result = pipeline.run(spec)
    seconds = time.perf_counter() - started
    rss_gb = peak_rss_gb()
    m = result.match
    found = set(zip(*(result.discrepancies.column(c).to_pylist() for c in ("kind", "key", "field"))))
    expected = gen.expected_set(gen.load_truth(truth_dir))
    mismatched_keys = {key for kind, key, _ in found if kind == "field_mismatch"}
    out = {
        "case": name, "seconds": seconds, "peak_rss_gb": rss_gb,
        "discrepancies": len(found), "missing": len(expected - found), "extra": len(found - expected),
        "examples": sorted(map(str, (expected - found) | (found - expected)))[:5],
        "rows_a": m.rows_a, "rows_b": m.rows_b, "candidate_pairs": m.candidate_pairs,
        "pairs_with_a_discrepancy": len(mismatched_keys),
    }
    if result.pushdown is not None:
        p = result.pushdown
        if p.mode != mode:
            raise RuntimeError(f"{name}: push-down took the {p.mode} path")
        received = p.result_rows if p.mode == "same_database" else p.rows_fetched + p.summary_rows_a + p.summary_rows_b
        out.update(mode=p.mode, records_a=p.rows_fetched_a, records_b=p.rows_fetched_b, rows_received=received,
                   aggregate_rows=p.summary_rows_a + p.summary_rows_b, buckets=p.buckets,
                   differing_buckets=p.differing_buckets, phases=p.seconds)
    else:  # the local path reads both tables whole
        if mode is not None:
            raise RuntimeError(f"{name}: push-down did not run (see the log)")
        out.update(mode="local", records_a=m.rows_a, records_b=m.rows_b, rows_received=m.rows_a + m.rows_b, aggregate_rows=0)
    return out


def peak_rss_gb() -> float:
    """This process's peak resident memory. Linux: VmHWM, the high-water mark of this
    program's own memory; ``ru_maxrss`` would also count the parent's memory copied at fork
    (the driver holds the ground truth, ~1 GB for 1e7 rows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def _worker(argv: list[str]) -> int:
    job = json.loads(argv[0])
    print("RESULT " + json.dumps(run_case(**job)), flush=True)
    return 0


def _spawn(job: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.pushdown", "--worker", json.dumps(job)]
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"case": job["name"], "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
    return {"case": job["name"], "error": " | ".join(tail) or f"exit {done.returncode}"}


# --------------------------------------------------------------------------- report


def _table(rows: int, results: list[dict]) -> str:
    lines = [
        f"{rows:,} rows per side:",
        "",
        ("| path | wall s | peak RSS GB | rows received | records in them, A + B | of the tables' records | "
         "aggregate rows | discrepancies vs truth |"),
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | - | - | - | - | - | - | ERROR: {r['error']} |")
            continue
        records = r["records_a"] + r["records_b"]
        verdict = "AGREES" if not r["missing"] and not r["extra"] else f"DIFFERS ({r['missing']} missing, {r['extra']} extra: {r['examples']})"
        lines.append(
            f"| {r['case']} | {r['seconds']:.2f} | {r['peak_rss_gb']:.2f} | {r['rows_received']:,} | "
            f"{r['records_a']:,} + {r['records_b']:,} | {records / (r['rows_a'] + r['rows_b']):.2%} | "
            f"{r['aggregate_rows']:,} | {verdict} |")
        if r["mode"] == "same_database":
            notes.append(f"same_database: {r['candidate_pairs']:,} candidate pairs came back, {r['pairs_with_a_discrepancy']:,} "
                         f"of them with a discrepancy and {r['candidate_pairs'] - r['pairs_with_a_discrepancy']:,} within "
                         f"tolerance; phases {r['phases']}")
        elif r["mode"] in ("buckets", "canonical_buckets"):
            notes.append(f"{r['case']}: {r['differing_buckets']:,} of {r['buckets']:,} buckets differed; phases {r['phases']}")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return _worker(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pushdown", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e6,1e7", help="rows per side, comma-separated (default 1e6,1e7)")
    parser.add_argument("--sparse", action="store_true", help="0.01%% of rows affected instead of 2%%")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest is reported")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--pg-url", default=os.environ.get("RECON_TEST_PG_URL", DEFAULT_PG_URL),
                        help="a database on the server to use (the benchmark creates and drops its own)")
    parser.add_argument("--mariadb-url", default=os.environ.get("RECON_TEST_MARIADB_URL", DEFAULT_MARIADB_URL),
                        help="the MariaDB server for the mariadb_* cases (the benchmark creates and drops its own database)")
    parser.add_argument("--keep", action="store_true", help="keep the loaded databases (and reuse them next time)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per case run")
    args = parser.parse_args(argv)
    drift = "sparse" if args.sparse else "default"
    cases = [c for c in args.cases.split(",") if c]
    unknown = set(cases) - set(CASES) - set(MARIADB_CASES)
    if set(cases) & set(CASES) and set(cases) & set(MARIADB_CASES):
        parser.error("run the PostgreSQL cases and the mariadb_* cases separately (they load different databases)")
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    report, reports = [], []
    for size in (gen.parse_count(s) for s in args.sizes.split(",")):
        truth = gen.ensure(size, drift)
        truth["dir"] = str(gen.data_dir(size, drift))
        print(f"{size:,} rows per side ({drift} drift, {truth['total_expected']:,} expected discrepancies)")
        on_mariadb = bool(set(cases) & set(MARIADB_CASES))
        try:
            if on_mariadb:
                url_one, url_two, load = prepare_mariadb(args.mariadb_url, args.pg_url, truth)
            else:
                url_one, url_two, load = prepare(args.pg_url, truth)
            results = []
            for name in cases:
                runs = []
                for i in range(args.repeat):
                    r = _spawn({"name": name, "url_one": url_one, "url_two": url_two, "truth_dir": truth["dir"]}, args.timeout)
                    runs.append(r)
                    shown = f"{r['seconds']:.2f} s, {r['peak_rss_gb']:.2f} GB" if "error" not in r else r["error"]
                    print(f"  {name} run {i + 1}/{args.repeat}: {shown}", flush=True)
                ok = [r for r in runs if "error" not in r]
                best = min(ok, key=lambda r: r["seconds"]) if ok else runs[0]
                if ok:
                    best["peak_rss_gb"] = max(r["peak_rss_gb"] for r in ok)
                    best["all_seconds"] = [round(r["seconds"], 2) for r in ok]
                results.append(best)
        finally:
            if on_mariadb:
                cleanup_mariadb(args.mariadb_url, args.pg_url, size, drift)
            elif not args.keep:
                cleanup(args.pg_url, size, drift)
        text = _table(size, results)
        print("\n" + text + "\n", flush=True)
        report.append(text)
        reports.append({"rows": size, "drift": drift, "load_seconds": load, "results": results})
    out = gen.DATA_ROOT / f"pushdown-results-{drift}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"command": " ".join([COMMAND.split(" --")[0]] + argv), "sizes": reports}, indent=1), encoding="utf-8")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
