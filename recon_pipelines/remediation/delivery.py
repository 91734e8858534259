"""Delivery: claims due outbox rows and sends each to its destination, once.

Rows are sent in the order they were written, per destination, so a Slack thread's parent
is posted before its replies and an opening before its resolution (the claim itself never
hands out a later event of a discrepancy while an earlier one is unfinished). When a
destination is down (connection error, 429 or 5xx after the in-call retries), the row stays
``pending`` with a later ``next_attempt_at`` and the rest of that destination's rows wait
for the next pass (the sensor, or the next run). A refusal (bad channel, bad token, other
4xx) marks the row ``failed`` with the reason. Anything else a destination does (a database
that is down, an unreadable answer, a bug) is isolated the same way as "down": it never stops
the other destinations, and rows are never left locked.

While a pass runs, a heartbeat renews its leases; each claim carries a fencing token that is
checked right before sending and required to mark the row (see ``outbox``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
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
MAX_ROUNDS = 50  # claims per pass: a resolve freed by its delivered trigger goes out in the same pass
LOOKUP_MARGIN = 300.0  # seconds before a row was written that a Slack look-up searches (clock skew)


class _NotReady(Exception):
    """A reply whose thread parent has not been posted yet: try again next pass."""


@dataclass(frozen=True)
class Attempt:
    outbox_id: int
    reconciliation: str
    destination: str
    event: str
    outcome: str  # delivered, logged, pending (will retry), failed, waiting (thread parent not posted yet),
    # taken_over (another deliverer holds the row now: not sent here)
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
        slack_timeout: float = 10.0,
        heartbeat: bool = True,
        on_sent: Callable[[OutboxRow], None] | None = None,
    ):
        self.engine = engine
        self.specs = {spec.name: spec for spec in specs}
        self.slack_base_url = slack_base_url
        self.sleep, self.max_retries, self.backoff, self.max_retry_after = sleep, max_retries, backoff, max_retry_after
        self.retry_delay, self.max_retry_delay, self.lease = retry_delay, max_retry_delay, lease
        self.log = log or logging.getLogger("recon_pipelines.notifications")
        self.environ = environ if environ is not None else os.environ
        self.slack_timeout, self.heartbeat = slack_timeout, heartbeat
        self.on_sent = on_sent  # called after a destination accepted a row, before it is marked (tests)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._webhook = webhook.WebhookSender(http_client, sleep, max_retries, backoff, max_retry_after)
        self._slack: dict[str, slack.SlackSender] = {}
        self._queue_engines: dict[str, sa.Engine] = {}

    def deliver(self, reconciliation: str | None = None, now: datetime | None = None) -> DeliveryReport:
        now = now or datetime.now(timezone.utc)
        self._enqueue_missing_resolutions(reconciliation, now)
        report = DeliveryReport()
        down: set[tuple[str, str]] = set()  # (reconciliation, destination) that failed in this pass
        with _Heartbeat(self.engine, self.lease, self.log, self.heartbeat) as held:
            try:
                for _ in range(MAX_ROUNDS):
                    rows = outbox.claim(self.engine, self.owner, now, self.lease, reconciliation,
                                        skip_destinations={d for _, d in down})
                    held.add(rows)
                    finished = [self._deliver_row(row, now, down, report, held) for row in rows]
                    outbox.release(self.engine, held.take())  # waiting or untried: claimable again
                    if not any(finished):
                        break
            finally:
                outbox.release(self.engine, held.take())  # whatever happened, nothing stays locked
        return report

    def _deliver_row(self, row: OutboxRow, now: datetime, down: set, report: DeliveryReport, held: "_Heartbeat") -> bool:
        """Try one row; True when it reached a final state or was handed to another deliverer."""
        where = (row.reconciliation, row.destination)
        if where in down:
            return False
        if not outbox.holds(self.engine, row.id, row.token):  # the lease was taken over: the new holder sends it
            held.drop(row.id)
            report.attempts.append(Attempt(row.id, *where, row.event, "taken_over", "claimed by another deliverer"))
            return False
        try:
            sent = self._send(row, now)
        except _NotReady:
            report.attempts.append(Attempt(row.id, *where, row.event, "waiting", "thread parent not posted yet"))
            return False
        except PermanentDeliveryError as exc:
            error = self._scrub(str(exc))
            outbox.mark_failed(self.engine, row.id, row.token, error)
            report.attempts.append(Attempt(row.id, *where, row.event, "failed", error))
            self.log.error(f"{row.destination}: {row.event} {row.idempotency_key} refused: {error}")
        except Exception as exc:  # down, or broken in a way we did not foresee: this destination waits, others go on
            error = self._scrub(str(exc) if isinstance(exc, TransientDeliveryError) else f"{type(exc).__name__}: {exc}")
            delay = min(self.retry_delay * 2 ** row.attempts, self.max_retry_delay)
            outbox.mark_retry(self.engine, row.id, row.token, error, now + timedelta(seconds=delay))
            down.add(where)
            report.attempts.append(Attempt(row.id, *where, row.event, "pending", error))
            self.log.warning(f"{row.destination}: {row.event} {row.idempotency_key} not delivered, "
                             f"retrying in {delay:.0f}s or on the next run: {error}")
        else:
            if self.on_sent is not None:
                self.on_sent(row)
            if not outbox.mark_done(self.engine, row.id, row.token, sent.status, now, sent.external_ref,
                                    sent.thread_ref):
                self.log.warning(f"{row.destination}: {row.event} {row.idempotency_key} was sent, but another "
                                 "deliverer took the row over meanwhile; it decides what is recorded")
            report.attempts.append(Attempt(row.id, *where, row.event, sent.status, sent.external_ref or ""))
            if sent.status == "delivered":
                self.log.info(f"{row.destination}: {row.event} {row.idempotency_key} delivered ({sent.external_ref})")
        held.drop(row.id)
        return True

    def _scrub(self, text: str) -> str:
        """Errors are logged and stored: no secret from the environment goes with them."""
        for spec in self.specs.values():
            names = [spec.notifications.slack_token_env]
            for d in spec.notifications.destinations.values():
                names += [getattr(d, attr, None) for attr in ("url_env", "routing_key_env", "auth_env")]
            for name in filter(None, names):
                secret = self.environ.get(name)
                if secret and len(secret) >= 4:
                    text = text.replace(secret, f"${name}")
        return text

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
                                                   self.backoff, self.max_retry_after, self.slack_timeout)
        since = (_aware(row.created_at) if row.created_at else datetime.now(timezone.utc)).timestamp() - LOOKUP_MARGIN
        ts = self._slack[token].post(channel, text, blocks, thread, key=slack_key(row), look_first=row.claimed_before,
                                     since=since)
        return _Sent("delivered", ts, thread)

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
            try:
                migrate(engine)
            except Exception:
                engine.dispose()  # down now: a fresh engine next time
                raise
            self._queue_engines[url_env] = engine
        return self._queue_engines[url_env]

    def _enqueue_missing_resolutions(self, reconciliation: str | None, now: datetime) -> None:
        """Resolutions made outside a run (an operator's resolve) are announced too."""
        for spec in self.specs.values():
            if spec.routing and reconciliation in (None, spec.name):
                with self.engine.begin() as conn:
                    outbox.enqueue(conn, spec.name, missing_resolutions(conn, spec), now)


class _Heartbeat:
    """The rows a pass holds (id -> fencing token), their leases renewed every third of the lease."""

    def __init__(self, engine: sa.Engine, lease: float, log, enabled: bool = True):
        self.engine, self.lease, self.log, self.enabled = engine, lease, log, enabled
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="outbox-lease-heartbeat", daemon=True)

    def __enter__(self) -> "_Heartbeat":
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()

    def add(self, rows: list[OutboxRow]) -> None:
        with self._lock:
            self._held.update((r.id, r.token) for r in rows)

    def drop(self, row_id: int) -> None:
        with self._lock:
            self._held.pop(row_id, None)

    def take(self) -> dict[int, int]:
        with self._lock:
            held, self._held = self._held, {}
        return held

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                lost = outbox.renew(self.engine, held, datetime.now(timezone.utc) + timedelta(seconds=self.lease))
            except Exception as exc:  # the tracker unreachable: the fencing token still protects the rows
                self.log.warning(f"could not renew the delivery leases: {type(exc).__name__}: {exc}")
                continue
            for row_id in lost:
                self.drop(row_id)


def slack_key(row: OutboxRow) -> str:
    """What identifies a row's message in Slack (a channel may serve several destinations)."""
    return f"{row.reconciliation}/{row.destination}/{row.idempotency_key}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


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
