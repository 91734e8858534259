"""Slack: Block Kit messages through slack-sdk's WebClient, with retries on 429 and 5xx.

Every value that comes from the data goes through ``escape``: ``&``, ``<`` and ``>`` are
escaped as Slack's mrkdwn requires, so ``<!channel>`` or ``<https://evil|click>`` in a field
cannot ping anyone or forge a link, and bare ``@here``/``@channel``/``@everyone`` and URLs
get an invisible break so Slack neither notifies nor turns them into links.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from recon_pipelines.remediation.errors import PermanentDeliveryError, TransientDeliveryError

DEFAULT_BASE_URL = "https://slack.com/api/"
MAX_VALUE = 300  # characters of a data value shown in a message
ZWSP = "\u200b"
_MENTION = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
_SCHEME = re.compile(r"(?<=[a-z0-9+.-]):(?=//)", re.IGNORECASE)
_TRANSIENT_ERRORS = {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
TIER_BADGE = {"critical": ":rotating_light: *CRITICAL*", "warning": ":warning: *WARNING*", "info": ":information_source: *INFO*"}
RESOLVED_BADGE = ":white_check_mark: *RESOLVED*"

Sleep = Callable[[float], None]


def escape(value: Any, limit: int = MAX_VALUE) -> str:
    """Data shown, never interpreted: Slack's three escapes, then mentions and links broken."""
    if value is None:
        return "∅"
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MENTION.sub("@" + ZWSP, text)
    return _SCHEME.sub(":" + ZWSP, text)


def _link(url: str | None, label: str) -> str:
    # Our own link (configured base URL + run id); characters that would end it are dropped.
    return f"<{re.sub(r'[<>|]', '', url)}|{label}>" if url else ""


def _mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict:
    return {"type": "section", "text": _mrkdwn(text[:3000])}


def _context(*parts: str) -> dict:
    return {"type": "context", "elements": [_mrkdwn(" · ".join(p for p in parts if p))]}


# --------------------------------------------------------------------------- messages


def message_for(event: str, payload: dict, tier: str | None) -> tuple[str, list[dict]]:
    """(fallback text, blocks) of an outbox row."""
    if event in ("opened", "escalated", "resolved"):
        return discrepancy_message(payload, tier)
    if event == "run_summary":
        return run_summary_message(payload, tier)
    if event == "resolved_summary":
        return resolved_summary_message(payload)
    if event == "digest":
        return digest_message(payload)
    if event == "run_failed":
        return run_failed_message(payload)
    raise PermanentDeliveryError(f"no Slack message for event {event!r}")


def discrepancy_message(p: dict, tier: str | None) -> tuple[str, list[dict]]:
    event = p["event"]
    badge = RESOLVED_BADGE if event == "resolved" else TIER_BADGE.get(tier or "", "")
    what = {"opened": "New discrepancy", "escalated": "Escalated", "resolved": "No longer seen"}[event]
    if event == "opened" and (p.get("occurrence") or 1) > 1:
        what = f"Back again (occurrence {p['occurrence']})"
    head = f"{badge} {what}: `{escape(p['kind'])}` in *{escape(p['reconciliation'])}*"
    if p.get("detail"):
        head += f"\n{escape(p['detail'])}"
    facts = [("Key", p["key"]), ("Field", p["field"] or "—"), (p["source_a"], p["value_a"]), (p["source_b"], p["value_b"]),
             ("Severity", p["severity"]), ("First seen", (p.get("first_seen") or "")[:19].replace("T", " ") + " UTC")]
    blocks = [
        _section(head),
        {"type": "section", "fields": [_mrkdwn(f"*{escape(label, 60)}*\n{escape(value)}") for label, value in facts]},
        _context(_link(p["run_url"], "Dagster run"), f"id `{escape(p['discrepancy_id'])}`", escape(p.get("reason"))),
    ]
    text = (f"[{(tier or '').upper() if event != 'resolved' else 'RESOLVED'}] {escape(p['reconciliation'])}: "
            f"{escape(p['kind'])} key {escape(p['key'])}" + (f" field {escape(p['field'])}" if p["field"] else "") +
            f": {escape(p['source_a'])}={escape(p['value_a'])}, {escape(p['source_b'])}={escape(p['value_b'])}")
    return text, blocks


