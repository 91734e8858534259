"""Sources are read-only (sources/readonly.py): a ``query:`` that could write is refused before it
runs, and every connection the SQL connector, push-down and fixes' reads open is read-only at the
server, with a statement timeout. Against the real PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations


import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from recon_pipelines.cli import main as recon
from recon_pipelines.sources.base import SourceError
from recon_pipelines.readonly_sql import UnsafeQuery, check_query
from recon_pipelines.sources.readonly import read_only_engine
from recon_pipelines.sources.sql import SqlConnector
from recon_pipelines.spec import SpecError, parse_spec
from recon_pipelines.spec.models import SqlSource
from recon_pipelines_tests.conftest import throwaway_mariadb

ATTACK = "SELECT id, amount FROM t) q; DROP TABLE victim; COMMIT; SELECT * FROM (SELECT id, amount FROM t"


# --------------------------------------------------------------------------- the query check


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
@pytest.mark.parametrize(
    "query, found",
    [
        (ATTACK, "single SELECT"),
        ("SELECT 1; DROP TABLE victim", "exactly one SELECT"),
        ("DROP TABLE victim", "must be a SELECT"),
        ("DELETE FROM t", "must be a SELECT"),
        ("UPDATE t SET amount = 0", "must be a SELECT"),
        ("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", "DELETE"),
        ("SELECT id INTO copy_of_t FROM t", "SELECT ... INTO"),
        ("SELECT id FROM t FOR UPDATE", "locking clause"),
        ("SELECT set_config('default_transaction_read_only', 'off', false)", "set_config()"),
        ("SELECT dblink_exec('dbname=test', 'DROP TABLE victim')", "dblink_exec()"),
        ("SELECT pg_advisory_lock(1)", "pg_advisory_lock()"),
        ("SELECT query_to_xml('DROP TABLE victim', true, true, '')", "query_to_xml()"),
        ("SELECT GET_LOCK('x', 1)", "get_lock()"),
        ("", "found 0"),
    ],
)
def test_a_query_that_could_write_is_refused(dialect, query, found):
    with pytest.raises(UnsafeQuery, match=f"(?i){__import__('re').escape(found)}"):
        check_query(query, dialect)


def test_dialect_quoting_is_the_servers():
    """A backslash ends a PostgreSQL string ('\\' is one character), so what follows is a second
    statement there; in MySQL it escapes the quote and the whole thing is one string."""
    sneaky = r"SELECT '\' ; DROP TABLE victim; --'"
    with pytest.raises(UnsafeQuery):
        check_query(sneaky, "postgresql")
    check_query(sneaky, "mysql")
    with pytest.raises(UnsafeQuery):
        check_query("SELECT $$ a $$; DROP TABLE victim", "postgresql")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT id, amount FROM t",
        "WITH x AS (SELECT id FROM t) SELECT * FROM x",
        "SELECT id FROM t UNION ALL SELECT id FROM u",
        "SELECT lower(name), count(*) FROM t WHERE note = ';' GROUP BY 1",
    ],
)
def test_plain_reads_pass(query):
    for dialect in ("postgresql", "mysql", "sqlite"):
        check_query(query, dialect)


def test_the_spec_refuses_the_query_when_its_url_names_the_dialect():
    with pytest.raises(SpecError, match=r"source_a: query is not a single SELECT"):
        parse_spec(_spec("postgresql://postgres@127.0.0.1/test", ATTACK, "sqlite:///unused.db"))


def test_statement_timeout_is_a_duration_with_a_default():
    assert SqlSource(type="sql", url="sqlite://", table="t").statement_timeout == 600
    assert SqlSource(type="sql", url="sqlite://", table="t", statement_timeout="2m").statement_timeout == 120


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg_with_victim(pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id int PRIMARY KEY, amount numeric(10,2))"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 10.00), (2, 20.00)"))
        conn.execute(sa.text("CREATE TABLE victim (id int)"))
    yield pg_url, engine
    engine.dispose()


def _victim_exists(engine: sa.Engine) -> bool:
    return sa.inspect(engine).has_table("victim")


def _spec(url_a: str, query: str, url_b: str, url_env_a: bool = False) -> dict:
    source_a = {"type": "sql", "query": query, **({"url_env": url_a} if url_env_a else {"url": url_a})}
    return {"name": "readonly", "source_a": source_a, "source_b": {"type": "sql", "url": url_b, "table": "t"},
            "key": "id", "fields": {"amount": {"compare": "numeric"}}}


@pytest.mark.postgres
@pytest.mark.parametrize("command", ["validate", "run"])
def test_the_drop_table_attack_leaves_the_victim_in_place(pg_with_victim, tmp_path, monkeypatch, command):
    """The URL comes from the environment, so the spec loads and the connector's own check is what stops it."""
    url, engine = pg_with_victim
    monkeypatch.setenv("RECON_TEST_SOURCE_URL", url)
    spec_file = tmp_path / "attack.yaml"
    spec_file.write_text(yaml.safe_dump(_spec("RECON_TEST_SOURCE_URL", ATTACK, url, url_env_a=True)))
    result = CliRunner().invoke(recon, [command, str(spec_file)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "query" in lines[0] and "SELECT" in lines[0], lines
    assert _victim_exists(engine)


@pytest.mark.postgres
def test_postgres_sessions_refuse_writes_even_after_changing_their_default(pg_with_victim):
    """The second layer, for what the query check might miss: the server refuses the write, also in
    a pooled session whose default_transaction_read_only was switched off."""
    url, engine = pg_with_victim
    ro = read_only_engine(url)
    try:
        with ro.connect() as conn:
            with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
                conn.execute(sa.text("DROP TABLE victim"))
        with ro.connect() as conn:
            conn.execute(sa.text("SELECT set_config('default_transaction_read_only', 'off', false)"))
            conn.commit()
            with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
                conn.execute(sa.text("DELETE FROM t"))
    finally:
        ro.dispose()
    assert _victim_exists(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 2


@pytest.mark.postgres
def test_postgres_query_source_reads_and_a_slow_statement_times_out(pg_with_victim):
    url, _ = pg_with_victim
    reader = SqlConnector(SqlSource(type="sql", url=url, query="SELECT id, amount FROM t WHERE amount > 15"))
    try:
        assert [b.to_pylist() for b in reader.batches()] == [[{"id": 2, "amount": 20}]]
    finally:
        reader.close()
    slow = SqlConnector(SqlSource(type="sql", url=url, query="SELECT 1 AS id FROM pg_sleep(30)", statement_timeout="200ms"))
    try:
        with pytest.raises(SourceError, match="statement timeout"):
            slow.schema()
    finally:
        slow.close()


# --------------------------------------------------------------------------- MariaDB


@pytest.fixture
def mariadb_url():
    with throwaway_mariadb() as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (id int PRIMARY KEY, amount decimal(10,2))"))
            conn.execute(sa.text("INSERT INTO t VALUES (1, 10.00), (2, 20.00)"))
            conn.execute(sa.text("CREATE TABLE victim (id int)"))
        try:
            yield url, engine
        finally:
            engine.dispose()


def test_mariadb_sessions_are_read_only_and_bounded(mariadb_url, monkeypatch):
    url, engine = mariadb_url
    ro = read_only_engine(url, statement_timeout=0.2)
    try:
        with ro.connect() as conn:
            with pytest.raises(sa.exc.OperationalError, match="(?i)read only"):
                conn.execute(sa.text("INSERT INTO t VALUES (3, 30)"))
        with ro.connect() as conn:
            with pytest.raises(sa.exc.OperationalError, match="(?i)max_statement_time|interrupted"):
                conn.execute(sa.text("SELECT SLEEP(5) FROM t")).fetchall()
    finally:
        ro.dispose()
    reader = SqlConnector(SqlSource(type="sql", url=url, query="SELECT id, amount FROM t WHERE amount > 15"))
    try:
        assert [r["id"] for b in reader.batches() for r in b.to_pylist()] == [2]
    finally:
        reader.close()
    monkeypatch.setenv("RECON_TEST_SOURCE_URL", url)
    attack = SqlConnector(SqlSource(type="sql", url_env="RECON_TEST_SOURCE_URL", query=ATTACK))
    with pytest.raises(UnsafeQuery, match="query"):
        attack.schema()
    attack.close()
    assert sa.inspect(engine).has_table("victim")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 2


# --------------------------------------------------------------------------- SQLite


def test_sqlite_sessions_are_read_only(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'source.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id integer PRIMARY KEY, amount numeric)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1, 10), (2, 20)"))
        conn.execute(sa.text("CREATE TABLE victim (id integer)"))
    ro = read_only_engine(url)
    try:
        with ro.connect() as conn:
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                conn.execute(sa.text("DROP TABLE victim"))
    finally:
        ro.dispose()
    monkeypatch.setenv("RECON_TEST_SOURCE_URL", url)
    attack = SqlConnector(SqlSource(type="sql", url_env="RECON_TEST_SOURCE_URL", query=ATTACK))
    with pytest.raises(UnsafeQuery):
        attack.schema()
    attack.close()
    reader = SqlConnector(SqlSource(type="sql", url=url, query="WITH big AS (SELECT * FROM t WHERE amount > 15) SELECT * FROM big"))
    try:
        assert [r["id"] for b in reader.batches() for r in b.to_pylist()] == [2]
    finally:
        reader.close()
    assert sa.inspect(engine).has_table("victim")
    engine.dispose()


# --------------------------------------------------------------------------- push-down and fixes


@pytest.mark.postgres
def test_push_down_statements_run_on_the_read_only_connection(pg_with_victim):
    """Push-down's transactions (pushdown.run_read_only) run on the SQL connector's engine: a write there fails."""
    from types import SimpleNamespace

    from recon_pipelines.engine import pushdown

    url, engine = pg_with_victim
    connector = SqlConnector(SqlSource(type="sql", name="crm", url=url, table="t"))
    side = SimpleNamespace(connector=connector, label=connector.label, profile=pushdown.PROFILES["postgresql"])
    try:
        with pytest.raises(SourceError, match="read-only transaction"):
            pushdown.run_read_only(side, "summary", lambda conn: conn.execute(sa.text("DROP TABLE victim")))
    finally:
        connector.close()
    assert _victim_exists(engine)


def test_a_fix_reads_read_only_and_writes_only_its_update(tmp_path):
    from recon_pipelines.remediation.fixes import _SqlTarget

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, plan TEXT)"))
        conn.execute(sa.text("INSERT INTO customers VALUES (1, 'pro')"))
    spec = parse_spec({
        "name": "crm_fix", "key": "customer_id", "fields": {"plan": "exact"},
        "source_a": {"type": "sql", "url": url, "table": "customers"},
        "source_b": {"type": "file", "path": "billing.csv"},
        "fixes": [{"field": "plan", "action": "sql_update", "system_of_record": "b", "allowed": True}],
    })
    target = _SqlTarget(spec, spec.fixes[0], {})
    try:
        with target.reader.connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.execute(sa.text("DELETE FROM customers"))
        assert target.write("1", before="pro", after="business") is True  # the allow-listed UPDATE
    finally:
        target.close()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT plan FROM customers")).scalar() == "business"
    engine.dispose()
