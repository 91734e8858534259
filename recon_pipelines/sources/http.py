"""Read records from a paginated JSON HTTP API.

One request per page, one Arrow record batch per page: the connector never
holds more than a page in memory. It copes with what real APIs do: five
pagination styles, rate limits (429 + ``Retry-After``), flaky 5xx and
timeouts, and credentials that must never reach a log line or an error.

Credentials are read from the environment variable named in ``auth.env`` and
are only ever sent to the origin (scheme, host, port) of ``spec.url``: a next
link or a redirect to another host is followed without them, and without the
spec's custom ``headers`` (an API key is often one). httpx itself strips only
``Authorization`` on a cross-origin redirect, so redirects are followed here.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipelines.readonly_sql import check_filter, filter_columns
from recon_pipelines.redact import SENSITIVE_NAME, redact
from recon_pipelines.sources.base import Connector, RecordFilter, SourceError, require_columns
from recon_pipelines.sources.readonly import filter_sql
from recon_pipelines.spec.models import HttpSource
from recon_pipelines.spec.types import declared_schema

log = logging.getLogger(__name__)

Params = list[tuple[str, Any]]

_BACKOFF_BASE = 0.5  # seconds before the first retry; doubles on each further retry
_JITTER = 0.1  # up to +10% so that parallel runs do not retry in lockstep
_MAX_REDIRECTS = 5
_MISSING = object()
_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    OSError,  # datetime.fromtimestamp out of the platform's range
    ValueError,
    TypeError,
    InvalidOperation,
)


class RequestDeadlineExceeded(httpx.TimeoutException):
    """A response still arriving at ``request_deadline``: httpx's ``timeout`` bounds each read,
    so a server that sends a byte now and then would otherwise hold a request open forever."""


class HttpConnector(Connector):
    """A paginated JSON API as a source; see ``HttpSource`` for the options."""

    def __init__(self, spec: HttpSource, client: httpx.Client | None = None):
        self.spec = spec
        self.label = f"{spec.name or 'http'} ({_without_query(spec.url)})"
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=spec.timeout or None)
        self._origin = _origin(spec.url)
        # httpx replaces a URL's query string with `params`, so the URL's own parameters go into params.
        parts = urlsplit(spec.url)
        self._base_url = urlunsplit(parts._replace(query="", fragment=""))
        self._url_params = parse_qsl(parts.query, keep_blank_values=True)
        self._schema: pa.Schema | None = None
        self._auth: dict[str, str] | None = None
        # Custom header values that look like credentials are scrubbed from errors like auth.env's.
        self._secrets: tuple[str, ...] = tuple(v for k, v in spec.headers.items() if v and SENSITIVE_NAME.search(k))
        self._next_request_at = 0.0
        # Sockets this connector's requests opened (from httpcore's trace), so that a request past
        # its deadline can be cut off even while it waits for headers.
        self._sockets: list[socket.socket] = []
        # Injectable so tests can observe waits without sleeping.
        self._sleep: Callable[[float], None] = time.sleep
        self._clock: Callable[[], float] = time.monotonic

    # ------------------------------------------------------------------ Connector

    def schema(self) -> pa.Schema:
        if self._schema is None and self.spec.columns:
            # Declared columns are the schema: no request just to learn what the spec already says.
            self._schema = self._schema_from([])
        if self._schema is None:
            pages = self._pages()
            try:
                _, records = next(pages, (0, []))
            finally:
                pages.close()
            self._schema = self._schema_from(records)
        return self._schema

    def batches(
        self, columns: Sequence[str] | None = None, record_filter: RecordFilter | None = None
    ) -> Iterator[pa.RecordBatch]:
        record_filter = record_filter or RecordFilter()
        for number, records in self._pages():
            if self._schema is None:  # infer from the page we already have instead of refetching it
                self._schema = self._schema_from(records)
            wanted = list(columns) if columns is not None else self._schema.names
            where = filter_sql(self.spec.filter, "duckdb", self._schema.names, self.label)
            filter_needs = filter_columns(check_filter(self.spec.filter, "duckdb")) if where else []
            needed = list(dict.fromkeys(wanted + _filter_columns(record_filter) + filter_needs))
            require_columns(self._schema, needed, self.label)
            batch = self._to_batch(records, needed, number)
            batch = self._apply_filter(batch, record_filter)
            if where is not None:
                batch = _where(batch, where, self.label)
            yield batch.select(wanted)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # ------------------------------------------------------------------ pagination

    def _pages(self) -> Iterator[tuple[int, list[dict]]]:
        """Yield (page number, records) until the API says there is no next page."""
        pagination = self.spec.pagination
        url = self._base_url
        params: Params | None = self._page_params(0, None)
        seen: set[str] = set()  # cursors, next links and page fingerprints already seen, to catch an API that loops
        for number in itertools.count(1):
            if number > pagination.max_pages:
                raise SourceError(
                    f"{self.label}: more than pagination.max_pages={pagination.max_pages} pages; "
                    "raise the limit or check that the API's pagination ends"
                )
            response = self._get(url, params, number)
            body = self._json(response, number)
            records = self._records(body, response, number)
            log.debug(
                "%s: page %d: %d records from %s", self.label, number, len(records), self._redact(str(response.url))
            )
            yield number, records
            follow = self._next_page(number, records, body, response, seen)
            if follow is None:
                return
            url, params = follow

    def _page_params(self, fetched: int, cursor: str | None) -> Params:
        """Query parameters for a page, after ``fetched`` records were read."""
        pagination = self.spec.pagination
        params: dict[str, Any] = dict(self.spec.params)
        if pagination.style == "page":
            page = pagination.first_page + fetched // pagination.page_size
            params.update({pagination.page_param: page, pagination.size_param: pagination.page_size})
        elif pagination.style == "offset":
            params.update({pagination.offset_param: fetched, pagination.limit_param: pagination.page_size})
        elif pagination.style == "cursor" and cursor is not None:
            params[pagination.cursor_param] = cursor
        return [(k, v) for k, v in self._url_params if k not in params] + list(params.items())

    def _next_page(
        self, number: int, records: list[dict], body: Any, response: httpx.Response, seen: set[str]
    ) -> tuple[str, Params | None] | None:
        """Where the next page is (url, params), or None after the last page."""
        pagination = self.spec.pagination
        if pagination.style in ("page", "offset"):
            # A short page is the last; page sizes are constant so `number * size` records were read.
            if len(records) < pagination.page_size:
                return None
            # An API that ignores the page parameter serves the same full page forever.
            self._check_not_seen(_fingerprint(records), seen, "page identical to one", number)
            return self._base_url, self._page_params(number * pagination.page_size, None)
        if pagination.style == "cursor":
            cursor = _dig(body, pagination.cursor_path)
            if cursor is _MISSING or cursor is None or cursor == "":
                return None
            cursor = str(cursor)
            self._check_not_seen(cursor, seen, "cursor", number)
            return self._base_url, self._page_params(0, cursor)
        if pagination.style == "next_link":
            if pagination.next_link_path:
                link = _dig(body, pagination.next_link_path)
                link = None if link is _MISSING else link
            else:
                link = response.links.get("next", {}).get("url")
            if not link:
                return None
            link = urljoin(str(response.url), str(link))
            self._check_not_seen(link, seen, "next link", number)
            return link, None  # a next link carries its own query string
        return None

    def _check_not_seen(self, value: str, seen: set[str], what: str, number: int) -> None:
        if value in seen:
            raise SourceError(
                f"{self.label}: page {number} returned a {what} already followed; the API's pagination loops"
            )
        seen.add(value)

    # ------------------------------------------------------------------ requests

    def _get(self, url: str, params: Params | None, number: int) -> httpx.Response:
        """GET a page, following redirects ourselves so credentials never leave the origin."""
        page_deadline = self._clock() + self.spec.page_deadline
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._send(url, params, number, page_deadline)
            if not response.is_redirect:
                if not response.is_success:
                    raise self._status_error(response, number, "")
                return response
            url, params = urljoin(str(response.url), response.headers["location"]), None
        raise SourceError(f"{self.label}: page {number}: more than {_MAX_REDIRECTS} redirects from {self._redact(url)}")

    def _send(self, url: str, params: Params | None, number: int, page_deadline: float) -> httpx.Response:
        """One request, retried on 429, 5xx and transport errors, all within the page's deadline."""
        headers = self._headers_for(url)
        attempts = self.spec.max_retries + 1
        for attempt in range(attempts):
            last_try = attempt == attempts - 1
            self._throttle()
            self._check_page_deadline(page_deadline, url, number)
            try:
                response = self._fetch(url, params, headers)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if last_try:
                    raise SourceError(
                        f"{self.label}: page {number}: {self._redact(url)} failed after {self.spec.max_retries} "
                        f"retries; last error: {type(exc).__name__}: {self._scrub(str(exc))}"
                    ) from None
                self._wait(min(self._backoff(attempt), self._left(page_deadline)), f"{type(exc).__name__}", number)
                continue
            except httpx.HTTPError as exc:
                raise SourceError(
                    f"{self.label}: page {number}: {self._redact(url)}: {type(exc).__name__}: {self._scrub(str(exc))}"
                ) from None
            status = response.status_code
            if status == 429 or status >= 500:
                if last_try:
                    raise self._status_error(response, number, f" after {self.spec.max_retries} retries")
                delay = _retry_after(response) if status in (429, 503) else None
                delay = self._backoff(attempt) if delay is None else min(delay, self.spec.max_backoff)
                self._wait(min(delay, self._left(page_deadline)), f"status {status}", number)
                continue
            if 400 <= status < 500:
                raise self._status_error(response, number, "")
            return response
        raise AssertionError("unreachable")  # the loop returns or raises

    def _fetch(self, url: str, params: Params | None, headers: dict[str, str]) -> httpx.Response:
        """The whole response within ``request_deadline``. httpx's ``timeout`` bounds each read, so
        the body is streamed with the deadline checked after each chunk, and a timer shuts the
        connection's socket down if the deadline passes while a read is blocked (in the headers too)."""
        deadline = self._clock() + self.spec.request_deadline
        request = self._client.build_request("GET", url, params=params, headers=headers,
                                             extensions={"trace": self._trace})
        expired = threading.Event()
        timer = threading.Timer(self.spec.request_deadline, self._cut_off, args=(expired,))
        timer.daemon = True
        timer.start()
        try:
            response = self._client.send(request, stream=True, follow_redirects=False)
            try:
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if self._clock() > deadline:
                        expired.set()
                        break
            finally:
                response.close()
        except httpx.TransportError:
            if not expired.is_set():
                raise
        finally:
            timer.cancel()
        if expired.is_set():
            raise RequestDeadlineExceeded(
                f"the response was still arriving after request_deadline={self.spec.request_deadline:g}s",
                request=request)
        # A complete response built from the raw bytes: it decodes them (gzip) like a normal one.
        return httpx.Response(response.status_code, headers=response.headers, content=bytes(body), request=request)

    def _trace(self, event: str, info: dict) -> None:
        if event == "connection.connect_tcp.complete":
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                self._sockets = [s for s in self._sockets if s.fileno() != -1] + [sock]

    def _cut_off(self, expired: threading.Event) -> None:
        """Timer thread: one request is in flight at a time, so shutting down every socket this
        connector opened ends it (idle pooled ones are simply reopened next time)."""
        expired.set()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def _left(self, page_deadline: float) -> float:
        """Never wait past the page's deadline (the next attempt then fails at once)."""
        return max(0.0, page_deadline - self._clock()) + 0.001

    def _check_page_deadline(self, page_deadline: float, url: str, number: int) -> None:
        if self._clock() > page_deadline:
            raise SourceError(
                f"{self.label}: page {number}: {self._redact(url)} not read within "
                f"page_deadline={self.spec.page_deadline:g}s (requests, retries and waits together)"
            )

    def _status_error(self, response: httpx.Response, number: int, retried: str) -> SourceError:
        snippet = self._scrub(response.text[:200].strip()) if response.content else ""
        return SourceError(
            f"{self.label}: page {number}: {self._redact(str(response.request.url))} answered "
            f"HTTP {response.status_code}{retried}" + (f": {snippet}" if snippet else "")
        )

    def _backoff(self, attempt: int) -> float:
        delay = _BACKOFF_BASE * 2**attempt * (1 + random.uniform(0, _JITTER))
        return min(delay, self.spec.max_backoff)

    def _wait(self, delay: float, reason: str, number: int) -> None:
        log.info("%s: page %d: %s; retrying in %.2fs", self.label, number, reason, delay)
        self._sleep(delay)

    def _throttle(self) -> None:
        """Space requests at least 1/requests_per_second apart."""
        rps = self.spec.requests_per_second
        if not rps:
            return
        wait = self._next_request_at - self._clock()
        if wait > 0:
            self._sleep(wait)
        self._next_request_at = self._clock() + 1.0 / rps

    def _headers_for(self, url: str) -> dict[str, str]:
        """Custom headers and the credential go to the spec's origin only."""
        headers = {"Accept": "application/json"}
        if _origin(url) == self._origin:
            headers.update(self.spec.headers)
            if self.spec.auth is not None:
                headers.update(self._auth_headers())
        return headers

    def _auth_headers(self) -> dict[str, str]:
        """The credential header, read from the environment once; remembers the secret to scrub it."""
        if self._auth is None:
            auth = self.spec.auth
            assert auth is not None
            value = os.environ.get(auth.env, "")
            if not value:
                raise SourceError(
                    f"{self.label}: environment variable {auth.env} is not set (it holds the API credential)"
                )
            if auth.type == "bearer":
                header, secrets = f"Bearer {value}", (value,)
            elif auth.type == "basic":
                if ":" not in value:
                    raise SourceError(f"{self.label}: environment variable {auth.env} must hold 'user:password'")
                encoded = base64.b64encode(value.encode()).decode()
                header, secrets = f"Basic {encoded}", (value, encoded, value.split(":", 1)[1])
            else:
                header, secrets = value, (value,)
            self._secrets += tuple(s for s in secrets if s)
            self._auth = {auth.header: header}
        return self._auth

    # ------------------------------------------------------------------ redaction

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _redact(self, url: str) -> str:
        return self._scrub(redact(url))

    # ------------------------------------------------------------------ bodies

    def _json(self, response: httpx.Response, number: int) -> Any:
        try:
            return response.json()
        except ValueError:
            content_type = response.headers.get("content-type", "none")
            snippet = self._scrub(response.text[:80].strip()) if response.content else "an empty body"
            raise SourceError(
                f"{self.label}: page {number} from {self._redact(str(response.url))} is not JSON "
                f"(content-type {content_type}): {snippet!r}"
            ) from None

    def _records(self, body: Any, response: httpx.Response, number: int) -> list[dict]:
        path = self.spec.records_path
        records = _dig(body, path) if path else body
        where = f"{self.label}: page {number} from {self._redact(str(response.url))}"
        if records is _MISSING:
            keys = ", ".join(map(str, body)) if isinstance(body, dict) else _json_type(body)
            raise SourceError(f"{where}: no records at records_path {path!r} (the body has: {keys})")
        if not isinstance(records, list):
            what = f"records_path {path!r}" if path else "the body"
            raise SourceError(f"{where}: {what} holds {_json_type(records)}, not a list of records")
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                raise SourceError(f"{where}: record {index} is {_json_type(record)}, not an object")
        return records

    # ------------------------------------------------------------------ Arrow

    def _schema_from(self, records: list[dict]) -> pa.Schema:
        """Declared columns first with their declared types, then the other keys of the first page
        (when nothing is declared, the first page's keys are the schema)."""
        try:
            declared = declared_schema(self.spec.columns) or pa.schema([])
        except ValueError as exc:
            raise SourceError(f"{self.label}: {exc}") from None
        fields = list(declared)
        names = dict.fromkeys(key for record in records for key in record)  # union, first-seen order
        for name in names:
            if name not in declared.names:
                fields.append(pa.field(name, _infer_type([record.get(name) for record in records])))
        return pa.schema(fields)

    def _to_batch(self, records: list[dict], columns: list[str], number: int) -> pa.RecordBatch:
        assert self._schema is not None
        arrays = [
            self._column([record.get(name) for record in records], self._schema.field(name).type, name, number)
            for name in columns
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([self._schema.field(c) for c in columns]))

    def _column(self, values: list[Any], kind: pa.DataType, name: str, number: int) -> pa.Array:
        try:
            return _to_arrow(values, kind)
        except _CONVERSION_ERRORS as exc:
            detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise SourceError(
                f"{self.label}: page {number}: column {name!r} has a value that does not convert to {kind} "
                f"({detail}); declare its type under columns:"
            ) from None

    def _apply_filter(self, batch: pa.RecordBatch, record_filter: RecordFilter) -> pa.RecordBatch:
        masks = []
        if record_filter.key_column and record_filter.keys is not None:
            masks.append(_in_keys(batch.column(record_filter.key_column), record_filter.keys))
        window = record_filter.window_mask(batch)  # naive times in the source's zone, as files and SQL read them
        if window is not None:
            masks.append(window)
        if not masks:
            return batch
        mask = masks[0]
        for other in masks[1:]:
            mask = pc.and_kleene(mask, other)
        return batch.filter(mask)  # a null comparison (no updated time) drops the record