def run_summary_message(p: dict, tier: str | None) -> tuple[str, list[dict]]:
    by_tier = ", ".join(f"{n} {t}" for t, n in sorted(p["opened_by_tier"].items(), key=lambda kv: _rank(kv[0])))
    head = (f"{TIER_BADGE.get(tier or '', '')} *{escape(p['reconciliation'])}*: {p['opened']} new "
            f"discrepanc{'y' if p['opened'] == 1 else 'ies'} in this run" + (f" ({by_tier})" if by_tier else ""))
    blocks = [_section(head)]
    if p.get("run_tier_reason"):
        blocks.append(_section(f"Run escalated to *{p['run_tier']}*: {escape(p['run_tier_reason'])}"))
    if p.get("aggregated"):
        blocks += _aggregate_blocks(p, f"{p['routed_here']} for this channel, more than {p['aggregate_above']}: "
                                       "one summary instead of one message each.")
    elif p.get("routed_here"):
        blocks.append(_context(f"{p['routed_here']} in this thread"))
    blocks.append(_context(_link(p["run_url"], "Dagster run"),
                           f"`recon discrepancies list -r {p['reconciliation']} --status open`"))
    return f"{(tier or '').upper()} {p['reconciliation']}: {p['opened']} new discrepancies", blocks


def resolved_summary_message(p: dict) -> tuple[str, list[dict]]:
    head = f"{RESOLVED_BADGE} *{escape(p['reconciliation'])}*: {p['resolved']} discrepancies no longer seen in this run"
    blocks = [_section(head), *_aggregate_blocks(p, "Resolved, by kind and field:"),
              _context(_link(p["run_url"], "Dagster run"))]
    return f"RESOLVED {p['reconciliation']}: {p['resolved']} discrepancies", blocks


def digest_message(p: dict) -> tuple[str, list[dict]]:
    head = (f":newspaper: *{escape(p['reconciliation'])}* daily digest, {p['date']}: {p['total']} "
            f"discrepanc{'y' if p['total'] == 1 else 'ies'} opened in the last day or still open")
    blocks = [_section(head)]
    for group in p["groups"]:
        lines = [f"*{escape(group['field'] or group['kind'])}*: {group['open']} open, {group['resolved']} resolved"]
        lines += [f"• key {escape(e['key'])}: {escape(p['source_a'])} {escape(e['value_a'])} / "
                  f"{escape(p['source_b'])} {escape(e['value_b'])} ({e['status']})" for e in group["examples"]]
        blocks.append(_section("\n".join(lines)))
    blocks = blocks[:49] + [_context(f"`recon discrepancies list -r {p['reconciliation']} --status open`")]
    return f"{p['reconciliation']} daily digest {p['date']}: {p['total']} discrepancies", blocks


def _aggregate_blocks(p: dict, intro: str) -> list[dict]:
    counts = "\n".join(f"• `{escape(kind)}`" + (f" / {escape(field)}" if field else "") + f": {count}"
                       for kind, field, count in p["by_kind_field"])
    examples = "\n".join(f"• {escape(e['kind'])} key {escape(e['key'])}" + (f" {escape(e['field'])}" if e["field"] else "")
                         + f": {escape(e['value_a'])} / {escape(e['value_b'])}" for e in p["examples"])
    blocks = [_section(f"{intro}\n{counts}")]
    if examples:
        blocks.append(_section(f"Top examples:\n{examples}"))
    return blocks


def preview(blocks: list[dict]) -> str:
    """The text of a message's blocks, one line per text object: what the dry run logs."""
    lines: list[str] = []
    for block in blocks:
        for item in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(item, dict) and item.get("text"):
                lines.append(item["text"].replace("\n", " | "))
    return "\n".join(lines)


