"""The push-down statements compiled for Snowflake, BigQuery and Databricks (compile-only: no
such server here). Each is built with SQLAlchemy constructs and compiled by the dialect's own
package (snowflake-sqlalchemy, sqlalchemy-bigquery, databricks-sqlalchemy), never transpiled
from DuckDB's SQL; the text is compared with the files under golden/ and parsed by sqlglot in
that dialect. ``RECON_UPDATE_GOLDEN=1`` rewrites the files (review the diff before committing).

Values are rendered inline (``literal_binds``) as the dialect would hand them to a driver
with ``%``-style parameters: BigQuery's ``'%%Y'`` is its ``'%Y'``; run for real, they are
bound parameters.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlglot

from recon_pipelines.engine import pushdown
from recon_pipelines.spec import parse_spec

GOLDEN = Path(__file__).parent / "golden"
DIALECTS = {  # name -> (module with the SQLAlchemy dialect, its class, sqlglot's dialect)
    "snowflake": ("snowflake.sqlalchemy.snowdialect", "SnowflakeDialect", "snowflake"),
    "bigquery": ("sqlalchemy_bigquery", "BigQueryDialect", "bigquery"),
    "databricks": ("databricks.sqlalchemy", "DatabricksDialect", "databricks"),
}

SPEC = parse_spec({
    "name": "crm_vs_billing",
    "source_a": {"type": "sql", "url": "snowflake://account/crm", "table": "accounts", "schema": "crm"},
    "source_b": {"type": "sql", "url": "snowflake://account/billing", "table": "accounts", "schema": "billing"},
    "key": [{"name": "id", "a": "id", "b": "account_id"}],
    "fields": {
        "email": {"compare": "string", "normalize": ["trim", "lower"]},
        "plan": {"compare": "exact", "values": {"pro": ["PRO"]}},
        "amount": {"compare": "numeric", "abs_tol": 0.01},
        "qty": "exact",
        "updated_at": {"compare": "timestamp", "lag": "5m"},
        "signup": "exact",
        "note": {"compare": "exact", "nulls": {"both_null": "differ"}},
    },
})


def _tables() -> tuple[sa.Table, sa.Table]:
    metadata = sa.MetaData()

    def columns(key: str) -> list[sa.Column]:
        return [sa.Column(key, sa.VARCHAR(40)), sa.Column("email", sa.VARCHAR(100)), sa.Column("plan", sa.VARCHAR(20)),
                sa.Column("amount", sa.NUMERIC(12, 2)), sa.Column("qty", sa.BIGINT()), sa.Column("updated_at", sa.TIMESTAMP()),
                sa.Column("signup", sa.DATE()), sa.Column("note", sa.VARCHAR(200))]

    return (sa.Table("accounts", metadata, *columns("id"), schema="crm"),
            sa.Table("accounts", metadata, *columns("account_id"), schema="billing"))


def statements(name: str) -> dict[str, sa.ClauseElement]:
    """The same-database join and each side's bucket summary, as ``pushdown`` builds them."""
    profile = pushdown.WAREHOUSE_PROFILES[name]
    table_a, table_b = _tables()
    a = pushdown.declared_side(SPEC, "a", table_a, profile)
    b = pushdown.declared_side(SPEC, "b", table_b, profile)
    kinds = {fa.name: pushdown._field_kind(SPEC.rule(fa.name), fa, fb, profile) for fa, fb in zip(a.fields, b.fields)}
    join, _ = pushdown.same_database_statement(SPEC, a, b)
    return {
        "same_database": join,
        "bucket_summary_a": pushdown.summary_statement(SPEC, a, kinds, 1 << 16, pushdown._CanonicalHashes),
        "bucket_summary_b": pushdown.summary_statement(SPEC, b, kinds, 1 << 16, pushdown._CanonicalHashes),
    }


def _dialect(name: str) -> sa.engine.Dialect:
    module, cls, _ = DIALECTS[name]
    try:
        return getattr(importlib.import_module(module), cls)()
    except ImportError as exc:  # the warehouse-dialects extra (in dev) installs them
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the {name} dialect is not installed: {exc}")
        pytest.skip(f"{module} not installed: pip install -e '.[warehouse-dialects]'")


def compiled(name: str) -> dict[str, str]:
    dialect = _dialect(name)
    return {what: str(s.compile(dialect=dialect, compile_kwargs={"literal_binds": True})).strip() + "\n"
            for what, s in statements(name).items()}


@pytest.mark.parametrize("name", list(DIALECTS))
def test_the_statements_match_the_golden_files_and_parse_in_their_dialect(name):
    for what, sql in compiled(name).items():
        path = GOLDEN / f"{name}_{what}.sql"
        if os.environ.get("RECON_UPDATE_GOLDEN") == "1":
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(sql.encode())  # bytes: the blank-key test holds a carriage return
        assert path.exists(), f"{path} missing: run with RECON_UPDATE_GOLDEN=1"
        assert sql == path.read_bytes().decode(), f"{path} differs from the compiled statement (RECON_UPDATE_GOLDEN=1 rewrites it)"
        parsed = sqlglot.parse(sql, read=DIALECTS[name][2])
        assert len(parsed) == 1 and parsed[0] is not None


@pytest.mark.parametrize("name", list(DIALECTS))
def test_text_is_joined_and_grouped_byte_wise_and_every_value_is_hashed(name):
    """What a generic compilation would get wrong: the join and the duplicate audit in a
    byte-wise collation, blank keys trimmed of every whitespace character (NBSP too), and a
    canonical token for the key in each bucket expression and for all eight columns in the
    record's hash."""
    sql = compiled(name)["same_database"]
    byte_wise = {"snowflake": ", 'utf8')", "bigquery": ", '')", "databricks": "COLLATE UTF8_BINARY"}[name]
    on_clause = sql.split("FULL OUTER JOIN", 1)[1].split(" ON ", 1)[1].split("\n", 1)[0]
    assert byte_wise in on_clause and "IS DISTINCT FROM" in sql
    assert byte_wise in sql.split("HAVING", 1)[0]  # the duplicate audit's keys
    assert "TRIM(" in sql and ("\u00a0" in sql or "\\xa0" in sql)
    summary = compiled(name)["bucket_summary_a"]
    assert summary.count("'N'") == 1 + 8 + 1  # bucket key, the record's 8 columns, the duplicates' bucket key
