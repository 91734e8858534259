"""Slack: Block Kit messages through slack-sdk's WebClient, posted at most once each.

Every value that comes from the data goes through ``escape``: ``&``, ``<`` and ``>`` are
escaped as Slack's mrkdwn requires, so ``<!channel>`` or ``<https://evil|click>`` in a field
cannot ping anyone or forge a link; the formatting characters ``*``, ``_``, ``~`` and the
backtick get an invisible space on each side, so they neither open nor close bold, italics,
strike-through or code; bare ``@here``/``@channel``/``@everyone``, URLs, domains and e-mail
addresses get an invisible break so Slack neither notifies nor turns them into links.

Posting never repeats blindly. slack-sdk's connection-error handler retries any ``URLError``,
and a read timeout or a 5xx can come after Slack posted the message: re-sending would post it
twice. So ``chat.postMessage`` is retried by the client only when Slack certainly did not
post (429, or a connection that was never made); after any other failure the message is
looked up by its idempotency key (carried in the message ``metadata``, which
``conversations.history``/``.replies`` return with ``include_all_metadata``) and posted only
if it is not there. The bot needs ``chat:write``, ``channels:history``/``groups:history`` and
``channels:read``/``groups:read`` (to find a channel's id from its name).
"""

from __future__ import annotations

import http.client
import re
import socket
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
_FORMATTING = re.compile(r"[*_~`]")
_DOMAIN_DOT = re.compile(r"(?<=[a-z0-9-])\.(?=[a-z][a-z0-9-]*)", re.IGNORECASE)  # example.com, a@b.io; not 12.50
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
METADATA_EVENT = "recon_notification"  # the metadata event_type that carries a message's idempotency key
_UNKNOWN_OUTCOME_ERRORS = {"fatal_error", "internal_error", "request_timeout", "service_unavailable"}
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
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
    text = _CONTROL.sub("\ufffd", text)  # NUL and other controls: shown as a replacement mark
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _FORMATTING.sub(lambda m: ZWSP + m.group(0) + ZWSP, text)
    text = _MENTION.sub("@" + ZWSP, text)
    text = _DOMAIN_DOT.sub("." + ZWSP, text)
    return _SCHEME.sub(":" + ZWSP, text)


def escape_name(value: Any, limit: int = MAX_VALUE) -> str:
    """A name from the spec (reconciliation, source, field, kind): only Slack's three escapes."""
    text = "∅" if value is None else str(value)[:limit]
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
    head = f"{badge} {what}: `{escape_name(p['kind'])}` in *{escape_name(p['reconciliation'])}*"
    if p.get("detail"):
        head += f"\n{escape(p['detail'])}"
    facts = [("Key", escape(p["key"])), ("Field", escape_name(p["field"] or "—")), (p["source_a"], escape(p["value_a"])),
             (p["source_b"], escape(p["value_b"])), ("Severity", escape_name(p["severity"])),
             ("First seen", (p.get("first_seen") or "")[:19].replace("T", " ") + " UTC")]
    blocks = [
        _section(head),
        {"type": "section", "fields": [_mrkdwn(f"*{escape_name(label, 60)}*\n{value}") for label, value in facts]},
        _context(_link(p["run_url"], "Dagster run"), f"id `{escape_name(p['discrepancy_id'])}`", escape_name(p.get("reason"))),
    ]
    text = (f"[{(tier or '').upper() if event != 'resolved' else 'RESOLVED'}] {escape_name(p['reconciliation'])}: "
            f"{escape_name(p['kind'])} key {escape(p['key'])}" + (f" field {escape_name(p['field'])}" if p["field"] else "")
            + f": {escape_name(p['source_a'])}={escape(p['value_a'])}, {escape_name(p['source_b'])}={escape(p['value_b'])}")
    return text, blocks


def run_summary_message(p: dict, tier: str | None) -> tuple[str, list[dict]]:
    by_tier = ", ".join(f"{n} {t}" for t, n in sorted(p["opened_by_tier"].items(), key=lambda kv: _rank(kv[0])))
    head = (f"{TIER_BADGE.get(tier or '', '')} *{escape_name(p['reconciliation'])}*: {p['opened']} new "
            f"discrepanc{'y' if p['opened'] == 1 else 'ies'} in this run" + (f" ({by_tier})" if by_tier else ""))
    blocks = [_section(head)]
    if p.get("run_tier_reason"):
        blocks.append(_section(f"Run escalated to *{p['run_tier']}*: {escape_name(p['run_tier_reason'])}"))
    if p.get("aggregated"):
        blocks += _aggregate_blocks(p, f"{p['routed_here']} for this channel, more than {p['aggregate_above']}: "
                                       "one summary instead of one message each.")
    elif p.get("routed_here"):
        blocks.append(_context(f"{p['routed_here']} in this thread"))
    blocks.append(_context(_link(p["run_url"], "Dagster run"),
                           f"`recon discrepancies list -r {p['reconciliation']} --status open`"))
    return f"{(tier or '').upper()} {p['reconciliation']}: {p['opened']} new discrepancies", blocks


