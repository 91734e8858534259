"""SQL pieces that mean the same on every database push-down targets, one construct each,
compiled per dialect (SQLAlchemy ``@compiles``), never transpiled from DuckDB's SQL.

Dialects: PostgreSQL (the default rendering), MariaDB/MySQL, and, compile-only (golden
tests), Snowflake, BigQuery and Databricks.

``exact_text``
    A text compared byte for byte, as DuckDB compares it. MariaDB's usual collations are
    case-insensitive and ignore trailing spaces (``'a' = 'A '`` is true), so there the
    text is converted to utf8mb4 and compared in ``utf8mb4_nopad_bin`` (code points, no
    padding); PostgreSQL's ``"C"`` collation; Snowflake's ``'utf8'``; BigQuery's binary
    ``''``; Databricks' ``UTF8_BINARY``.
``is_blank``
    The engine's blank key (``engine/keys.py``): nothing left after trimming the characters
    of ``instants.WHITESPACE``. MariaDB's ``TRIM`` strips one string, not a set of
    characters, so there every whitespace character is removed and the rest compared, byte
    for byte, with ``''``.
``record_digest``
    md5 of a record's values, each as its canonical text prefixed by its length in
    characters (``'N'`` for NULL), the same on every database: integers in decimal;
    decimals without trailing fractional zeros (``1.50`` and ``1.5`` alike, as the
    connector's decimal128 holds them); text as its UTF-8 bytes; dates ``YYYY-MM-DD``; naive timestamps ISO at microseconds; instants the same
    in UTC; booleans ``1``/``0``. Floats have no such rendering here (MariaDB prints fewer
    digits than a double needs, so two doubles could print alike): they are refused.
``hex_int``
    Eight hex digits of an md5 as a non-negative integer.

Soundness of the bucket summaries built from these (``pushdown.bucket_pairs``):
equal digests imply equal encodings (an md5 collision aside), so equal canonical texts,
and equal canonical texts imply equal values after the connector's conversion (a decimal's text without trailing zeros
*is* its value; text is compared as bytes; a timestamp's text carries every microsecond). The
converse need not hold: a canonicalisation that differs between servers (a DBMS printing a
value another way) only makes more buckets differ, which costs a fetch, never an answer.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from recon_pipelines.instants import WHITESPACE

MYSQL_FAMILY = ("mysql", "mariadb")
# Canonical text per type group (pushdown's groups). Floats are deliberately absent.
CANONICAL_GROUPS = {"int", "numeric", "text", "date", "timestamp", "timestamptz", "bool"}
# Formatted renderings that can be NULL for a value (PostgreSQL's to_char of 'infinity').
_MAY_NOT_RENDER = {"date", "timestamp", "timestamptz"}


class _Unary(FunctionElement):
    inherit_cache = True

    @property
    def arg(self):
        return self.clauses.clauses[0]


class exact_text(_Unary):  # noqa: N801 - reads as a function in SQL-building code
    inherit_cache = True
    type = sa.Text()
    name = "exact_text"


class is_blank(_Unary):  # noqa: N801
    inherit_cache = True
    type = sa.Boolean()
    name = "is_blank"


class md5_hex(_Unary):  # noqa: N801
    inherit_cache = True
    type = sa.Text()
    name = "md5_hex"


class text_length(_Unary):  # noqa: N801
    """Characters (not bytes) of a text: the same count on every database."""

    inherit_cache = True
    type = sa.Integer()
    name = "text_length"


class canonical_text(_Unary):  # noqa: N801
    """Only within ``record_digest``: ``group`` says how the value is rendered."""

    inherit_cache = False  # ``group`` is not part of SQLAlchemy's cache key: never cache
    type = sa.Text()
    name = "canonical_text"

    def __init__(self, value, group: str):
        if group not in CANONICAL_GROUPS | {"as_text"}:
            raise ValueError(f"no canonical text for {group} values")
        self.group = group
        super().__init__(value)


class hex_int(FunctionElement):  # noqa: N801
    """Hex digits ``start``..``start+7`` (1-based) of an md5 text as a non-negative integer."""

    type = sa.BigInteger()
    name = "hex_int"
    inherit_cache = False  # ``start`` is not part of SQLAlchemy's cache key: never cache

    def __init__(self, digest, start: int):
        self.start = start
        super().__init__(digest)


def canonical_field(value: sa.ColumnElement, group: str) -> sa.ColumnElement:
    """A value's canonical text, length-prefixed (``5:1.25``), or 'N' for NULL: fields so
    encoded concatenate without ambiguity (none is a prefix of another's encoding). A value its
    format cannot render (PostgreSQL's to_char of 'infinity') is 'X' and its plain text, which
    no rendered date or timestamp (digits first) can equal."""
    text = canonical_text(value, group)
    if group in _MAY_NOT_RENDER:
        text = sa.func.coalesce(text, sa.func.concat(sa.literal("X"), canonical_text(value, "as_text")))
    encoded = sa.func.concat(canonical_text(text_length(text), "int"), sa.literal(":"), text)
    return sa.case((value.is_(None), sa.literal("N")), else_=encoded)


def record_digest(values: list[tuple[sa.ColumnElement, str]]) -> sa.ColumnElement:
    """md5 of the encoded (value, group) pairs, in order: one md5 per record."""
    fields = [canonical_field(v, g) for v, g in values]
    return md5_hex(sa.func.concat(*fields) if len(fields) > 1 else fields[0])


# --------------------------------------------------------------------------- exact_text


@compiles(exact_text)
def _exact_pg(element, compiler, **kw):
    return f'{compiler.process(element.arg, **kw)} COLLATE "C"'


@compiles(exact_text, "mysql")
@compiles(exact_text, "mariadb")
def _exact_mysql(element, compiler, **kw):
    return f"CONVERT({compiler.process(element.arg, **kw)} USING utf8mb4) COLLATE utf8mb4_nopad_bin"


@compiles(exact_text, "snowflake")
def _exact_snowflake(element, compiler, **kw):
    return f"COLLATE({compiler.process(element.arg, **kw)}, 'utf8')"


@compiles(exact_text, "bigquery")
def _exact_bigquery(element, compiler, **kw):
    return f"COLLATE({compiler.process(element.arg, **kw)}, '')"


@compiles(exact_text, "databricks")
def _exact_databricks(element, compiler, **kw):
    return f"{compiler.process(element.arg, **kw)} COLLATE UTF8_BINARY"


# --------------------------------------------------------------------------- is_blank


def _ws(compiler, **kw) -> str:
    return compiler.process(sa.literal(WHITESPACE, sa.Text), **kw)


@compiles(is_blank)
def _blank_pg(element, compiler, **kw):
    return f"(btrim({compiler.process(element.arg, **kw)}, {_ws(compiler, **kw)}) = '')"


@compiles(is_blank, "snowflake")
@compiles(is_blank, "bigquery")
def _blank_trim(element, compiler, **kw):
    return f"(TRIM({compiler.process(element.arg, **kw)}, {_ws(compiler, **kw)}) = '')"


@compiles(is_blank, "databricks")
def _blank_databricks(element, compiler, **kw):
    return f"(TRIM(BOTH {_ws(compiler, **kw)} FROM {compiler.process(element.arg, **kw)}) = '')"


@compiles(is_blank, "mysql")
@compiles(is_blank, "mariadb")
def _blank_mysql(element, compiler, **kw):
    text = compiler.process(exact_text(element.arg), **kw)
    for char in WHITESPACE:
        text = f"REPLACE({text}, {compiler.process(sa.literal(char, sa.Text), **kw)}, '')"
    return f"({text} = '')"


# --------------------------------------------------------------------------- md5_hex, hex_int, text_length


@compiles(text_length)
def _length(element, compiler, **kw):
    return f"char_length({compiler.process(element.arg, **kw)})"


@compiles(text_length, "snowflake")
def _length_snowflake(element, compiler, **kw):
    return f"LENGTH({compiler.process(element.arg, **kw)})"



@compiles(md5_hex)
@compiles(md5_hex, "snowflake")
@compiles(md5_hex, "databricks")
def _md5(element, compiler, **kw):
    return f"md5({compiler.process(element.arg, **kw)})"


@compiles(md5_hex, "mysql")
@compiles(md5_hex, "mariadb")
def _md5_mysql(element, compiler, **kw):
    return f"MD5(CONVERT({compiler.process(element.arg, **kw)} USING utf8mb4))"


@compiles(md5_hex, "bigquery")
def _md5_bigquery(element, compiler, **kw):
    return f"TO_HEX(MD5({compiler.process(element.arg, **kw)}))"


def _digits(element, compiler, **kw) -> str:
    return f"substr({compiler.process(element.clauses.clauses[0], **kw)}, {element.start}, 8)"


@compiles(hex_int)
def _hex_int_pg(element, compiler, **kw):
    return f"CAST(CAST('x' || lpad({_digits(element, compiler, **kw)}, 16, '0') AS bit(64)) AS bigint)"


@compiles(hex_int, "mysql")
@compiles(hex_int, "mariadb")
def _hex_int_mysql(element, compiler, **kw):
    return f"CAST(CONV({_digits(element, compiler, **kw)}, 16, 10) AS UNSIGNED)"


@compiles(hex_int, "snowflake")
def _hex_int_snowflake(element, compiler, **kw):
    return f"TO_NUMBER({_digits(element, compiler, **kw)}, 'XXXXXXXX')"


@compiles(hex_int, "bigquery")
def _hex_int_bigquery(element, compiler, **kw):
    return f"CAST(CONCAT('0x', {_digits(element, compiler, **kw)}) AS INT64)"


@compiles(hex_int, "databricks")
def _hex_int_databricks(element, compiler, **kw):
    return f"CAST(conv({_digits(element, compiler, **kw)}, 16, 10) AS BIGINT)"


# --------------------------------------------------------------------------- canonical_text

# (template, format): the format is bound as a literal, so a '%' is escaped for drivers
# whose parameters are '%s' (pymysql), by SQLAlchemy, not here.
_ISO_US = {  # naive timestamp -> 'YYYY-MM-DDTHH:MM:SS.ffffff'
    "postgresql": ("to_char({v}, {f})", 'YYYY-MM-DD"T"HH24:MI:SS.US'),
    "mysql": ("DATE_FORMAT({v}, {f})", "%Y-%m-%dT%H:%i:%s.%f"),
    "snowflake": ("TO_VARCHAR({v}, {f})", 'YYYY-MM-DD"T"HH24:MI:SS.FF6'),
    "bigquery": ("FORMAT_DATETIME({f}, {v})", "%Y-%m-%dT%H:%M:%E6S"),
    "databricks": ("date_format({v}, {f})", "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"),
}
_ISO_DATE = {
    "postgresql": ("to_char({v}, {f})", "YYYY-MM-DD"),
    "mysql": ("DATE_FORMAT({v}, {f})", "%Y-%m-%d"),
    "snowflake": ("TO_VARCHAR({v}, {f})", "YYYY-MM-DD"),
    "bigquery": ("FORMAT_DATE({f}, {v})", "%Y-%m-%d"),
    "databricks": ("date_format({v}, {f})", "yyyy-MM-dd"),
}
_UTC = {  # an instant as the naive UTC timestamp _ISO_US renders
    "postgresql": "({v} AT TIME ZONE 'UTC')",
    "snowflake": "CONVERT_TIMEZONE('UTC', {v})::TIMESTAMP_NTZ",
    "bigquery": "DATETIME({v}, 'UTC')",
    "databricks": "convert_timezone('UTC', {v})",
}
_AS_TEXT = {"postgresql": "CAST({v} AS TEXT)", "mysql": "CAST({v} AS CHAR)", "snowflake": "TO_VARCHAR({v})",
            "bigquery": "CAST({v} AS STRING)", "databricks": "CAST({v} AS STRING)"}
# A decimal's text without trailing fractional zeros (1.50 -> 1.5, 2.00 -> 2): its value.
_NO_TRAILING_ZEROS = {
    "postgresql": "CAST(trim_scale({v}) AS TEXT)",
    "mysql": "IF(LOCATE('.', {s}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})), {s})",
    "snowflake": "IFF(CONTAINS({s}, '.'), RTRIM(RTRIM({s}, '0'), '.'), {s})",
    "bigquery": "IF(STRPOS({s}, '.') > 0, RTRIM(RTRIM({s}, '0'), '.'), {s})",
    "databricks": "IF(instr({s}, '.') > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})), {s})",
}


def _family(dialect_name: str) -> str:
    return "mysql" if dialect_name in MYSQL_FAMILY else dialect_name


def _render(template: dict, family: str, **parts) -> str:
    if family not in template:
        raise sa.exc.CompileError(f"no canonical rendering of this type on {family}")
    return template[family].format(**parts)


def _formatted(template: dict, family: str, v: str, compiler, **kw) -> str:
    pattern, fmt = template[family]
    return pattern.format(v=v, f=compiler.process(sa.literal(fmt, sa.Text), **kw))


@compiles(canonical_text)
def _canonical(element, compiler, **kw):
    family = _family(compiler.dialect.name)
    family = family if family in _AS_TEXT else "postgresql"
    v = compiler.process(element.arg, **kw)
    group = element.group
    if group == "text":  # MariaDB: in utf8mb4, whatever the column's character set
        return f"CONVERT({v} USING utf8mb4)" if family == "mysql" else v
    if group in ("int", "as_text"):
        return _render(_AS_TEXT, family, v=v)
    if group == "numeric":
        return _render(_NO_TRAILING_ZEROS, family, v=v, s=_render(_AS_TEXT, family, v=v))
    if group == "date":
        return _formatted(_ISO_DATE, family, v, compiler, **kw)
    if group == "timestamp":
        return _formatted(_ISO_US, family, v, compiler, **kw)
    if group == "timestamptz":
        return _formatted(_ISO_US, family, _render(_UTC, family, v=v), compiler, **kw)
    return f"CASE WHEN {v} THEN '1' ELSE '0' END"  # bool (NULL never reaches here)
