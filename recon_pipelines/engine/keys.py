"""What makes a key invalid: one definition for the engine and the Dagster key check."""

from __future__ import annotations

from recon_pipelines.instants import WHITESPACE
from recon_pipelines.sqlutil import quote_ident, sql_literal


def invalid_key_sql(keys: list[str], types: dict[str, str], alias: str | None = None) -> str:
    """DuckDB SQL true for a record whose key cannot be matched: any key column NULL, or text
    that is blank after trimming (tabs and NBSP included). ``types`` maps each key column to
    its DuckDB type; ``alias`` qualifies the columns (``s`` gives ``s."id"``)."""
    tests = []
    for key in keys:
        column = f"{alias}.{quote_ident(key)}" if alias else quote_ident(key)
        tests.append(f"{column} IS NULL")
        if types[key] == "VARCHAR":
            tests.append(f"trim({column}, {sql_literal(WHITESPACE)}) = ''")
    return "(" + " OR ".join(tests) + ")"