# ---------------------------------------------------------------------- helpers


def _fingerprint(records: list[dict]) -> str:
    text = json.dumps(records, sort_keys=True, default=str, ensure_ascii=False)
    return "page:" + hashlib.sha256(text.encode()).hexdigest()


def _dig(body: Any, path: str) -> Any:
    """The value at a dotted path ('meta.next', 'items.0.id'), or _MISSING."""
    value = body
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = httpx.URL(url)  # lower-cases scheme and host
    return parsed.scheme, parsed.host, parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)


class _RedactHttpxUrls(logging.Filter):
    """httpx logs every request URL at INFO; mask keys passed as query parameters (?api_key=...) there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(str(a)) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _install_httpx_filter() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactHttpxUrls) for f in httpx_log.filters):
        httpx_log.addFilter(_RedactHttpxUrls())


_install_httpx_filter()


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, "", ""))


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _where(batch: pa.RecordBatch, where: str, label: str) -> pa.RecordBatch:
    """The spec's ``filter:`` over one page, in DuckDB (as files are filtered)."""
    import duckdb

    from recon_pipelines.sqlutil import duckdb_connect

    with duckdb_connect() as con:
        con.register("page", pa.Table.from_batches([batch]))
        try:
            table = con.sql(f"SELECT * FROM page WHERE {where}").to_arrow_table()
        except duckdb.Error as exc:
            raise SourceError(f"{label}: filter cannot be applied: {redact(str(exc).splitlines()[0])}") from None
    table = table.cast(batch.schema) if table.num_rows else batch.schema.empty_table()
    return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema=batch.schema)


