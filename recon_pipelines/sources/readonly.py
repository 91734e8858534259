"""Sources are read-only: the one place that opens read-only connections.

Two layers, because either alone has a gap:

- the text check (``readonly_sql``): a ``query:`` is exactly one read-only ``SELECT``, a
  ``filter:`` one boolean expression, with no write, lock or side-effecting function anywhere;
  a refused text never reaches the server.
- ``read_only_engine`` opens every connection so that the server itself refuses writes:
  PostgreSQL ``default_transaction_read_only`` from the first packet (libpq ``options``) and
  ``SET TRANSACTION READ ONLY`` at each begin; MySQL/MariaDB ``SET SESSION TRANSACTION READ
  ONLY``; SQLite ``PRAGMA query_only``. A side-effecting function the text check misses still
  runs inside a read-only transaction, which refuses any write to the database.

Each statement is also bounded by a statement timeout (PostgreSQL ``statement_timeout``,
MariaDB ``max_statement_time``, MySQL ``max_execution_time``; SQLite has none, it is a local
file). Other databases get the text check only.
"""

from __future__ import annotations

import sqlalchemy as sa

from recon_pipelines.readonly_sql import UnsafeFilter, check_filter, missing_filter_columns, sqlglot_dialect
from recon_pipelines.sources.base import SourceError
from recon_pipelines.spec.sources import DEFAULT_STATEMENT_TIMEOUT


def filter_sql(predicate: str | None, backend: str | None, available: list[str], label: str) -> str | None:
    """A source's ``filter:`` checked and regenerated in ``backend``'s dialect, once every column it
    names exists (else one line naming the source, ``filter`` and the column); None without one."""
    if predicate is None:
        return None
    try:
        tree = check_filter(predicate, backend)
    except UnsafeFilter as exc:
        raise UnsafeFilter(f"{label}: {exc}") from None
    missing = missing_filter_columns(tree, available)
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
