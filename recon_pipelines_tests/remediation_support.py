"""Shared builders for the remediation tests: a spec with every kind of destination, engine-shaped
discrepancy tables, and a deliverer that never sleeps."""

from __future__ import annotations

import copy
import logging
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from recon_pipelines.engine import DISCREPANCY_SCHEMA
from recon_pipelines.remediation import Deliverer, notification_writer
from recon_pipelines.spec import parse_spec
from recon_pipelines.tracker import Tracker
from recon_pipelines_tests.slack_fake import FakeSlack, FakeWebhook

RECON = "crm_vs_billing"
T0 = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)  # in the past: deliveries use the real clock
TOKEN = "xoxb-test-token"

SPEC = {
    "name": RECON,
    "source_a": {"type": "file", "path": "crm.csv", "name": "crm"},
    "source_b": {"type": "file", "path": "billing.csv", "name": "billing"},
    "key": "customer_id",
    "fields": {"plan": "exact", "mrr": {"compare": "numeric"}, "email": {"compare": "string"}},
    "notifications": {
        "aggregate_above": 3,
        "top_examples": 2,
        "destinations": {
            "alerts": {"type": "slack", "channel": "#revenue-alerts"},
            "digest": {"type": "slack_digest", "channel": "#revenue-digest"},
            "incidents": {"type": "queue"},
            "pager": {"type": "webhook", "url_env": "TEST_PAGER_URL", "mode": "pagerduty",
                      "routing_key_env": "TEST_PAGER_KEY"},
            "trends": {"type": "log"},
        },
    },
    "routing": [
        {"tier": "critical", "destinations": ["alerts", "incidents"]},
        {"tier": "warning", "destinations": ["digest"]},
        {"tier": "info", "destinations": ["trends"]},
    ],
    "escalation": {"after_runs": 2},
}


def make_spec(**changes):
    """The test spec; keyword arguments replace top-level sections (``notifications`` is merged)."""
    raw = copy.deepcopy(SPEC)
    notifications = changes.pop("notifications", None)
    if notifications:
        raw["notifications"].update(notifications)
    raw.update(changes)
    return parse_spec(raw)


def found(*rows: dict) -> pa.Table:
    full = [{"reconciliation": RECON, "kind": "field_mismatch", "reason": "value_differs", "value_a": "pro",
             "value_b": "BIZ", "severity": "warning", **row} for row in rows]
    return pa.Table.from_pylist(full, schema=DISCREPANCY_SCHEMA)


def disc(key: str, field: str | None = "plan", severity: str = "warning", **extra) -> dict:
    kind = extra.pop("kind", "field_mismatch" if field else "only_in_a")
    return {"id": f"{key}-{field or kind}", "key": key, "field": field, "kind": kind, "severity": severity, **extra}


class Sleeps(list):
    """An injected sleep: records how long it was asked to wait, waits not at all."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def deliverer(engine, spec, slack=None, sleeps: Sleeps | None = None, environ: dict | None = None, **options):
    env = {"SLACK_BOT_TOKEN": TOKEN} if slack is not None else {}
    env.update(environ or {})
    options = {"backoff": 0.01, "retry_delay": 0, **options}
    return Deliverer(engine, [spec], slack_base_url=slack.base_url if slack is not None else None,
                     sleep=sleeps if sleeps is not None else Sleeps(), environ=env,
                     log=logging.getLogger("recon_pipelines.tests.notifications"), **options)


# Fixtures shared by the remediation tests (import them by name into a test module).
@pytest.fixture
def tracker(tracker_url):
    t = Tracker(tracker_url)
    yield t
    t.engine.dispose()


@pytest.fixture
def slack():
    with FakeSlack() as server:
        yield server


@pytest.fixture
def receiver():
    with FakeWebhook() as server:
        yield server


def run(tracker, spec, run_id, *rows, now=T0, summary=None):
    """One full run of ``rows`` through the tracker, its notifications written to the outbox."""
    return tracker.apply_run(RECON, f"{run_id}:full", found(*rows), summary=summary, now=now,
                             escalation=spec.escalation, on_outcome=notification_writer(spec))


def pager_env(receiver) -> dict:
    return {"TEST_PAGER_URL": receiver.url, "TEST_PAGER_KEY": "R0UTINGKEY"}