def resolved_summary_message(p: dict) -> tuple[str, list[dict]]:
    head = f"{RESOLVED_BADGE} *{escape_name(p['reconciliation'])}*: {p['resolved']} discrepancies no longer seen in this run"
    blocks = [_section(head), *_aggregate_blocks(p, "Resolved, by kind and field:"),
              _context(_link(p["run_url"], "Dagster run"))]
    return f"RESOLVED {p['reconciliation']}: {p['resolved']} discrepancies", blocks


def digest_message(p: dict) -> tuple[str, list[dict]]:
    head = (f":newspaper: *{escape_name(p['reconciliation'])}* daily digest, {p['date']}: {p['total']} "
            f"discrepanc{'y' if p['total'] == 1 else 'ies'} opened in the last day or still open")
    blocks = [_section(head)]
    for group in p["groups"]:
        lines = [f"*{escape_name(group['field'] or group['kind'])}*: {group['open']} open, {group['resolved']} resolved"]
        lines += [f"• key {escape(e['key'])}: {escape_name(p['source_a'])} {escape(e['value_a'])} / "
                  f"{escape_name(p['source_b'])} {escape(e['value_b'])} ({e['status']})" for e in group["examples"]]
        blocks.append(_section("\n".join(lines)))
    blocks = blocks[:49] + [_context(f"`recon discrepancies list -r {p['reconciliation']} --status open`")]
    return f"{p['reconciliation']} daily digest {p['date']}: {p['total']} discrepancies", blocks


