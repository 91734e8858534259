"""Shared builders for the remediation tests: a spec with every kind of destination, engine-shaped
discrepancy tables, and a deliverer that never sleeps."""

from __future__ import annotations

import copy
import logging

import pyarrow as pa

from recon_pipelines.engine import DISCREPANCY_SCHEMA
from recon_pipelines.remediation import Deliverer
from recon_pipelines.spec import parse_spec

RECON = "crm_vs_billing"
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
