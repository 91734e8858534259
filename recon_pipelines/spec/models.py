"""The declarative reconciliation spec: one YAML file per reconciliation.

Every option is documented in docs/spec-reference.md; keep the two in step.
Models are strict (unknown keys are errors) and frozen, so a spec that loads
is a spec that means what it says.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
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


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as 'UTC' or 'America/New_York')") from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources


class _SourceBase(_Model):
    name: str | None = Field(None, description="Display name of the system, e.g. 'crm'.")
    updated_at: str | None = Field(
        None, description="Column holding each record's last-modified time (for incremental runs)."
    )
    timezone: str = Field("UTC", description="Zone of naive values in the updated_at column (for time windows).")
    columns: dict[str, str] | None = Field(
        None,
        description="Declared column types. CSV and SQL: these override the inferred types (CSV columns "
        "not declared stay text). HTTP: these are the columns (no request is made to infer them). "
        "Parquet files carry their own types and ignore this.",
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

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
        return check_zone(value)


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


class RunSeverityRule(_Model):
    """Run-level: a run in which many records disagree gets a run summary at ``tier``."""

    tier: Tier
    count_above: int | None = Field(None, ge=0, description="More than this many records with a discrepancy in the run.")
    share_above: float | None = Field(None, ge=0, lt=1, description="More than this share of the run's records (0.01 = 1%).")

    @model_validator(mode="after")
    def _one_condition(self) -> "RunSeverityRule":
        if self.count_above is None and self.share_above is None:
            raise ValueError("give count_above or share_above (or both)")
        return self


class SeveritySpec(_Model):
    default: Tier = "warning"
    rules: list[SeverityRule] = Field(default_factory=list)
    run: list[RunSeverityRule] = Field(
        default_factory=list, description="Ordered run-level rules; the first that matches sets the run summary's tier."
    )


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


# --------------------------------------------------------------------------- runs: partitions, schedules, sensors


class IncrementalSpec(_Model):
    """Daily partitions: each run reads the records modified in its day on either side,
    plus their counterparts on the other side."""

    start: date = Field(description="First daily partition, e.g. 2026-01-01.")
    timezone: str = Field("UTC", description="Zone in which days start and end.")
    cron: str = Field("30 1 * * *", description="When the daily schedule runs the previous day's partition.")
    schedule_running: bool = Field(False, description="Start the daily schedule running (Dagster starts schedules stopped).")
    summary_fields: list[str] = Field(default_factory=list, description="Numeric fields whose sums are compared per run.")
    skip_when_summaries_match: bool = Field(
        False, description="Skip record-level comparison when counts, sums and content hashes of both sides match."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


class DeepScanSpec(_Model):
    """A full comparison on its own schedule: finds drift no incremental window touched."""

    cron: str = Field("0 3 * * 0", description="Weekly by default (Sunday 03:00).")
    timezone: str = "UTC"
    running: bool = Field(False, description="Start the deep-scan schedule running.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


class ChangeFeedSpec(_Model):
    """A table of writes (or outbox rows) to watch: each write whose counterpart is expected
    within ``window`` launches a run for its key once the window has passed."""

    source: SourceSpec
    cursor_column: str = Field(description="Strictly increasing column (an id or a sequence) read with a cursor.")
    key_column: str = Field(description="Column holding the written record's key.")
    written_at_column: str = Field(description="When the write happened.")
    window: Duration = Field(description="How long the counterpart may take to appear, e.g. '10m'.")
    running: bool = Field(False, description="Start the sensor running.")
    max_runs_per_tick: int = Field(100, gt=0)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> float:
        return parse_duration(value)


# --------------------------------------------------------------------------- notifications


class SlackDestination(_Model):
    """Messages now: one thread per run, one reply per discrepancy (docs/spec-reference.md)."""

    type: Literal["slack"]
    channel: str = Field(min_length=1, description="Channel name ('#revenue-alerts') or id ('C0123456').")


class SlackDigestDestination(_Model):
    """A daily digest of what is still open, sent by the ``daily_digest`` schedule."""

    type: Literal["slack_digest"]
    channel: str = Field(min_length=1)


class QueueDestination(_Model):
    """The incident queue table ``recon_incidents`` (consumers claim with FOR UPDATE SKIP LOCKED)."""

    type: Literal["queue"]
    queue: str | None = Field(None, description="Queue name in recon_incidents.queue; default: the destination's name.")
    url_env: str | None = Field(None, description="Environment variable with the queue's database URL; default: the tracker's.")


class WebhookDestination(_Model):
    """JSON POSTed to a URL; ``mode: pagerduty`` speaks PagerDuty Events v2."""

    type: Literal["webhook"]
    url_env: str = Field(description="Environment variable holding the URL (it often carries a secret).")
    mode: Literal["generic", "pagerduty"] = "generic"
    routing_key_env: str | None = Field(None, description="pagerduty: environment variable holding the routing key.")
    auth_env: str | None = Field(None, description="generic: environment variable holding a bearer token.")
    timeout: Duration = 10.0

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _pagerduty_needs_a_key(self) -> "WebhookDestination":
        if self.mode == "pagerduty" and not self.routing_key_env:
            raise ValueError("mode pagerduty needs routing_key_env (the variable holding the integration's routing key)")
        return self


class LogDestination(_Model):
    """Only logged (in the Dagster run's logs): trends, not alerts."""

    type: Literal["log"]
    level: Literal["debug", "info", "warning"] = "info"


Destination = Annotated[
    Union[SlackDestination, SlackDigestDestination, QueueDestination, WebhookDestination, LogDestination],
    Field(discriminator="type"),
]


class DigestOptions(_Model):
    cron: str = Field("0 8 * * *", description="When the daily_digest schedule runs.")
    timezone: str = "UTC"
    default_status: Literal["stopped", "running"] = Field(
        "stopped", description="Whether the schedule runs as soon as the code location loads."
    )
    lookback: Duration = Field(86400.0, description="Discrepancies opened in this window, or still open, are listed.")

    @field_validator("lookback", mode="before")
    @classmethod
    def _lookback(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a cron expression with 5 fields, such as '0 8 * * *'")
        return value


class NotificationsSpec(_Model):
    destinations: dict[str, Destination] = Field(default_factory=dict)
    aggregate_above: int = Field(
        20, ge=0, description="Slack: a run opening more discrepancies than this for one channel posts one summary."
    )
    top_examples: int = Field(5, ge=0, description="Examples shown in an aggregated message.")
    slack_token_env: str = "SLACK_BOT_TOKEN"
    dagster_url_env: str = "RECON_DAGSTER_URL"
    digest: DigestOptions = DigestOptions()

    @field_validator("destinations")
    @classmethod
    def _names(cls, value: dict) -> dict:
        bad = sorted(name for name in value if not re.match(NAME_PATTERN, name))
        if bad:
            raise ValueError(f"destination names must match {NAME_PATTERN}: {', '.join(bad)}")
        return value


class RouteRule(_Model):
    """First matching rule wins; its destinations get the notification (none: nowhere)."""

    tier: list[Tier] | None = None
    kind: list[Kind] | None = None  # type: ignore[valid-type]
    field: list[str] | None = None
    destinations: list[str]

    @field_validator("tier", "kind", "field", "destinations", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


# --------------------------------------------------------------------------- automatic fixes


class SqlFixTarget(_Model):
    """Where a sql_update writes. Every option defaults to the changed side's own SQL source."""

    url: str | None = None
    url_env: str | None = None
    table: str | None = None
    db_schema: str | None = Field(None, alias="schema")
    key_column: str | None = None
    column: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_location(self) -> "SqlFixTarget":
        if self.url is not None and self.url_env is not None:
            raise ValueError("give at most one of url or url_env")
        return self


class HttpFixTarget(_Model):
    """Where an http_call sends the corrected value: ``{"<body_field>": value}`` to ``url + path``."""

    url: str | None = None
    url_env: str | None = None
    path: str = Field("/{key}", description="Appended to the URL; {key} is the record's key, URL-encoded.")
    method: Literal["PATCH", "PUT", "POST"] = "PATCH"
    body_field: str | None = Field(None, description="JSON property to set; default: the field's column on that side.")
    auth: HttpAuth | None = None
    timeout: Duration = 30.0

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _one_location(self) -> "HttpFixTarget":
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        return self


class _FixBase(_Model):
    field: str
    system_of_record: Side = Field(description="The side whose value is right; the other side is changed.")
    allowed: bool = Field(False, description="Off by default: nothing runs, not even a dry run, until allowed.")
    dry_run: bool = Field(True, description="Show what would change without changing it.")
    values: dict[str, str] = Field(default_factory=dict, description="System-of-record value -> value to write.")
    max_changes: int = Field(100, ge=1, description="More planned changes than this and none is made.")


class SqlUpdateFix(_FixBase):
    action: Literal["sql_update"]
    target: SqlFixTarget = SqlFixTarget()


class HttpCallFix(_FixBase):
    action: Literal["http_call"]
    target: HttpFixTarget


FixSpec = Annotated[Union[SqlUpdateFix, HttpCallFix], Field(discriminator="action")]


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
    notifications: NotificationsSpec = NotificationsSpec()
    routing: list[RouteRule] = Field(default_factory=list, description="Ordered; the first rule that matches wins.")
    fixes: list[FixSpec] = Field(default_factory=list)
    propagation_lag: Duration = Field(
        0.0, description="In-flight grace: a record modified this recently on either side is not judged yet."
    )
    incremental: IncrementalSpec | None = None
    deep_scan: DeepScanSpec = DeepScanSpec()
    change_feed: ChangeFeedSpec | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    # Push-down (engine/pushdown.py): two SQL tables are compared inside their database(s) and
    # only what differs is fetched; false always reads both sides whole and compares locally.
    pushdown: bool = Field(True, description="Compare two PostgreSQL tables in the database when possible.")

    @field_validator("propagation_lag", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> float:
        return parse_duration(value)

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
        if self.incremental is not None or self.change_feed is not None:
            if len(self.key) != 1 or self.key_mapping is not None:
                raise ValueError("incremental runs and change feeds need a single key field and no key_mapping")
        if self.propagation_lag and not (self.source_a.updated_at and self.source_b.updated_at):
            raise ValueError("propagation_lag: both sources must name their updated_at column")
        if self.incremental is not None:
            if not (self.source_a.updated_at and self.source_b.updated_at):
                raise ValueError("incremental: both sources must name their updated_at column")
            numeric = {f.name for f in self.fields if isinstance(f, NumericRule)}
            unknown = sorted(set(self.incremental.summary_fields) - numeric)
            if unknown:
                raise ValueError(f"incremental.summary_fields: not numeric fields: {', '.join(unknown)}")
        known = {f.name for f in self.fields}
        for i, rule in enumerate(self.severity.rules):
            unknown = sorted(set(rule.field or ()) - known)
            if unknown:
                raise ValueError(f"severity.rules.{i}.field: unknown field(s) {', '.join(unknown)}")
        self._check_routing(known)
        self._check_fixes(known)
        return self

    def _check_routing(self, known: set[str]) -> None:
        destinations = self.notifications.destinations
        for i, rule in enumerate(self.routing):
            unknown = sorted(set(rule.field or ()) - known)
            if unknown:
                raise ValueError(f"routing.{i}.field: unknown field(s) {', '.join(unknown)}")
            missing = [name for name in rule.destinations if name not in destinations]
            if missing:
                declared = ", ".join(sorted(destinations)) or "none"
                raise ValueError(f"routing.{i}.destinations: unknown destination(s) {', '.join(missing)} "
                                 f"(declared under notifications.destinations: {declared})")

    def _check_fixes(self, known: set[str]) -> None:
        seen: set[str] = set()
        for i, fix in enumerate(self.fixes):
            if fix.field not in known:
                raise ValueError(f"fixes.{i}.field: unknown field {fix.field!r}")
            if fix.field in seen:
                raise ValueError(f"fixes.{i}.field: {fix.field!r} already has a fix")
            seen.add(fix.field)
            if len(self.key) != 1:
                raise ValueError(f"fixes.{i}: automatic fixes work with a single key field")
            if fix.action == "sql_update":
                changed = self.source_a if fix.system_of_record == "b" else self.source_b
                own_table = changed.type == "sql" and changed.table is not None
                located = fix.target.table is not None and (fix.target.url or fix.target.url_env)
                if not own_table and not located:
                    raise ValueError(f"fixes.{i}.target: the side to change is not a SQL table; give url or url_env and table")

    @property
    def source_names(self) -> tuple[str, str]:
        return (self.source_a.name or "a", self.source_b.name or "b")

    def rule(self, name: str) -> ExactRule | StringRule | NumericRule | TimestampRule:
        for rule in self.fields:
            if rule.name == name:
                return rule
        raise KeyError(name)