def _aggregate_blocks(p: dict, intro: str) -> list[dict]:
    counts = "\n".join(f"• `{escape_name(kind)}`" + (f" / {escape_name(field)}" if field else "") + f": {count}"
                       for kind, field, count in p["by_kind_field"])
    examples = "\n".join(f"• {escape_name(e['kind'])} key {escape(e['key'])}" + (f" {escape_name(e['field'])}" if e["field"] else "")
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
    """Honours Retry-After (capped at ``max_wait``), sleeping through an injectable function.
    Safe for posting too: a 429 means Slack did not post."""

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
    """Any 5xx (the built-in handler only knows 500 and 503), with exponential backoff. Reads only."""

    def __init__(self, max_retry_count: int, sleep: Sleep, backoff: float):
        ServerErrorRetryHandler.__init__(self, max_retry_count=max_retry_count)
        self._init_backoff(sleep, backoff)

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is not None and response.status_code >= 500


class _ConnectionRetry(_BackoffMixin, ConnectionErrorRetryHandler):
    """Any connection error or timeout. Reads only: the request may have been processed."""

    def __init__(self, max_retry_count: int, sleep: Sleep, backoff: float):
        ConnectionErrorRetryHandler.__init__(self, max_retry_count=max_retry_count,
                                             error_types=[URLError, ConnectionError, TimeoutError,
                                                          http.client.HTTPException])
        self._init_backoff(sleep, backoff)


class _NotSentRetry(_ConnectionRetry):
    """Only errors that prove the request never reached Slack (refused connection, unknown host)."""

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return response is None and _never_sent(error)


def _never_sent(error: BaseException | None) -> bool:
    # urllib wraps failures to connect or to send in URLError; a timeout waiting for the
    # answer surfaces as TimeoutError, a dropped answer as RemoteDisconnected/ConnectionResetError.
    reason = getattr(error, "reason", None)
    return isinstance(error, URLError) and isinstance(reason, (ConnectionRefusedError, socket.gaierror))


class _OutcomeUnknown(Exception):
    """Slack may or may not have posted the message (timeout, dropped connection, 5xx, garbage)."""


class SlackSender:
    """Posts messages at most once; raises TransientDeliveryError or PermanentDeliveryError when it cannot."""

    def __init__(self, token: str, base_url: str | None = None, sleep: Sleep = time.sleep, max_retries: int = 3,
                 backoff: float = 1.0, max_wait: float = 60.0, timeout: float = 10.0):
        base = (base_url or DEFAULT_BASE_URL).rstrip("/") + "/"
        self.sleep, self.max_retries, self.backoff = sleep, max_retries, backoff
        self.poster = WebClient(token=token, base_url=base, timeout=timeout, retry_handlers=[
            _RateLimitRetry(max_retries, sleep, max_wait), _NotSentRetry(max_retries, sleep, backoff)])
        self.reader = WebClient(token=token, base_url=base, timeout=timeout, retry_handlers=[
            _RateLimitRetry(max_retries, sleep, max_wait), _ServerErrorRetry(max_retries, sleep, backoff),
            _ConnectionRetry(max_retries, sleep, backoff)])
        self._channel_ids: dict[str, str] = {}

    def post(self, channel: str, text: str, blocks: list[dict], thread_ts: str | None = None, key: str | None = None,
             look_first: bool = False, since: float | None = None) -> str:
        """The message's ``ts`` (replies name it as ``thread_ts``). ``key`` identifies the message in Slack;
        ``look_first``: a previous attempt may have posted it, so look it up before posting; ``since``:
        the epoch seconds before which it cannot have been posted (bounds the look-up)."""
        if key and look_first:
            found = self.find(channel, key, thread_ts, since)
            if found:
                return found
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"idempotency_key": key}} if key else None
        problem = ""
        for attempt in range(self.max_retries + 1):
            try:
                return self._post_once(channel, text, blocks, thread_ts, metadata)
            except _OutcomeUnknown as exc:
                problem = str(exc)
            if not key:
                break  # nothing to look up by: never post twice blindly
            self.sleep(self.backoff * 2 ** attempt)
            found = self.find(channel, key, thread_ts, since)
            if found:
                return found
        raise TransientDeliveryError(f"Slack did not confirm chat.postMessage to {channel}: {problem}")

    def _post_once(self, channel: str, text: str, blocks: list[dict], thread_ts: str | None,
                   metadata: dict | None) -> str:
        try:
            response = self.poster.chat_postMessage(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts,
                                                    metadata=metadata, unfurl_links=False, unfurl_media=False,
                                                    link_names=False)
        except SlackApiError as exc:
            status, error = _status_and_error(exc)
            message = f"Slack refused chat.postMessage to {channel}: HTTP {status} {error}".strip()
            if status >= 500 or error in _UNKNOWN_OUTCOME_ERRORS or error.startswith("Received a response in a non-JSON"):
                raise _OutcomeUnknown(message) from None
            if status == 429 or error == "ratelimited":
                raise TransientDeliveryError(message) from None
            raise PermanentDeliveryError(message) from None
        except Exception as exc:
            if _never_sent(exc):
                raise TransientDeliveryError(f"Slack unreachable: {exc}") from None
            # A timeout, a dropped connection or an unreadable answer: Slack may have posted it.
            raise _OutcomeUnknown(f"{type(exc).__name__}: {exc}") from None
        ts = response.get("ts") if isinstance(response.data, dict) else None
        if not ts:
            raise _OutcomeUnknown(f"chat.postMessage answered without a ts: {str(response.data)[:200]}")
        return ts

    def find(self, channel: str, key: str, thread_ts: str | None = None, since: float | None = None) -> str | None:
        """The ``ts`` of the message carrying this idempotency key, or None."""
        channel_id = self._channel_id(channel)
        cursor = None
        while True:
            args = {"channel": channel_id, "include_all_metadata": True, "limit": 200, "cursor": cursor,
                    "oldest": None if since is None else f"{since:.6f}"}
            page = self._read("conversations_replies" if thread_ts else "conversations_history", channel,
                              **args, **({"ts": thread_ts} if thread_ts else {}))
            for message in page.get("messages") or []:
                metadata = message.get("metadata") or {}
                if (metadata.get("event_type") == METADATA_EVENT
                        and (metadata.get("event_payload") or {}).get("idempotency_key") == key):
                    return message["ts"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def _channel_id(self, channel: str) -> str:
        """conversations.history wants the id; specs name channels (``#revenue-alerts``)."""
        if _CHANNEL_ID.fullmatch(channel):
            return channel
        if channel not in self._channel_ids:
            name, cursor = channel.lstrip("#"), None
            while channel not in self._channel_ids:
                page = self._read("conversations_list", channel, types="public_channel,private_channel",
                                  exclude_archived=True, limit=1000, cursor=cursor)
                for item in page.get("channels") or []:
                    if item.get("name") == name:
                        self._channel_ids[channel] = item["id"]
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not cursor and channel not in self._channel_ids:
                    raise PermanentDeliveryError(f"cannot look up messages in {channel}: channel_not_found "
                                                 "(the bot needs channels:read/groups:read and to be in the channel)")
        return self._channel_ids[channel]

    def _read(self, method: str, where: str, **args) -> dict:
        try:
            response = getattr(self.reader, method)(**{k: v for k, v in args.items() if v is not None})
        except SlackApiError as exc:
            status, error = _status_and_error(exc)
            message = f"Slack refused {method.replace('_', '.')} for {where}: HTTP {status} {error}".strip()
            if status == 429 or status >= 500 or error in _UNKNOWN_OUTCOME_ERRORS or error == "ratelimited":
                raise TransientDeliveryError(message) from None
            # e.g. missing_scope: without the look-up, posting again could duplicate the message.
            raise PermanentDeliveryError(message) from None
        except Exception as exc:
            raise TransientDeliveryError(f"Slack look-up failed: {type(exc).__name__}: {exc}") from None
        return response.data if isinstance(response.data, dict) else {}


def _status_and_error(exc: SlackApiError) -> tuple[int, str]:
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    return exc.response.status_code, str(data.get("error", ""))


def run_failed_message(p: dict) -> tuple[str, list[dict]]:
    head = f"{TIER_BADGE['critical']} *{escape_name(p['reconciliation'])}*: run `{escape_name(p['job_name'])}` failed"
    blocks = [_section(head), _section(escape(p["message"])), _context(_link(p["run_url"], "Dagster run"))]
    return f"CRITICAL {p['reconciliation']}: run {p['job_name']} failed", blocks
