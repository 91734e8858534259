"""Real HTTP servers on 127.0.0.1 for tests: no mocks of the HTTP client.

``FakeServer`` runs a handler function in a background thread and records
every request; ``fail_next`` / ``stall_next`` script failures in front of it.
``fake_records_api`` is a paginated JSON API built on it::

    with fake_records_api(records, style="cursor", page_size=3) as server:
        ...  # GET {server.url}/records
        assert len(server.requests) == 3

A handler is ``(method, path, query, headers, body) -> (status, headers, body)``:
``query`` maps each parameter to its last value, ``headers`` has lower-cased
names, and the returned body may be bytes, str (sent as text/plain) or a
dict/list (sent as JSON).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union
from urllib.parse import parse_qsl, urlencode, urlsplit

Body = Union[bytes, str, dict, list, None]
Response = tuple[int, dict[str, str], Body]
Handler = Callable[[str, str, dict[str, str], dict[str, str], bytes], Response]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float = field(default_factory=time.monotonic)  # when it arrived, for timing assertions
    query_string: str = ""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class _Scripted:
    status: int | None  # None: let the handler answer (after the delay)
    headers: dict[str, str]
    body: Body
    delay: float


def not_found(method: str, path: str, query: dict, headers: dict, body: bytes) -> Response:
    return 404, {}, {"error": f"no route for {method} {path}"}


class FakeServer:
    """A threaded HTTP/1.1 server on a free port of 127.0.0.1; use as a context manager."""

    def __init__(self, handler: Handler = not_found):
        self.handler = handler
        self.errors: list[BaseException] = []  # exceptions raised by the handler (answered as 500)
        self._requests: list[RecordedRequest] = []
        self._scripted: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # -------------------------------------------------------------- lifecycle

    def start(self) -> "FakeServer":
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.fake = self
        self._port = self._httpd.server_address[1]
        # A short poll interval so that stop() returns at once rather than after up to 0.5 s.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. http://127.0.0.1:54321."""
        if self._port is None:
            raise RuntimeError("the server was never started; use `with FakeServer(...) as server`")
        return f"http://127.0.0.1:{self._port}"  # still known after stop, for assertions on messages

    # -------------------------------------------------------------- scripting and inspection

    def fail_next(self, status: int, headers: dict[str, str] | None = None, body: Body = b"", times: int = 1,
                  delay: float = 0.0) -> None:
        """Answer the next ``times`` requests with this response instead of the handler's."""
        with self._lock:
            self._scripted.extend(_Scripted(status, dict(headers or {}), body, delay) for _ in range(times))

    def stall_next(self, seconds: float, times: int = 1) -> None:
        """Wait ``seconds`` before letting the handler answer the next ``times`` requests (client timeouts)."""
        with self._lock:
            self._scripted.extend(_Scripted(None, {}, None, seconds) for _ in range(times))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._scripted.clear()
            self.errors.clear()

    # -------------------------------------------------------------- serving (request threads)

    def _respond(self, request: RecordedRequest) -> Response:
        with self._lock:
            self._requests.append(request)
            scripted = self._scripted.popleft() if self._scripted else None
        if scripted is not None:
            time.sleep(scripted.delay)
            if scripted.status is not None:
                return scripted.status, scripted.headers, scripted.body
        try:
            return self.handler(request.method, request.path, request.query, request.headers, request.body)
        except Exception as exc:  # a broken handler must show up in the test, not hang the client
            with self._lock:
                self.errors.append(exc)
            return 500, {}, f"fake handler raised {type(exc).__name__}: {exc}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hung up (e.g. it timed out on a stalled response): not a test failure.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
            query_string=parts.query,
        )
        status, headers, body = self.server.fake._respond(request)
        data, content_type = _encode(body)
        headers = {name.lower(): value for name, value in headers.items()}
        headers.setdefault("content-type", content_type)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


def _encode(body: Body) -> tuple[bytes, str]:
    if body is None:
        return b"", "text/plain; charset=utf-8"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


# ---------------------------------------------------------------------- a paginated records API

STYLES = ("none", "page", "offset", "cursor", "next_link", "link_header")


def fake_records_api(
    records: list[dict],
    style: str = "page",
    page_size: int = 10,
    token: str | None = None,
    *,
    path: str = "/records",
    records_key: str = "data",
    auth_header: str = "authorization",
    auth_scheme: str | None = "Bearer",
) -> FakeServer:
    """A server (not started) that serves ``records`` at ``path`` the way real APIs paginate.

    Styles and their parameters (the ``Pagination`` defaults of the spec):
    - ``none``: everything in one page.
    - ``page``: ``page`` (from 1) and ``per_page`` (default ``page_size``).
    - ``offset``: ``offset`` (from 0) and ``limit`` (default ``page_size``).
    - ``cursor``: opaque base64 ``cursor``; the body's ``next_cursor`` is null on the last page.
    - ``next_link``: the body's ``links.next`` holds a relative URL with an opaque ``page_token``.
    - ``link_header``: an absolute ``Link: <...>; rel="next"`` header (and rel="first").
    Records are under ``records_key`` ('' for a bare list). With ``token``, the
    ``auth_header`` must be ``"<auth_scheme> <token>"`` (just the token when
    ``auth_scheme`` is None), else 401.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    records = list(records)
    expected_auth = None if token is None else (f"{auth_scheme} {token}" if auth_scheme else token)

    def handler(method: str, req_path: str, query: dict, headers: dict, body: bytes) -> Response:
        if req_path != path:
            return 404, {}, {"error": "not found"}
        if method != "GET":
            return 405, {"allow": "GET"}, {"error": "method not allowed"}
        if expected_auth is not None and headers.get(auth_header.lower()) != expected_auth:
            return 401, {"www-authenticate": "Bearer"}, {"error": "unauthorized"}
        try:
            start, size = _window(style, query, page_size)
        except ValueError as exc:
            return 400, {}, {"error": str(exc)}
        page = records[start : start + size]
        more = start + size < len(records)
        envelope: dict[str, Any] = {}
        response_headers: dict[str, str] = {}
        if style == "cursor":
            envelope["next_cursor"] = _token(start + size) if more else None
        elif style == "next_link":
            envelope["links"] = {"next": f"{path}?{urlencode({'page_token': _token(start + size)})}" if more else None}
        elif style == "link_header":
            base = f"http://{headers['host']}{path}"
            links = [f'<{base}>; rel="first"']
            if more:
                links.insert(0, f'<{base}?{urlencode({"page_token": _token(start + size)})}>; rel="next"')
            response_headers["link"] = ", ".join(links)
        elif style == "page":
            envelope.update(page=int(query.get("page", 1)), per_page=size, total=len(records))
        return 200, response_headers, ({records_key: page, **envelope} if records_key else page)

    return FakeServer(handler)


def _window(style: str, query: dict[str, str], page_size: int) -> tuple[int, int]:
    """(first record index, page size) requested; ValueError for bad parameters (answered 400)."""
    if style == "none":
        return 0, 1 << 62
    if style == "page":
        page, size = int(query.get("page", 1)), int(query.get("per_page", page_size))
        if page < 1 or size < 1:
            raise ValueError("page and per_page must be positive")
        return (page - 1) * size, size
    if style == "offset":
        offset, size = int(query.get("offset", 0)), int(query.get("limit", page_size))
        if offset < 0 or size < 1:
            raise ValueError("offset must be >= 0 and limit positive")
        return offset, size
    opaque = query.get("cursor" if style == "cursor" else "page_token")
    return (_untoken(opaque) if opaque else 0), page_size


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def _untoken(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["o"])
    except Exception:
        raise ValueError("invalid cursor") from None
