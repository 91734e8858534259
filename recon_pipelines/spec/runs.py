"""How a reconciliation runs: daily partitions, the deep scan, the change feed."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from recon_pipelines.spec.base import Duration, StrictModel, check_zone
from recon_pipelines.spec.sources import SourceSpec


# --------------------------------------------------------------------------- runs: partitions, schedules, sensors


class IncrementalSpec(StrictModel):
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


class DeepScanSpec(StrictModel):
    """A full comparison on its own schedule: finds drift no incremental window touched."""

    cron: str = Field("0 3 * * 0", description="Weekly by default (Sunday 03:00).")
    timezone: str = "UTC"
    running: bool = Field(False, description="Start the deep-scan schedule running.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


class ChangeFeedSpec(StrictModel):
    """A table of writes (or outbox rows) to watch: each write whose counterpart is expected
    within ``window`` launches a run for its key once the window has passed."""

    source: SourceSpec
    cursor_column: str = Field(description="Strictly increasing column (an id or a sequence) read with a cursor.")
    key_column: str = Field(description="Column holding the written record's key.")
    written_at_column: str = Field(description="When the write happened.")
    window: Duration = Field(description="How long the counterpart may take to appear, e.g. '10m'.")
    running: bool = Field(False, description="Start the sensor running.")
    max_runs_per_tick: int = Field(100, gt=0)


class CdcSpec(StrictModel):
    """One side's PostgreSQL logical decoding (pgoutput): its source's database, this table."""

    table: str = Field(description="Watched table, optionally schema-qualified (public.orders).")
    slot: str = Field(pattern=r"^[a-z0-9_]{1,63}$", description="Replication slot; created on first use.")
    publication: str = Field(description="Publication holding the table (CREATE PUBLICATION ... FOR TABLE ...).")


class ChangeStreamSpec(StrictModel):
    """Both systems' change events on a NATS JetStream stream: each change on one side expects
    its counterpart on the other within ``window``; what is still wrong after it is re-checked
    and reported as ``not_propagated`` (docs/change-streams.md)."""

    url: str = Field("nats://127.0.0.1:4222", description="NATS server with JetStream.")
    token_env: str | None = Field(None, description="Environment variable holding the NATS auth token.")
    stream: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="JetStream stream carrying the events.")
    subject_prefix: str | None = Field(None, description="Events go to <prefix>.a and <prefix>.b; default recon.<name>.")
    durable: str | None = Field(None, description="Durable consumer name; default recon_<name>.")
    window: Duration = Field(description="How long the counterpart may take to appear, e.g. '30s'.")
    ack_wait: Duration = Field(30.0, gt=0, description="A fetched event not acknowledged within this is redelivered.")
    running: bool = Field(False, description="Start the change_stream_<name> sensor running.")
    max_events_per_tick: int = Field(10_000, gt=0, description="Events the sensor consumes per evaluation.")
    keys_per_run: int = Field(500, gt=0, description="Expired keys re-checked together in one run.")
    max_runs_per_tick: int = Field(20, gt=0)
    lag_warning: Duration = Field(
        300.0, description="The sensor warns when the oldest open expectation is older than this past its window.")
    cdc: dict[Literal["a", "b"], CdcSpec] = Field(
        default_factory=dict, description="Per side (a, b): read changes from PostgreSQL logical decoding.")


class GuardSpec(StrictModel):
    """The export guard: a full run whose side shrank sharply since the previous full run (or
    is empty) is held as suspicious instead of resolving and opening everything."""

    max_shrink: float = Field(
        0.5, gt=0, le=1,
        description="Hold the run when a side has lost more than this share of the previous run's rows or keys.",
    )
    allow_empty: bool = Field(False, description="An empty side is legitimate (never held for being empty or shrinking to 0).")


class SampleSpec(StrictModel):
    """Compare a deterministic sample of keys (the same on both sides, the same in every run)."""

    fraction: float | None = Field(None, gt=0, le=1, description="Share of the keys to compare, e.g. 0.01.")
    rows: int | None = Field(None, gt=0, description="Number of keys to compare (of both sides together).")
    seed: int = Field(42, description="Another seed picks other keys.")

    @model_validator(mode="after")
    def _one_size(self) -> "SampleSpec":
        if (self.fraction is None) == (self.rows is None):
            raise ValueError("sample: give exactly one of fraction or rows")
        return self


class EngineSpec(StrictModel):
    """Where the sides are paired: in local DuckDB (default) or on Spark (docs/engine-spark.md).
    The field rules always run in local DuckDB, so both engines report the same discrepancies."""

    type: Literal["duckdb", "spark"] = Field("duckdb", description="duckdb (local) or spark (files only).")
    master: str | None = Field(
        None, description="Spark master URL (spark: local[2], spark://host:7077); $RECON_SPARK_MASTER overrides it.")

    @model_validator(mode="after")
    def _master_with_spark(self) -> "EngineSpec":
        if self.master is not None and self.type != "spark":
            raise ValueError("engine.master: only for type: spark")
        return self