def _rank(tier: str) -> int:
    return {"critical": 0, "warning": 1, "info": 2}.get(tier, 9)


# --------------------------------------------------------------------------- the client


def _wait_after(headers: dict) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            value = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(value))
            except ValueError:
                return 1.0
    return 1.0


class _RateLimitRetry(RateLimitErrorRetryHandler):
    """Honours Retry-After (capped at ``max_wait``), sleeping through an injectable function."""

    def __init__(self, max_retry_count: int, sleep: Sleep, max_wait: float):
        super().__init__(max_retry_count=max_retry_count)
        self._sleep, self._max_wait = sleep, max_wait

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        if response is None:
            raise error
        state.next_attempt_requested = True
        self._sleep(min(_wait_after(response.headers), self._max_wait))
        state.increment_current_attempt()


class _BackoffMixin:
    def _init_backoff(self, sleep: Sleep, backoff: float) -> None:
        self._sleep, self._backoff = sleep, backoff

    def prepare_for_next_attempt(self, *, state, request, response=None, error=None) -> None:
        state.next_attempt_requested = True
        self._sleep(self._backoff * 2 ** state.current_attempt)
        state.increment_current_attempt()


class _ServerErrorRetry(_BackoffMixin, ServerErrorRetryHandler):
    """Any 5xx (the built-in handler only knows 500 and 503), with exponential backoff."""

    def __init__(self, max_retry_count: int, sleep: Sleep, backoff: float):
        ServerErrorRetryHandler.__init__(self, max_retry_count=max_retry_count)
        self._init_backoff(sleep, backoff)

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and response.status_code >= 500


class _ConnectionRetry(_BackoffMixin, ConnectionErrorRetryHandler):
    def __init__(self, max_retry_count: int, sleep: Sleep, backoff: float):
        ConnectionErrorRetryHandler.__init__(self, max_retry_count=max_retry_count,
                                             error_types=[URLError, ConnectionError, TimeoutError])
        self._init_backoff(sleep, backoff)


class SlackSender:
    """Posts messages; raises TransientDeliveryError or PermanentDeliveryError once retries are spent."""

    def __init__(self, token: str, base_url: str | None = None, sleep: Sleep = time.sleep, max_retries: int = 3,
                 backoff: float = 1.0, max_wait: float = 60.0, timeout: float = 10.0):
        base = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/"
        self.client = WebClient(token=token, base_url=base, timeout=int(max(1, timeout)), retry_handlers=[
            _RateLimitRetry(max_retries, sleep, max_wait),
            _ServerErrorRetry(max_retries, sleep, backoff),
            _ConnectionRetry(max_retries, sleep, backoff),
        ])

    def post(self, channel: str, text: str, blocks: list[dict], thread_ts: str | None = None) -> str:
        """The new message's ``ts`` (its id in the channel; replies name it as ``thread_ts``)."""
        try:
            response = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts,
                                                    unfurl_links=False, unfurl_media=False, link_names=False)
        except SlackApiError as exc:
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            status, error = exc.response.status_code, data.get("error", "")
            message = f"Slack refused chat.postMessage to {channel}: HTTP {status} {error}".strip()
            if status == 429 or status >= 500 or error in _TRANSIENT_ERRORS:
                raise TransientDeliveryError(message) from None
            raise PermanentDeliveryError(message) from None
        except (URLError, OSError) as exc:
            raise TransientDeliveryError(f"Slack unreachable: {exc}") from None
        return response["ts"]


def run_failed_message(p: dict) -> tuple[str, list[dict]]:
    head = f"{TIER_BADGE['critical']} *{escape(p['reconciliation'])}*: run `{escape(p['job_name'])}` failed"
    blocks = [_section(head), _section(escape(p["message"])), _context(_link(p["run_url"], "Dagster run"))]
    return f"CRITICAL {p['reconciliation']}: run {p['job_name']} failed", blocks
