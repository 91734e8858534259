"""Who hears about discrepancies (notifications, routing) and allow-listed automatic fixes."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, field_validator, model_validator

from recon_pipelines.spec.base import NAME_PATTERN, Duration, Kind, Side, StrictModel, Tier, check_zone
from recon_pipelines.spec.sources import HttpAuth


# --------------------------------------------------------------------------- notifications


class SlackDestination(StrictModel):
    """Messages now: one thread per run, one reply per discrepancy (docs/spec-reference.md)."""

    type: Literal["slack"]
    channel: str = Field(min_length=1, description="Channel name ('#revenue-alerts') or id ('C0123456').")


class SlackDigestDestination(StrictModel):
    """A daily digest of what is still open, sent by the ``daily_digest`` schedule."""

    type: Literal["slack_digest"]
    channel: str = Field(min_length=1)


class QueueDestination(StrictModel):
    """The incident queue table ``recon_incidents`` (consumers claim with FOR UPDATE SKIP LOCKED)."""

    type: Literal["queue"]
    queue: str | None = Field(None, description="Queue name in recon_incidents.queue; default: the destination's name.")
    url_env: str | None = Field(None, description="Environment variable with the queue's database URL; default: the tracker's.")


class WebhookDestination(StrictModel):
    """JSON POSTed to a URL; ``mode: pagerduty`` speaks PagerDuty Events v2."""

    type: Literal["webhook"]
    url_env: str = Field(description="Environment variable holding the URL (it often carries a secret).")
    mode: Literal["generic", "pagerduty"] = "generic"
    routing_key_env: str | None = Field(None, description="pagerduty: environment variable holding the routing key.")
    auth_env: str | None = Field(None, description="generic: environment variable holding a bearer token.")
    timeout: Duration = 10.0


    @model_validator(mode="after")
    def _pagerduty_needs_a_key(self) -> "WebhookDestination":
        if self.mode == "pagerduty" and not self.routing_key_env:
            raise ValueError("mode pagerduty needs routing_key_env (the variable holding the integration's routing key)")
        return self


class LogDestination(StrictModel):
    """Only logged (in the Dagster run's logs): trends, not alerts."""

    type: Literal["log"]
    level: Literal["debug", "info", "warning"] = "info"


Destination = Annotated[
    Union[SlackDestination, SlackDigestDestination, QueueDestination, WebhookDestination, LogDestination],
    Field(discriminator="type"),
]


class DigestOptions(StrictModel):
    cron: str = Field("0 8 * * *", description="When the daily_digest schedule runs.")
    timezone: str = "UTC"
    default_status: Literal["stopped", "running"] = Field(
        "stopped", description="Whether the schedule runs as soon as the code location loads."
    )
    lookback: Duration = Field(86400.0, description="Discrepancies opened in this window, or still open, are listed.")


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


class NotificationsSpec(StrictModel):
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


class RouteRule(StrictModel):
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


class SqlFixTarget(StrictModel):
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


class HttpFixTarget(StrictModel):
    """Where an http_call sends the corrected value: ``{"<body_field>": value}`` to ``url + path``."""

    url: str | None = None
    url_env: str | None = None
    path: str = Field("/{key}", description="Appended to the URL; {key} is the record's key, URL-encoded.")
    method: Literal["PATCH", "PUT", "POST"] = "PATCH"
    body_field: str | None = Field(None, description="JSON property to set; default: the field's column on that side.")
    auth: HttpAuth | None = None
    timeout: Duration = 30.0


    @model_validator(mode="after")
    def _one_location(self) -> "HttpFixTarget":
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        return self


class _FixBase(StrictModel):
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
