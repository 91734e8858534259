"""Values the tracker stores exactly as the engine reported them, on SQLite and PostgreSQL alike.

Two things from real data break PostgreSQL but not SQLite, so one rule covers both backends:

- **NUL in text.** PostgreSQL's ``text`` cannot hold ``\\x00``. A text value that contains
  one (or that happens to start with ``MARK``) is stored as ``MARK`` + its JSON string
  escape (``\\u0000``, ``\\\\``, …) and decoded on read; every other value is stored
  as it is, so BI tools see ordinary values unchanged.
- **Non-finite numbers in JSON.** ``Infinity`` and ``NaN`` are not JSON: PostgreSQL refuses
  them and webhook receivers would too. JSON columns write them as the strings
  ``"Infinity"``, ``"-Infinity"`` and ``"NaN"``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

MARK = "\ue000"  # a private-use character: never in ordinary data, and it marks an encoded value


def encode_text(value: str | None) -> str | None:
    if value is None or ("\x00" not in value and not value.startswith(MARK)):
        return value
    return MARK + json.dumps(value)[1:-1]


def decode_text(value: str | None) -> str | None:
    if value is None or not value.startswith(MARK):
        return value
    return json.loads('"' + value[len(MARK):] + '"')


def encode_column(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """``encode_text`` on an Arrow string column; only the (rare) values that need it leave Arrow."""
    column = column.cast(pa.string())
    needs = pc.or_kleene(pc.match_substring(column, "\x00"), pc.starts_with(column, MARK))
    if not pc.any(needs).as_py():
        return column
    return pa.array([encode_text(v) for v in column.to_pylist()], pa.string())


class LosslessText(sa.TypeDecorator):
    """``TEXT`` that round-trips any Python string, NUL included (see the module docstring)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return encode_text(value)

    def process_result_value(self, value, dialect):
        return decode_text(value)


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name, so that it is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """The tracker engines' JSON serializer: strict JSON, whatever the payload holds."""
    return json.dumps(finite_json(value), allow_nan=False)
