"""Is this SQL text read-only? The one check for a source's ``query:``, a ``filter:`` and a
``sql`` expectation, run when the spec loads and again by the connector before anything is sent.

The text is parsed with sqlglot in the database's own dialect (its lexer matches the server's on
quoting, dollar quotes and backslashes). A ``query:`` must be exactly one ``SELECT`` (``WITH``,
``UNION`` allowed), a ``filter:`` exactly one boolean expression; in either, no DML or DDL
anywhere in the tree (a ``WITH d AS (DELETE ...)`` is refused), no ``SELECT ... INTO``, no
locking clause, and none of the functions known to act outside the transaction (``dblink``,
advisory locks, ``set_config``, server files, signalling backends). A refused text never
reaches the server. The connection side of the rule is ``sources/readonly.py``.

A leaf module (sqlglot only), so the spec can run it without importing the sources layer.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from recon_pipelines.errors import SourceError

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

class UnsafeQuery(SourceError, ValueError):
    """A ``query:`` that is not a single read-only SELECT; the message says what was found."""


def sqlglot_dialect(backend: str | None) -> str | None:
    return _SQLGLOT_DIALECTS.get((backend or "").split("+")[0])


def check_query(sql: str, backend: str | None) -> None:
    """Raise UnsafeQuery unless ``sql`` is exactly one read-only SELECT in ``backend``'s dialect."""
    tree = _parse_one(sql, backend, "query", UnsafeQuery, "a single SELECT", "one SELECT statement")
    if not isinstance(tree, exp.Query) or isinstance(tree, exp.Values):
        raise UnsafeQuery(f"query must be a SELECT, not {tree.key.upper()}")
    _refuse_anything_but_reads(tree, "query", UnsafeQuery)


def _parse_one(text: str, backend: str | None, what: str, error: type[UnsafeQuery], kind: str, one: str) -> exp.Expression:
    """The one statement ``text`` holds, parsed in ``backend``'s dialect; ``error`` otherwise.
    Refused rather than guessed at: a text the parser cannot read is one it cannot vouch for."""
    try:
        trees = [t for t in sqlglot.parse(text, read=sqlglot_dialect(backend)) if t is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise error(f"{what} is not {kind} this checker can parse ({_first_line(exc)})") from None
    if len(trees) != 1:
        raise error(f"{what} must be exactly {one}, found {len(trees)} statements")
    return trees[0]


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
    tree = _parse_one(predicate, backend, what, UnsafeFilter, "an expression", "one boolean expression")
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


def missing_filter_columns(tree: exp.Expression, available) -> list[str]:
    """The columns a filter names that the source lacks; unquoted SQL names ignore case."""
    lower = {name.lower() for name in available}
    return [c for c in filter_columns(tree) if c not in available and c.lower() not in lower]


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200]
