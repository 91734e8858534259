"""Sources are read-only: the one place that checks a ``query:`` and opens read-only connections.

Two layers, because either alone has a gap:

- ``check_query`` parses the query with sqlglot in the database's own dialect (its lexer
  matches the server's on quoting, dollar quotes and backslashes) and accepts exactly one
  ``SELECT`` (``WITH``, ``UNION`` allowed): no second statement, no DML or DDL anywhere in
  the tree (a ``WITH d AS (DELETE ...)`` is refused), no ``SELECT ... INTO``, no locking
  clause, and none of the functions known to act outside the transaction (``dblink``,
  advisory locks, ``set_config``, server files, signalling backends). A refused query never
  reaches the server.
- ``read_only_engine`` opens every connection so that the server itself refuses writes:
  PostgreSQL ``default_transaction_read_only`` from the first packet (libpq ``options``) and
  ``SET TRANSACTION READ ONLY`` at each begin; MySQL/MariaDB ``SET SESSION TRANSACTION READ
  ONLY``; SQLite ``PRAGMA query_only``. A side-effecting function the list above misses still
  runs inside a read-only transaction, which refuses any write to the database.

Each statement is also bounded by a statement timeout (PostgreSQL ``statement_timeout``,
MariaDB ``max_statement_time``, MySQL ``max_execution_time``; SQLite has none, it is a local
file). Other databases get the query check only.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlglot
from sqlglot import exp

from recon_pipelines.sources.base import SourceError

# sqlglot's dialect for a SQLAlchemy backend name; anything else is parsed in the generic dialect.
_SQLGLOT_DIALECTS = {"postgresql": "postgres", "postgres": "postgres", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite",
                     "duckdb": "duckdb", "mssql": "tsql", "oracle": "oracle", "snowflake": "snowflake"}

# Statements, clauses and nodes that write, lock or change the session, wherever they appear.
_FORBIDDEN_NODES = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.TruncateTable,
    exp.Copy, exp.Command, exp.Set, exp.Transaction, exp.Commit, exp.Rollback, exp.Pragma, exp.Grant,
    exp.Revoke, exp.LoadData, exp.Use, exp.Kill, exp.Cache, exp.Uncache, exp.Refresh, exp.Analyze,
    exp.Into, exp.Lock,
)
# Functions with effects a read-only transaction does not stop: another connection (dblink),
# session state that outlives the query in a pooled connection (set_config, advisory locks),
# the server's files, other sessions, the server process, or SQL run from a string
# (query_to_xml executes its argument, which this check never sees).
_FORBIDDEN_FUNCTIONS = {
    "set_config", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_switch_wal", "pg_create_restore_point", "pg_promote", "pg_notify", "pg_logical_emit_message",
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
    "cursor_to_xmlschema", "get_lock", "release_lock", "release_all_locks", "load_file", "sys_exec",
    "sys_eval", "load_extension", "writefile", "readfile",
}
_FORBIDDEN_PREFIXES = ("dblink", "pg_advisory", "pg_try_advisory", "lo_", "pg_read_", "pg_ls_", "pg_file_",
                       "pg_stat_reset", "pg_replication_", "pg_create_", "pg_drop_", "pg_import_")

DEFAULT_STATEMENT_TIMEOUT = 600.0  # seconds; SqlSource.statement_timeout's default


class UnsafeQuery(SourceError, ValueError):
    """A ``query:`` that is not a single read-only SELECT; the message says what was found."""


def sqlglot_dialect(backend: str | None) -> str | None:
    return _SQLGLOT_DIALECTS.get((backend or "").split("+")[0])


def check_query(sql: str, backend: str | None) -> None:
    """Raise UnsafeQuery unless ``sql`` is exactly one read-only SELECT in ``backend``'s dialect."""
    dialect = sqlglot_dialect(backend)
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        # Refused rather than guessed at: a query the parser cannot read is a query it cannot vouch for.
        raise UnsafeQuery(f"query is not a single SELECT this checker can parse ({_first_line(exc)})") from None
    if len(statements) != 1:
        raise UnsafeQuery(f"query must be exactly one SELECT statement, found {len(statements)}")
    (tree,) = statements
    if not isinstance(tree, exp.Query) or isinstance(tree, exp.Values):
        raise UnsafeQuery(f"query must be a SELECT, not {tree.key.upper()}")
    _refuse_anything_but_reads(tree, "query", UnsafeQuery)


