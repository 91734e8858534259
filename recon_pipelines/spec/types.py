"""Declared column types: the names a spec may use in ``columns:`` and their Arrow types."""

from __future__ import annotations

import pyarrow as pa

_TYPES = {
    "varchar": pa.string(),
    "string": pa.string(),
    "text": pa.string(),
    "bigint": pa.int64(),
    "integer": pa.int64(),
    "int": pa.int64(),
    "double": pa.float64(),
    "float": pa.float64(),
    "decimal": pa.decimal128(38, 10),
    "boolean": pa.bool_(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}

TYPE_NAMES = tuple(sorted(_TYPES))


def arrow_type(name: str, where: str = "columns") -> pa.DataType:
    try:
        return _TYPES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"{where}: unknown type {name!r}; expected one of {', '.join(TYPE_NAMES)}") from None


def declared_schema(columns: dict[str, str] | None, where: str = "columns") -> pa.Schema | None:
    if not columns:
        return None
    return pa.schema([(name, arrow_type(kind, f"{where}.{name}")) for name, kind in columns.items()])
