"""Delivery: claims due outbox rows and sends each to its destination, once.

Rows are sent in the order they were written, per destination, so a Slack thread's parent
is posted before its replies and an opening before its resolution. When a destination is
down (connection error, 429 or 5xx after the in-call retries), the row stays ``pending``
with a later ``next_attempt_at`` and the rest of that destination's rows wait for the next
pass (the sensor, or the next run); other destinations carry on. A refusal (bad channel,
bad token, other 4xx) marks the row ``failed`` with the reason.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import sqlalchemy as sa

from recon_pipelines.remediation import outbox, queue, slack, webhook
from recon_pipelines.remediation.errors import PermanentDeliveryError, TransientDeliveryError
from recon_pipelines.remediation.notifications import missing_resolutions, opening_key
from recon_pipelines.remediation.outbox import OutboxRow
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.tracker.db import create_tracker_engine, migrate

DRY_RUN_MARK = "[slack dry-run: no {env}]"
DRY_RUN_REF = "dry-run-"  # the "ts" of a message only logged


class _NotReady(Exception):
    """A reply whose thread parent has not been posted yet: try again next pass."""


@dataclass(frozen=True)
class Attempt:
    outbox_id: int
    reconciliation: str
    destination: str
    event: str
    outcome: str  # delivered, logged, pending (will retry), failed, waiting (thread parent not posted yet)
    detail: str = ""


@dataclass
class DeliveryReport:
    attempts: list[Attempt] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for a in self.attempts if a.outcome == outcome)

    def by_destination(self) -> dict[str, Counter]:
        counts: dict[str, Counter] = {}
        for a in self.attempts:
            counts.setdefault(a.destination, Counter())[a.outcome] += 1
        return counts


@dataclass(frozen=True)
class _Sent:
    status: str  # delivered or logged
    external_ref: str | None = None
    thread_ref: str | None = None


class Deliverer:
    """Sends pending outbox rows. ``sleep``, ``backoff`` and ``slack_base_url`` are injectable
    so tests run against local servers without waiting."""

    def __init__(
        self,
        engine: sa.Engine,
        specs: Iterable[ReconciliationSpec],
        *,
        slack_base_url: str | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_retries: int = 3,
        backoff: float = 1.0,
        max_retry_after: float = 60.0,
        retry_delay: float = 60.0,
        max_retry_delay: float = 3600.0,
        lease: float = 300.0,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        environ: Mapping[str, str] | None = None,
    ):
        self.engine = engine
        self.specs = {spec.name: spec for spec in specs}
        self.slack_base_url = slack_base_url
        self.sleep, self.max_retries, self.backoff, self.max_retry_after = sleep, max_retries, backoff, max_retry_after
        self.retry_delay, self.max_retry_delay, self.lease = retry_delay, max_retry_delay, lease
        self.log = log or logging.getLogger("recon_pipelines.notifications")
        self.environ = environ if environ is not None else os.environ
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._webhook = webhook.WebhookSender(http_client, sleep, max_retries, backoff, max_retry_after)
        self._slack: dict[str, slack.SlackSender] = {}
        self._queue_engines: dict[str, sa.Engine] = {}

    def deliver(self, reconciliation: str | None = None, now: datetime | None = None) -> DeliveryReport:
        now = now or datetime.now(timezone.utc)
        self._enqueue_missing_resolutions(reconciliation, now)
        report = DeliveryReport()
        down: set[tuple[str, str]] = set()
        untried: list[int] = []
        for row in outbox.claim(self.engine, self.owner, now, self.lease, reconciliation):
            where = (row.reconciliation, row.destination)
            if where in down:
                untried.append(row.id)
                continue
            try:
                sent = self._send(row, now)
            except _NotReady:
                untried.append(row.id)
                report.attempts.append(Attempt(row.id, *where, row.event, "waiting", "thread parent not posted yet"))
            except TransientDeliveryError as exc:
                delay = min(self.retry_delay * 2 ** row.attempts, self.max_retry_delay)
                outbox.mark_retry(self.engine, row.id, self.owner, str(exc), now + timedelta(seconds=delay))
                down.add(where)
                report.attempts.append(Attempt(row.id, *where, row.event, "pending", str(exc)))
                self.log.warning(f"{row.destination}: {row.event} {row.idempotency_key} not delivered, "
                                 f"retrying in {delay:.0f}s or on the next run: {exc}")
            except PermanentDeliveryError as exc:
                outbox.mark_failed(self.engine, row.id, self.owner, str(exc))
                report.attempts.append(Attempt(row.id, *where, row.event, "failed", str(exc)))
                self.log.error(f"{row.destination}: {row.event} {row.idempotency_key} refused: {exc}")
            else:
                outbox.mark_done(self.engine, row.id, self.owner, sent.status, now, sent.external_ref, sent.thread_ref)
                report.attempts.append(Attempt(row.id, *where, row.event, sent.status, sent.external_ref or ""))
                if sent.status == "delivered":
                    self.log.info(f"{row.destination}: {row.event} {row.idempotency_key} delivered ({sent.external_ref})")
        outbox.release(self.engine, untried, self.owner)
        return report

    def close(self) -> None:
        self._webhook.close()
        for engine in self._queue_engines.values():
            engine.dispose()

    # ------------------------------------------------------------------ sinks

    def _send(self, row: OutboxRow, now: datetime) -> _Sent:
        spec = self.specs.get(row.reconciliation)
        destination = spec.notifications.destinations.get(row.destination) if spec else None
        if destination is None:
            raise PermanentDeliveryError(f"destination {row.destination!r} is not in the spec of {row.reconciliation!r}")
        if destination.type in ("slack", "slack_digest"):
            return self._send_slack(row, spec, destination.channel)
        if destination.type == "webhook":
            return self._send_webhook(row, destination)
        if destination.type == "queue":
            return self._send_queue(row, destination, now)
        level = getattr(logging, destination.level.upper())
        self.log.log(level, f"[recon notification -> {row.destination}] {describe(row)}")
        return _Sent("delivered", "log")

    def _send_slack(self, row: OutboxRow, spec: ReconciliationSpec, channel: str) -> _Sent:
        thread = self._thread_of(row)
        text, blocks = slack.message_for(row.event, row.payload, row.tier)
        token_env = spec.notifications.slack_token_env
        token = self.environ.get(token_env)
        if not token:
            where = f"{channel} (reply in thread {thread})" if thread else channel
            self.log.info(f"{DRY_RUN_MARK.format(env=token_env)} {where}: {describe(row)}\n{slack.preview(blocks)}")
            return _Sent("logged", f"{DRY_RUN_REF}{row.id}", thread)
        if thread and thread.startswith(DRY_RUN_REF):
            thread = None  # announced while there was no token: that thread does not exist in Slack
        if token not in self._slack:
            self._slack[token] = slack.SlackSender(token, self.slack_base_url, self.sleep, self.max_retries,
                                                   self.backoff, self.max_retry_after)
        return _Sent("delivered", self._slack[token].post(channel, text, blocks, thread), thread)

    def _thread_of(self, row: OutboxRow) -> str | None:
        if row.parent_key is None:
            return None
        parent = outbox.find(self.engine, row.destination, row.parent_key)
        if parent is None or parent.status == "failed":
            return None  # the parent will never be posted: stand alone rather than never be sent
        if parent.status in ("delivered", "logged"):
            return parent.external_ref
        raise _NotReady()

    def _send_webhook(self, row: OutboxRow, destination) -> _Sent:
        url = self.environ.get(destination.url_env)
        if not url:
            raise TransientDeliveryError(f"environment variable {destination.url_env} is not set")
        headers = {"Idempotency-Key": row.idempotency_key}
        if destination.mode == "pagerduty":
            routing_key = self.environ.get(destination.routing_key_env or "")
            if not routing_key:
                raise TransientDeliveryError(f"environment variable {destination.routing_key_env} is not set")
            body = webhook.pagerduty_body(row.event, row.tier, row.payload, routing_key)
        else:
            body = webhook.generic_body(row.event, row.idempotency_key, row.tier, row.payload)
            if destination.auth_env and self.environ.get(destination.auth_env):
                headers["Authorization"] = f"Bearer {self.environ[destination.auth_env]}"
        status = self._webhook.post(url, body, headers, destination.timeout)
        return _Sent("delivered", f"HTTP {status}")

    def _send_queue(self, row: OutboxRow, destination, now: datetime) -> _Sent:
        name = destination.queue or row.destination
        with self._queue_engine(destination.url_env).begin() as conn:
            if row.event == "resolved":
                incident = queue.resolve_incident(conn, name, opening_key(row.discrepancy_id, row.occurrence), now)
            else:
                incident = queue.open_incident(conn, name, row.idempotency_key, row.reconciliation,
                                               row.discrepancy_id, row.tier or "warning", describe(row), row.payload, now)
        return _Sent("delivered", None if incident is None else f"incident {incident}")

    def _queue_engine(self, url_env: str | None) -> sa.Engine:
        if url_env is None:
            return self.engine
        if url_env not in self._queue_engines:
            url = self.environ.get(url_env)
            if not url:
                raise TransientDeliveryError(f"environment variable {url_env} is not set")
            engine = create_tracker_engine(url)
            migrate(engine)
            self._queue_engines[url_env] = engine
        return self._queue_engines[url_env]

    def _enqueue_missing_resolutions(self, reconciliation: str | None, now: datetime) -> None:
        """Resolutions made outside a run (an operator's resolve) are announced too."""
        for spec in self.specs.values():
            if spec.routing and reconciliation in (None, spec.name):
                with self.engine.begin() as conn:
                    outbox.enqueue(conn, spec.name, missing_resolutions(conn, spec), now)


def describe(row: OutboxRow) -> str:
    """One plain line: what the log shows, and the title of an incident."""
    p, tier = row.payload, (row.tier or "").upper()
    if row.event in ("opened", "escalated", "resolved"):
        where = f" field {p['field']}" if p.get("field") else ""
        state = {"opened": "new", "escalated": "escalated", "resolved": "resolved"}[row.event]
        return (f"[{tier}] {p['reconciliation']}: {state} {p['kind']} key {p['key']}{where}: "
                f"{p['source_a']}={p['value_a']!r} {p['source_b']}={p['value_b']!r}")
    if row.event == "run_summary":
        reason = f"; run escalated: {p['run_tier_reason']}" if p.get("run_tier_reason") else ""
        aggregated = f"; {p['routed_here']} summarised here" if p.get("aggregated") else ""
        return f"[{tier}] {p['reconciliation']}: {p['opened']} new discrepancies in run {p['run_id']}{reason}{aggregated}"
    if row.event == "resolved_summary":
        return f"[RESOLVED] {p['reconciliation']}: {p['resolved']} discrepancies resolved in run {p['run_id']}"
    if row.event == "run_failed":
        return f"[CRITICAL] {p['reconciliation']}: run {p['run_id']} ({p['job_name']}) failed: {p['message']}"
    if row.event == "digest":
        return f"{p['reconciliation']} daily digest {p['date']}: {p['total']} discrepancies opened or still open"
    return f"{row.event} {row.idempotency_key}"
