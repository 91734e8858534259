"""Expectations per side (``source_a.expect``): what each side's records must satisfy before
they are compared. Written as one-key mappings in YAML::

    expect:
      - not_null: email
      - accepted_values: {column: status, values: [active, churned]}
      - row_count: {min: 1}
      - freshness: {max_age: 2d}
      - {sql: "amount >= 0", name: non_negative_amount, severity: warn}

Each item is turned into ``{kind: <the key>, ...}`` and parsed as one member of a
discriminated union. Columns are the spec's key and field names (what a snapshot holds).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, field_validator, model_validator

from recon_pipelines.readonly_sql import check_filter, filter_columns
from recon_pipelines.spec.base import Duration, StrictModel

KINDS = ("not_null", "unique", "accepted_values", "range", "regex", "row_count", "freshness", "sql")
# Kinds whose value in the one-key form is the column name itself (or the predicate, for sql).
_SCALAR = {"not_null": "column", "unique": "column", "sql": "predicate"}


class _Expectation(StrictModel):
    name: str | None = Field(None, description="Names the check (expect_<name>); default: the kind and column.")
    severity: Literal["error", "warn"] = Field(
        "error", description="error: a failure stops the comparison; warn: it is reported and the run goes on.")

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_]+", value):
            raise ValueError(f"name {value!r}: letters, digits and underscores only")
        return value

    @property
    def columns(self) -> list[str]:
        column = getattr(self, "column", None)
        return [column] if column else []

    @property
    def check_name(self) -> str:
        """The asset check's name: ``expect_`` + the name, else the kind and column."""
        return "expect_" + (self.name or "_".join([self.kind, *self.columns]))


class NotNull(_Expectation):
    kind: Literal["not_null"]
    column: str


class Unique(_Expectation):
    kind: Literal["unique"]
    column: str


class AcceptedValues(_Expectation):
    kind: Literal["accepted_values"]
    column: str
    values: list[str | int | float | bool] = Field(min_length=1)


class Range(_Expectation):
    kind: Literal["range"]
    column: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> "Range":
        if self.min is None and self.max is None:
            raise ValueError("range: give min, max or both")
        return self


class Regex(_Expectation):
    kind: Literal["regex"]
    column: str
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from None
        return value


class RowCount(_Expectation):
    kind: Literal["row_count"]
    min: int | None = Field(None, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _a_bound(self) -> "RowCount":
        if self.min is None and self.max is None:
            raise ValueError("row_count: give min, max or both")
        return self


class Freshness(_Expectation):
    kind: Literal["freshness"]
    max_age: Duration = Field(gt=0, description="The newest updated_at must be at most this old, e.g. 2d.")


class SqlExpectation(_Expectation):
    kind: Literal["sql"]
    predicate: str = Field(description="A DuckDB boolean expression every record must satisfy (true, not NULL).")

    @field_validator("predicate")
    @classmethod
    def _one_condition(cls, value: str) -> str:
        check_filter(value, "duckdb", what="sql")
        return value

    @property
    def columns(self) -> list[str]:
        return filter_columns(check_filter(self.predicate, "duckdb"))

    @property
    def check_name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "_", self.predicate.lower()).strip("_")[:40]
        return "expect_" + (self.name or f"sql_{slug}")


def _one_key_form(value: Any) -> Any:
    """``{not_null: email, severity: warn}`` -> ``{kind: not_null, column: email, severity: warn}``."""
    if not isinstance(value, dict) or "kind" in value:
        return value
    kinds = [k for k in value if k in KINDS]
    if len(kinds) != 1:
        raise ValueError(f"each expectation has exactly one of {', '.join(KINDS)}; found {', '.join(map(str, value)) or 'none'}")
    (kind,) = kinds
    rest = {k: v for k, v in value.items() if k != kind}
    body = value[kind]
    if kind in _SCALAR and not isinstance(body, dict):
        return {"kind": kind, _SCALAR[kind]: body, **rest}
    if not isinstance(body, dict):
        raise ValueError(f"{kind}: expected a mapping of its options")
    return {"kind": kind, **body, **rest}


_Tagged = Annotated[
    Union[NotNull, Unique, AcceptedValues, Range, Regex, RowCount, Freshness, SqlExpectation],
    Field(discriminator="kind"),
]
Expectation = Annotated[_Tagged, BeforeValidator(_one_key_form)]