def _filter_columns(record_filter: RecordFilter) -> list[str]:
    columns = []
    if record_filter.key_column and record_filter.keys is not None:
        columns.append(record_filter.key_column)
    if record_filter.has_window:
        columns.append(record_filter.updated_column)
    return columns


def _in_keys(column: pa.Array, keys: tuple) -> pa.Array:
    try:
        value_set = pa.array(list(keys)).cast(column.type)
    except _CONVERSION_ERRORS:
        # Keys of another type than the column (ids as strings vs numbers): compare as text.
        return pc.is_in(column.cast(pa.string()), value_set=pa.array([_as_text(k) for k in keys], pa.string()))
    return pc.is_in(column, value_set=value_set)


# ---------------------------------------------------------------------- JSON values -> Arrow


def _infer_type(values: list[Any]) -> pa.DataType:
    """Arrow's inference; nested values, mixed types and all-null columns become strings."""
    if any(isinstance(v, (dict, list)) for v in values):
        return pa.string()
    try:
        kind = pa.array(values).type
    except _CONVERSION_ERRORS:
        return pa.string()
    return pa.string() if pa.types.is_null(kind) else kind


def _to_arrow(values: list[Any], kind: pa.DataType) -> pa.Array:
    """Convert JSON values to ``kind`` leniently ('12' -> 12) but never lossily (1.5 is not an int)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.array([_as_text(v) for v in values], kind)
    if pa.types.is_decimal(kind):
        context = Context(prec=kind.precision)
        return pa.array([_as_decimal(v, kind.scale, context) for v in values], kind)
    if pa.types.is_timestamp(kind):
        return pa.array([_as_datetime(v, kind.tz is not None) for v in values], kind)
    if pa.types.is_date(kind):
        return pa.array([_as_date(v) for v in values], kind)
    try:
        array = pa.array(values)
        return array if array.type == kind else array.cast(kind)  # a safe cast: refuses to truncate
    except _CONVERSION_ERRORS:
        pass
    # Text such as "12" or "true", or mixed JSON types such as 12 and "13": let Arrow parse the text.
    return pa.array([_as_text(v, blank_is_null=True) for v in values], pa.string()).cast(kind)


def _as_text(value: Any, blank_is_null: bool = False) -> str | None:
    if isinstance(value, str) and blank_is_null:
        return value.strip() or None  # "" where a number is expected means no value
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _as_decimal(value: Any, scale: int, context: Context) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{_json_type(value)} is not a decimal")
    # repr of a float is its shortest exact form: 0.1 -> '0.1', not 0.1000000000000000055...
    return Decimal(str(value).strip()).quantize(Decimal(1).scaleb(-scale), context=context)


def _as_datetime(value: Any, aware: bool) -> datetime | None:
    """ISO-8601 text or epoch seconds; times with an offset are converted to UTC, naive ones taken as UTC."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise TypeError("a boolean is not a timestamp")
    if isinstance(value, (int, float)):
        parsed = datetime.fromtimestamp(value, timezone.utc)
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise TypeError(f"{_json_type(value)} is not a timestamp")
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc)
    return parsed.replace(tzinfo=timezone.utc if aware else None)


def _as_date(value: Any) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise TypeError(f"{_json_type(value)} is not a date")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return _as_datetime(value, aware=True).date()  # type: ignore[union-attr]
