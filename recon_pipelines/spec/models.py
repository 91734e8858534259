"""The declarative reconciliation spec: one YAML file per reconciliation.

Every option is documented in docs/spec-reference.md; keep the two in step.
Models are strict (unknown keys are errors) and frozen, so a spec that loads
is a spec that means what it says.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from recon_pipelines.sources.types import arrow_type

Side = Literal["a", "b"]
Tier = Literal["critical", "warning", "info"]
Normalization = Literal["trim", "lower", "upper", "nfc", "collapse_whitespace"]

# Discrepancy kinds the engine reports. Record-level kinds have no field.
KINDS = (
    "only_in_a",
    "only_in_b",
    "duplicate_key_a",
    "duplicate_key_b",
    "invalid_key_a",
    "invalid_key_b",
    "unmapped_a",
    "unmapped_b",
    "field_mismatch",
)
Kind = Literal[KINDS]  # type: ignore[valid-type]

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90s"`, `"5m"`, `"4h"`, `"2d"`; used for lags and ages."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 60, '60s', '5m' or '4h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration such as 60, '60s', '5m' or '4h'")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources


class _SourceBase(_Model):
    name: str | None = Field(None, description="Display name of the system, e.g. 'crm'.")
    updated_at: str | None = Field(
        None, description="Column holding each record's last-modified time (for incremental runs)."
    )
    columns: dict[str, str] | None = Field(
        None,
        description="Declared column types. CSV and SQL: these override the inferred types (CSV columns "
        "not declared stay text). HTTP: these are the columns (no request is made to infer them). "
        "Parquet files carry their own types and ignore this.",
    )

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, kind in (value or {}).items():
            arrow_type(kind, name)  # raises ValueError naming the column and the known types
        return value


class FileSource(_SourceBase):
    type: Literal["file"]
    path: str
    format: Literal["csv", "parquet"] | None = None
    delimiter: str = ","

    @property
    def resolved_format(self) -> str:
        """``format`` when given; else from the name (a glob's too), and a folder is Parquet."""
        if self.format:
            return self.format
        lower = self.path.lower().rstrip("/")
        if lower.endswith((".parquet", ".pq")) or Path(self.path).is_dir():
            return "parquet"
        return "csv"

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path is empty")
        return value


class SqlSource(_SourceBase):
    type: Literal["sql"]
    url: str | None = Field(None, description="SQLAlchemy URL; use url_env when it holds a password.")
    url_env: str | None = Field(None, description="Environment variable holding the SQLAlchemy URL.")
    table: str | None = None
    db_schema: str | None = Field(None, alias="schema")
    query: str | None = None
    chunk_size: int = Field(50_000, gt=0)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_location(self) -> "SqlSource":
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self


class Pagination(_Model):
    style: Literal["none", "page", "offset", "cursor", "next_link"] = "none"
    page_param: str = "page"
    size_param: str = "per_page"
    page_size: int = Field(100, gt=0)
    first_page: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str = Field("next_cursor", description="Dotted path of the next cursor in the response body.")
    next_link_path: str | None = Field(
        None, description="Dotted path of the next page URL in the body; default: the Link header."
    )
    max_pages: int = Field(100_000, gt=0)


class HttpAuth(_Model):
    type: Literal["bearer", "header", "basic"] = "bearer"
    env: str = Field(description="Environment variable holding the token (basic: 'user:password').")
    header: str = "Authorization"


class HttpSource(_SourceBase):
    type: Literal["http"]
    url: str
    records_path: str = Field("data", description="Dotted path of the list of records in each page; '' for a bare list.")
    params: dict[str, str | int | float | bool] = {}
    headers: dict[str, str] = {}
    auth: HttpAuth | None = None
    pagination: Pagination = Pagination()
    timeout: Duration = 30.0
    max_retries: int = Field(5, ge=0)
    max_backoff: Duration = 60.0
    requests_per_second: float | None = Field(None, gt=0)

    @field_validator("timeout", "max_backoff", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


SourceSpec = Annotated[Union[FileSource, SqlSource, HttpSource], Field(discriminator="type")]


# --------------------------------------------------------------------------- keys


class KeyField(_Model):
    name: str
    a: str
    b: str


class KeyMapping(_Model):
    """A table that maps A's identifiers to B's, for systems that use different ids."""

    source: SourceSpec
    a: str = Field(description="Column of the mapping table holding A's key.")
    b: str = Field(description="Column of the mapping table holding B's key.")


# --------------------------------------------------------------------------- field rules


class NullPolicy(_Model):
    both_null: Literal["equal", "differ"] = "equal"
    allow_null_in: list[Side] = Field(
        default_factory=list,
        description="Sides on which a null facing a value is 'not yet propagated', not a discrepancy.",
    )


class _RuleBase(_Model):
    name: str
    a: str
    b: str
    nulls: NullPolicy = NullPolicy()


class ExactRule(_RuleBase):
    compare: Literal["exact"] = "exact"
    values: dict[str, list[str | int | float | bool]] = Field(
        default_factory=dict, description="Canonical value -> aliases treated as equal to it."
    )


class StringRule(_RuleBase):
    compare: Literal["string"]
    normalize: list[Normalization] = Field(default_factory=lambda: ["trim", "nfc"])
    values: dict[str, list[str | int | float | bool]] = Field(default_factory=dict)


class NumericRule(_RuleBase):
    compare: Literal["numeric"]
    abs_tol: float = Field(0.0, ge=0)
    rel_tol: float = Field(0.0, ge=0)
    scale_a: float = Field(1.0, gt=0, description="Multiplier applied to A's values first (e.g. 0.01 for cents).")
    scale_b: float = Field(1.0, gt=0, description="Multiplier applied to B's values first.")


class TimestampRule(_RuleBase):
    compare: Literal["timestamp"]
    lag: Duration = 0.0
    timezone_a: str = Field("UTC", description="Zone of naive timestamps on side A.")
    timezone_b: str = Field("UTC", description="Zone of naive timestamps on side B.")

    @field_validator("lag", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("timezone_a", "timezone_b")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'America/New_York')") from None
        return value


FieldRule = Annotated[
    Union[ExactRule, StringRule, NumericRule, TimestampRule], Field(discriminator="compare")
]
RULE_TYPES = {"exact": ExactRule, "string": StringRule, "numeric": NumericRule, "timestamp": TimestampRule}


# --------------------------------------------------------------------------- severity


class SeverityRule(_Model):
    """First matching rule wins; a rule with no condition matches everything."""

    tier: Tier
    kind: list[Kind] | None = None  # type: ignore[valid-type]
    field: list[str] | None = None
    min_difference: float | None = Field(None, ge=0, description="|a - b| at least this (numeric/timestamp).")
    max_difference: float | None = Field(None, ge=0, description="|a - b| at most this.")
    min_relative_difference: float | None = Field(None, ge=0)

    @field_validator("kind", "field", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class SeveritySpec(_Model):
    default: Tier = "warning"
    rules: list[SeverityRule] = Field(default_factory=list)


# --------------------------------------------------------------------------- escalation


class EscalationSpec(_Model):
    """When a run moves an open discrepancy (new or acknowledged) to ``escalated``."""

    after_open: Duration | None = Field(None, description="Open longer than this (e.g. '3d').")
    after_runs: int | None = Field(None, ge=1, description="Seen in more than this many consecutive runs.")
    severities: list[Tier] = Field(default_factory=list, description="Escalate at once at these tiers.")

    @field_validator("after_open", mode="before")
    @classmethod
    def _after_open(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


# --------------------------------------------------------------------------- the spec


class ReconciliationSpec(_Model):
    name: str = Field(pattern=NAME_PATTERN, description="Identifier; names the Dagster asset group.")
    description: str = ""
    owner: str | None = None
    source_a: SourceSpec
    source_b: SourceSpec
    key: list[KeyField]
    key_mapping: KeyMapping | None = None
    fields: list[FieldRule] = Field(default_factory=list)
    severity: SeveritySpec = SeveritySpec()
    escalation: EscalationSpec = EscalationSpec()
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> "ReconciliationSpec":
        if not self.key:
            raise ValueError("key: at least one key field is required")
        names = [k.name for k in self.key] + [f.name for f in self.fields]
        reserved = [n for n in names if n.startswith("__")]
        if reserved:
            raise ValueError(f"names starting with '__' are reserved: {', '.join(reserved)}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names used twice among key and fields: {', '.join(dupes)}")
        if self.key_mapping is not None and len(self.key) != 1:
            raise ValueError("key_mapping works with a single key field")
        known = {f.name for f in self.fields}
        for i, rule in enumerate(self.severity.rules):
            unknown = sorted(set(rule.field or ()) - known)
            if unknown:
                raise ValueError(f"severity.rules.{i}.field: unknown field(s) {', '.join(unknown)}")
        return self

    @property
    def source_names(self) -> tuple[str, str]:
        return (self.source_a.name or "a", self.source_b.name or "b")

    def rule(self, name: str) -> ExactRule | StringRule | NumericRule | TimestampRule:
        for rule in self.fields:
            if rule.name == name:
                return rule
        raise KeyError(name)
