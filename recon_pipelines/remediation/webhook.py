"""Webhooks: a generic JSON POST, or PagerDuty Events v2.

Generic: ``{"event", "idempotency_key", "reconciliation", "tier", "data"}`` with an
``Idempotency-Key`` header, so a receiver can drop a redelivery.
PagerDuty: ``trigger`` when a discrepancy opens (or a run summary escalates), ``resolve``
when the tracker resolves it; the ``dedup_key`` is the discrepancy id, so PagerDuty folds
repeats into one alert and closes it on resolve.

429 (honouring Retry-After) and 5xx and connection errors are retried with backoff;
other 4xx are refused for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from recon_pipelines.remediation.errors import PermanentDeliveryError, TransientDeliveryError

PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def generic_body(event: str, key: str, tier: str | None, payload: dict) -> dict:
    return {"event": event, "idempotency_key": key, "reconciliation": payload.get("reconciliation"), "tier": tier,
            "data": payload}


def pagerduty_body(event: str, tier: str | None, payload: dict, routing_key: str) -> dict:
    if event == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": payload["discrepancy_id"]}
    recon = payload["reconciliation"]
    if event == "run_failed":
        dedup_key = f"{recon}:run_failed:{payload['run_id']}"
        summary = f"{recon}: run {payload['job_name']} failed: {payload['message']}"
        group, klass = None, "run_failed"
    elif event == "run_summary":
        dedup_key = f"{recon}:run:{payload['run_id']}"
        summary = f"{recon}: {payload['opened']} new discrepancies; {payload.get('run_tier_reason') or ''}".strip("; ")
        group, klass = None, "run_summary"
    else:
        dedup_key = payload["discrepancy_id"]
        where = f" {payload['field']}" if payload.get("field") else ""
        summary = (f"{recon}: {payload['kind']} key {payload['key']}{where}: "
                   f"{payload['source_a']}={payload['value_a']!r} {payload['source_b']}={payload['value_b']!r}")
        group, klass = payload.get("field"), payload["kind"]
    body = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": summary[:1024],
            "source": f"recon_pipelines/{recon}",
            "severity": PAGERDUTY_SEVERITY.get(tier or "", "warning"),
            "component": recon,
            "class": klass,
            "custom_details": payload,
        },
        "client": "recon_pipelines",
        "client_url": payload["run_url"],
        "links": [{"href": payload["run_url"], "text": "Dagster run"}],
    }
    if group:
        body["payload"]["group"] = group
    if payload.get("first_seen"):
        body["payload"]["timestamp"] = payload["first_seen"]
    return body


class WebhookSender:
    def __init__(self, client: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep,
                 max_retries: int = 3, backoff: float = 1.0, max_wait: float = 60.0):
        self.client = client or httpx.Client()
        self.sleep, self.max_retries, self.backoff, self.max_wait = sleep, max_retries, backoff, max_wait

    def post(self, url: str, body: dict, headers: dict[str, str] | None = None, timeout: float = 10.0) -> int:
        """The response status (2xx); raises TransientDeliveryError or PermanentDeliveryError."""
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post(url, json=body, headers=headers or {}, timeout=timeout)
            except httpx.TransportError as exc:
                problem, wait = f"{type(exc).__name__}: {exc}", self.backoff * 2 ** attempt
            else:
                if response.is_success:
                    return response.status_code
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code != 429 and response.status_code < 500:
                    raise PermanentDeliveryError(f"webhook refused the message: {problem}")
                wait = _retry_after(response) if response.status_code == 429 else self.backoff * 2 ** attempt
            if attempt == self.max_retries:
                raise TransientDeliveryError(f"webhook failed after {attempt + 1} attempts: {problem}")
            self.sleep(min(wait, self.max_wait))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.client.close()


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