def _refuse_anything_but_reads(tree: exp.Expression, what: str, error: type[UnsafeQuery]) -> None:
    """One rule for a query and a filter: no node that writes or locks, no side-effecting function."""
    for node in tree.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            found = "SELECT ... INTO" if isinstance(node, exp.Into) else (
                "a locking clause (FOR UPDATE/SHARE)" if isinstance(node, exp.Lock) else node.key.upper())
            raise error(f"{what} must only read, found {found}")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in _FORBIDDEN_FUNCTIONS or name.startswith(_FORBIDDEN_PREFIXES):
                raise error(f"{what} calls {name}(), which acts outside a read-only transaction")


# The roots a ``filter:`` may have: one condition (comparison, IN, LIKE, IS, BETWEEN...),
# conditions joined by AND/OR/NOT, a boolean literal or a boolean column.
_CONDITION_ROOTS = (exp.Predicate, exp.Connector, exp.Not, exp.Boolean, exp.Paren, exp.Column, exp.Exists)


class UnsafeFilter(UnsafeQuery):
    """A ``filter:`` that is not one read-only boolean expression."""


def check_filter(predicate: str, backend: str | None, what: str = "filter") -> exp.Expression:
    """Parse a source's ``filter:`` as one boolean expression in ``backend``'s dialect and
    refuse anything else, with the same read-only rules as ``check_query`` for any subquery.
    The caller appends the *returned tree* (regenerated by sqlglot), never the raw text, so
    a comment or quote trick cannot close the WHERE and start another clause."""
    dialect = sqlglot_dialect(backend)
    try:
        trees = [t for t in sqlglot.parse(predicate, read=dialect) if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise UnsafeFilter(f"{what} is not an expression this checker can parse ({_first_line(exc)})") from None
    if len(trees) != 1:
        raise UnsafeFilter(f"{what} must be exactly one boolean expression, found {len(trees)} statements")
    (tree,) = trees
    if not isinstance(tree, _CONDITION_ROOTS):
        raise UnsafeFilter(f"{what} must be one boolean expression (a condition), not {tree.key.upper()}")
    _refuse_anything_but_reads(tree, what, UnsafeFilter)
    return tree


def filter_columns(tree: exp.Expression) -> list[str]:
    """The source's own columns a filter refers to (those outside any subquery)."""
    names = []
    for column in tree.find_all(exp.Column):
        if column.find_ancestor(exp.Query) is None and column.name not in names:
            names.append(column.name)
    return names


def filter_sql(predicate: str | None, backend: str | None, available: list[str], label: str) -> str | None:
    """A source's ``filter:`` checked and regenerated in ``backend``'s dialect, once every column it
    names exists (else one line naming the source, ``filter`` and the column); None without one."""
    if predicate is None:
        return None
    try:
        tree = check_filter(predicate, backend)
    except UnsafeFilter as exc:
        raise UnsafeFilter(f"{label}: {exc}") from None
    lower = {name.lower() for name in available}
    missing = [c for c in filter_columns(tree) if c not in available and c.lower() not in lower]
    if missing:
        raise SourceError(
            f"{label}: filter refers to column(s) {', '.join(map(repr, missing))} not found; "
            f"the source has {', '.join(available) or 'no columns'}"
        )
    return f"({tree.sql(dialect=sqlglot_dialect(backend))})"


def read_only_engine(url: str | sa.URL, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT) -> sa.Engine:
    """An engine whose every connection the server holds to reading, each statement bounded."""
    url = sa.make_url(url)
    backend = url.get_backend_name()
    millis = max(1, int(statement_timeout * 1000))
    if backend == "postgresql":
        options = f"-c default_transaction_read_only=on -c statement_timeout={millis}"
        if url.query.get("options"):
            options = f"{url.query['options']} {options}"  # ours last: they win
        engine = sa.create_engine(url, connect_args={"options": options})

        @sa.event.listens_for(engine, "begin")
        def _begin(conn):  # a pooled session whose default was changed is still read-only
            # On the DBAPI cursor: the connection may carry stream_results, which would wrap
            # this statement in a server-side cursor (DECLARE ... FOR SET is not SQL).
            with conn.connection.dbapi_connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY")

        return engine
    if backend in ("mysql", "mariadb"):
        engine = sa.create_engine(url)

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION TRANSACTION READ ONLY")
            cursor.execute("SELECT VERSION()")
            if "mariadb" in str(cursor.fetchone()[0]).lower():
                cursor.execute(f"SET SESSION max_statement_time = {millis / 1000:.3f}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {millis}")
            cursor.close()

        return engine
    if backend == "sqlite":
        engine = sa.create_engine(url)

        @sa.event.listens_for(engine, "connect")
        def _sqlite(dbapi_connection, _record):
            dbapi_connection.execute("PRAGMA query_only = ON")

        return engine
    if backend == "duckdb":
        return sa.create_engine(url, connect_args={"read_only": True})
    return sa.create_engine(url)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200]
