"""DuckDB connections, and quoting for the SQL generated from specs (names and values come from users)."""

from __future__ import annotations

import os

import duckdb


def quote_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def duckdb_connect(memory_limit: str | None = None, temp_directory: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Never the machine's zone: casts of naive text and time windows must not depend on it.
    con.execute("SET TimeZone = 'UTC'")
    # Output order is irrelevant here and keeping it costs memory and time on large joins.
    con.execute("SET preserve_insertion_order = false")
    if memory_limit or os.environ.get("RECON_DUCKDB_MEMORY_LIMIT"):
        con.execute(f"SET memory_limit = {sql_literal(memory_limit or os.environ['RECON_DUCKDB_MEMORY_LIMIT'])}")
    if temp_directory:
        con.execute(f"SET temp_directory = {sql_literal(temp_directory)}")
    return con
