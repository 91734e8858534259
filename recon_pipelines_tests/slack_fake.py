"""Real local HTTP servers standing in for Slack and for webhook receivers (no client mocks).

``FakeSlack`` implements the Slack Web API methods the notifier uses: ``chat.postMessage``
(returns a ``ts``; ``thread_ts`` must name a top-level message of the same channel; stores
``metadata``), ``chat.update``, ``conversations.list`` (names to ids), and
``conversations.history`` / ``conversations.replies`` (newest first, ``oldest``, ``limit`` and
cursor pagination, ``metadata`` only with ``include_all_metadata``), with bearer-token checks
and Slack's error shapes (HTTP 200, ``ok: false``: ``invalid_auth``, ``channel_not_found``).
Failures in front of it are scripted with ``fail_next`` (e.g. 429 with Retry-After, 500, a
malformed JSON body); ``after_accept`` makes Slack post the message and then answer late or
with garbage, the way a timeout leaves the client not knowing::

    with FakeSlack() as slack:
        slack.fail_next(429, {"Retry-After": "2"})
        ...  # WebClient(base_url=slack.base_url, token=slack.token)
        assert slack.top_level("#alerts")[0]["text"].startswith("[CRITICAL]")

``FakeWebhook`` records every JSON body POSTed to it and answers 202.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from urllib.parse import parse_qsl

from recon_pipelines_tests.http_fakes import FakeServer

_MRKDWN_TOKEN = re.compile(r"<([^>]*)>")
# The channels of the fake workspace unless a test names its own (the tests' and demo specs' channels).
WORKSPACE_CHANNELS = {"#alerts", "#general", "#ops", "#ops-digest", "#revenue-alerts", "#revenue-digest",
                      "#data-platform"}


class FakeSlack:
    def __init__(self, token: str = "xoxb-test-token", channels: set[str] | None = None):
        self.token = token
        self.channels = set(WORKSPACE_CHANNELS if channels is None else channels)  # what exists in the workspace
        self.server = FakeServer(self._handle)
        self.messages: list[dict] = []  # every message posted, in order (updates applied in place)
        self._lock = threading.Lock()
        self._last_ts = 0.0
        self._after_accept: deque[tuple[float, object]] = deque()

    def after_accept(self, delay: float = 0.0, body=None, times: int = 1) -> None:
        """The next ``times`` posts are stored, then answered after ``delay`` seconds (with ``body``
        instead of the real answer when given, e.g. ``b"{not json"``)."""
        with self._lock:
            self._after_accept.extend((delay, body) for _ in range(times))

    @staticmethod
    def channel_id(channel: str) -> str:
        return "C" + "".join(f"{ord(c):02X}" for c in channel.lstrip("#"))[:20].upper()

    # -------------------------------------------------------------- lifecycle and scripting

    def __enter__(self) -> "FakeSlack":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/api/"

    def fail_next(self, status: int, headers: dict | None = None, body=b"", times: int = 1) -> None:
        self.server.fail_next(status, headers, body, times)

    @property
    def requests(self):
        return self.server.requests

    def requests_to(self, path: str):
        return self.server.requests_to(path)

    # -------------------------------------------------------------- inspection

    def top_level(self, channel: str | None = None) -> list[dict]:
        return [m for m in self.messages if m["thread_ts"] is None and channel in (None, m["channel"])]

    def replies(self, ts: str) -> list[dict]:
        return [m for m in self.messages if m["thread_ts"] == ts]

    @staticmethod
    def rendered_text(message: dict) -> str:
        """Everything Slack would render as mrkdwn in a message: its text and every block's text."""
        parts = [message.get("text") or ""]

        def walk(node):
            if isinstance(node, dict):
                if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                    parts.append(node["text"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(message.get("blocks") or [])
        return "\n".join(parts)

    @classmethod
    def control_tokens(cls, message: dict) -> list[str]:
        """The ``<…>`` sequences Slack would interpret: links, mentions, channel references."""
        return _MRKDWN_TOKEN.findall(cls.rendered_text(message))

    # -------------------------------------------------------------- the API

    def _handle(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        if headers.get("authorization") != f"Bearer {self.token}":
            return 200, {}, {"ok": False, "error": "invalid_auth"}
        if "json" in headers.get("content-type", ""):
            data = json.loads(body or b"{}")
        else:
            data = {**query, **dict(parse_qsl(body.decode()))}
        if path == "/api/chat.postMessage":
            answer = self._post(data)
            with self._lock:
                late = self._after_accept.popleft() if answer["ok"] and self._after_accept else None
            if late is not None:
                time.sleep(late[0])
                if late[1] is not None:
                    return 200, {"content-type": "application/json"}, late[1]
            return 200, {}, answer
        if path == "/api/chat.update":
            return 200, {}, self._update(data)
        if path == "/api/conversations.list":
            return 200, {}, self._list(data)
        if path in ("/api/conversations.history", "/api/conversations.replies"):
            return 200, {}, self._history(data, replies=path.endswith("replies"))
        return 404, {}, {"ok": False, "error": "unknown_method"}

    def _known(self, channel: str | None) -> bool:
        return bool(channel) and channel in self.channels

    def _list(self, data: dict) -> dict:
        names = self.channels
        channels = [{"id": self.channel_id(n), "name": n.lstrip("#")} for n in sorted(names)]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

    def _history(self, data: dict, replies: bool) -> dict:
        channel = data.get("channel")
        with self._lock:
            mine = [m for m in self.messages if self.channel_id(m["channel"]) == channel]
        if not any(self.channel_id(c) == channel for c in self.channels):
            return {"ok": False, "error": "channel_not_found"}
        if replies:
            mine = [m for m in mine if data.get("ts") in (m["ts"], m["thread_ts"])]
        else:
            mine = [m for m in mine if m["thread_ts"] is None]
        oldest = float(data.get("oldest") or 0)
        mine = sorted((m for m in mine if float(m["ts"]) > oldest), key=lambda m: m["ts"], reverse=not replies)
        start, limit = int(data.get("cursor") or 0), int(data.get("limit") or 100)
        page = mine[start:start + limit]
        with_metadata = str(data.get("include_all_metadata")).lower() in ("1", "true")
        messages = [{"ts": m["ts"], "text": m["text"], "thread_ts": m["thread_ts"],
                     **({"metadata": m["metadata"]} if with_metadata and m["metadata"] else {})} for m in page]
        more = start + limit < len(mine)
        return {"ok": True, "messages": messages, "has_more": more,
                "response_metadata": {"next_cursor": str(start + limit) if more else ""}}

    def _post(self, data: dict) -> dict:
        channel = data.get("channel")
        if not self._known(channel):
            return {"ok": False, "error": "channel_not_found"}
        if not data.get("text") and not data.get("blocks"):
            return {"ok": False, "error": "no_text"}
        with self._lock:
            thread_ts = data.get("thread_ts")
            if thread_ts and not any(m["ts"] == thread_ts and m["channel"] == channel and m["thread_ts"] is None
                                     for m in self.messages):
                return {"ok": False, "error": "thread_not_found"}
            self._last_ts = max(round(time.time(), 6), round(self._last_ts + 0.000001, 6))  # unique, like Slack's
            ts = f"{self._last_ts:.6f}"
            metadata = data.get("metadata")
            message = {"channel": channel, "ts": ts, "thread_ts": thread_ts, "text": data.get("text"),
                       "blocks": data.get("blocks"), "unfurl_links": data.get("unfurl_links"),
                       "link_names": data.get("link_names"),
                       "metadata": json.loads(metadata) if isinstance(metadata, str) else metadata}
            self.messages.append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": message["text"], "ts": ts}}

    def _update(self, data: dict) -> dict:
        with self._lock:
            for message in self.messages:
                if message["channel"] == data.get("channel") and message["ts"] == data.get("ts"):
                    message.update(text=data.get("text"), blocks=data.get("blocks"))
                    return {"ok": True, "channel": message["channel"], "ts": message["ts"]}
        return {"ok": False, "error": "message_not_found"}


class FakeWebhook:
    """A webhook receiver (generic JSON or PagerDuty Events v2): records bodies, answers 202."""

    def __init__(self, path: str = "/hook"):
        self.path = path
        self.server = FakeServer(self._handle)
        self.bodies: list[dict] = []
        self._lock = threading.Lock()

    def __enter__(self) -> "FakeWebhook":
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return f"{self.server.url}{self.path}"

    def fail_next(self, status: int, headers: dict | None = None, body=b"", times: int = 1) -> None:
        self.server.fail_next(status, headers, body, times)

    @property
    def requests(self):
        return self.server.requests

    def _handle(self, method: str, path: str, query: dict, headers: dict, body: bytes):
        if path != self.path or method != "POST":
            return 404, {}, {"status": "not found"}
        data = json.loads(body)
        with self._lock:
            self.bodies.append(data)
        return 202, {}, {"status": "success", "message": "Event processed", "dedup_key": data.get("dedup_key")}
