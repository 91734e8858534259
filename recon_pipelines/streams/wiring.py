"""The pieces of a spec's ``change_stream``, wired: CDC readers publishing to the shared log,
and the consumer folding the log into the expectation store. Used by the Dagster sensor, the
tests and the benchmark alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from recon_pipelines.engine.compare import side_columns
from recon_pipelines.spec.models import ReconciliationSpec, SqlSource
from recon_pipelines.streams.expectations import ExpectationStore
from recon_pipelines.streams.jetstream import SharedLog
from recon_pipelines.streams.pg_logical import CdcError, LogicalChangeReader


def subject_prefix(spec: ReconciliationSpec) -> str:
    return spec.change_stream.subject_prefix or f"recon.{spec.name}"


def shared_log(spec: ReconciliationSpec) -> SharedLog:
    stream = spec.change_stream
    return SharedLog(stream.url, stream.stream, subject_prefix(spec), durable=stream.durable or f"recon_{spec.name}",
                     ack_wait=stream.ack_wait, token_env=stream.token_env)


def expectation_store(spec: ReconciliationSpec, engine) -> ExpectationStore:
    return ExpectationStore(engine, spec.name, spec.change_stream.window)


def cdc_reader(spec: ReconciliationSpec, side: str) -> LogicalChangeReader:
    cdc = spec.change_stream.cdc[side]
    source = spec.source_a if side == "a" else spec.source_b
    if not isinstance(source, SqlSource):
        raise CdcError(f"change_stream.cdc.{side}: side {side.upper()} is not a PostgreSQL source")
    url = source.url or os.environ.get(source.url_env or "")
    if not url:
        raise CdcError(f"change_stream.cdc.{side}: environment variable {source.url_env} is not set")
    columns = side_columns(spec, side)
    key = columns.pop(spec.key[0].name)
    return LogicalChangeReader(url, side=side, slot=cdc.slot, publication=cdc.publication, table=cdc.table,
                               key_column=key, columns=columns)


def forward_cdc(spec: ReconciliationSpec, log: SharedLog, side: str, **read_options) -> int:
    """Publish one side's committed changes to the shared log; a transaction's slot position is
    confirmed only after the stream stored its events (publishing is deduplicated by position)."""
    reader = cdc_reader(spec, side)
    reader.ensure_slot()
    return reader.read(log.publish, **read_options)


@dataclass
class Consumed:
    handled: int = 0
    skipped: int = 0
    opened: int = 0
    closed: int = 0


def consume(log: SharedLog, store: ExpectationStore, max_events: int, batch: int = 1000,
            timeout: float = 1.0) -> Consumed:
    """Fetch, fold into the store (one transaction per batch), then acknowledge: an event is
    acknowledged only once its effect is committed, and one delivered again is skipped."""
    total = Consumed()
    while total.handled + total.skipped < max_events:
        events = log.fetch(min(batch, max_events - total.handled - total.skipped), timeout)
        if not events:
            break
        applied = store.apply(log.source, events)
        log.ack(events)
        total.handled += applied.handled
        total.skipped += applied.skipped
        total.opened += applied.opened
        total.closed += applied.closed
    return total


def lag_metadata(store: ExpectationStore, log: SharedLog | None, now: datetime) -> dict:
    lag = store.lag(now)
    metadata = {"open_expectations": lag.open, "overdue_keys": lag.overdue,
                "oldest_open_age_s": round((now - lag.oldest_event_at).total_seconds(), 3) if lag.oldest_event_at else 0.0}
    if log is not None:
        try:
            pending = log.pending()
            metadata["events_pending"] = pending.not_delivered + pending.unacknowledged
        except Exception:  # no consumer yet (nothing fetched so far): left out rather than guessed
            pass
    return metadata
