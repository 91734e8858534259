"""The HTTP API connector against a real local server (no mocks of httpx)."""

from __future__ import annotations

import base64
import json
import logging
import socket
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime

import pyarrow as pa
import pytest

from recon_pipelines.sources.base import RecordFilter, SourceError
from recon_pipelines.sources.http import HttpConnector
from recon_pipelines.spec.models import HttpSource

try:
    from recon_pipelines_tests.http_fakes import FakeServer, fake_records_api
except ImportError:  # the tests folder is not a package: pytest puts it on sys.path
    from http_fakes import FakeServer, fake_records_api

TOKEN = "tok-3f9a-very-secret"
RECORDS = [
    {"id": i, "name": f"n{i}", "amount": i * 1.5, "updated": f"2024-01-{i:02d}T00:00:00Z"} for i in range(1, 8)
]
# How each fake style is read: the spec's pagination (and records_path) for it.
STYLE_SPECS = {
    "none": {"pagination": {"style": "none"}},
    "page": {"pagination": {"style": "page", "page_size": 3}},
    "offset": {"pagination": {"style": "offset", "page_size": 3}},
    "cursor": {"pagination": {"style": "cursor"}},
    "next_link": {"pagination": {"style": "next_link", "next_link_path": "links.next"}},
    "link_header": {"pagination": {"style": "next_link"}, "records_path": ""},
}


def connect(server: FakeServer, sleeps: list[float] | None = None, path: str = "/records", **options) -> HttpConnector:
    """A connector for ``server``; with ``sleeps``, waits are recorded there instead of slept."""
    spec = HttpSource.model_validate({"type": "http", "name": "crm", "url": server.url + path, **options})
    connector = HttpConnector(spec)
    if sleeps is not None:
        connector._sleep = sleeps.append
    return connector


def read(connector: HttpConnector, **kwargs) -> list[dict]:
    with connector:
        return [row for batch in connector.batches(**kwargs) for row in batch.to_pylist()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------- pagination


@pytest.mark.parametrize("style", list(STYLE_SPECS))
def test_every_pagination_style_reads_each_record_once_in_order(style):
    records_key = "" if style == "link_header" else "data"
    with fake_records_api(RECORDS, style=style, page_size=3, records_key=records_key) as server:
        connector = connect(server, **STYLE_SPECS[style])
        with connector:
            batches = list(connector.batches())
    assert [row["id"] for b in batches for row in b.to_pylist()] == [r["id"] for r in RECORDS]
    expected_pages = 1 if style == "none" else 3  # 3 + 3 + 1: the short page ends page/offset styles
    assert len(batches) == len(server.requests) == expected_pages
    assert not server.errors


def test_page_and_offset_send_their_parameters_and_stop_on_an_empty_page():
    six = RECORDS[:6]
    with fake_records_api(six, style="page", page_size=3) as server:
        connector = connect(
            server, path="/records?region=eu", params={"status": "active"}, pagination={"style": "page", "page_size": 3}
        )
        rows = read(connector)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.query for r in server.requests] == [  # the URL's own query string is kept on every page
        {"region": "eu", "status": "active", "page": str(n), "per_page": "3"} for n in (1, 2, 3)  # page 3 is empty
    ]
    with fake_records_api(six, style="offset", page_size=3) as server:
        rows = read(connect(server, pagination={"style": "offset", "page_size": 3}))
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [(r.query["offset"], r.query["limit"]) for r in server.requests] == [("0", "3"), ("3", "3"), ("6", "3")]


def test_more_pages_than_max_pages_is_an_error_naming_the_source():
    with fake_records_api(RECORDS, style="cursor", page_size=3) as server:
        connector = connect(server, pagination={"style": "cursor", "max_pages": 2})
        with pytest.raises(SourceError, match=r"crm .*max_pages=2"):
            read(connector)
    assert len(server.requests) == 2


def test_a_cursor_that_repeats_is_an_error_instead_of_an_endless_loop():
    def handler(method, path, query, headers, body):
        return 200, {}, {"data": [{"id": 1}], "next_cursor": "same"}

    with FakeServer(handler) as server:
        with pytest.raises(SourceError, match="loops"):
            read(connect(server, pagination={"style": "cursor"}))
    assert [r.query.get("cursor") for r in server.requests] == [None, "same"]  # stopped when 'same' came back


def test_credentials_are_not_sent_to_a_next_link_on_another_host(monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    with FakeServer(lambda *_: (200, {}, {"data": [{"id": 2}]})) as other:

        def first(method, path, query, headers, body):
            return 200, {"link": f'<{other.url}/more>; rel="next"'}, {"data": [{"id": 1}]}

        with FakeServer(first) as server:
            rows = read(connect(server, auth={"env": "CRM_TOKEN"}, pagination={"style": "next_link"}))
    assert [r["id"] for r in rows] == [1, 2]
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in other.requests[0].headers


# ---------------------------------------------------------------------- schema


def test_a_declared_schema_is_honoured_and_text_values_are_converted():
    records = [
        {"id": "1", "amount": "12.50", "updated": "2024-01-01T10:00:00+02:00", "active": "true", "day": "2024-01-02"},
        {"id": 2, "amount": 0.1, "updated": "2024-01-01T08:00:00Z", "active": False, "day": None},
        {"id": 3, "amount": "", "active": " "},  # blank text where a value is expected: no value
    ]
    columns = {"id": "bigint", "amount": "decimal", "updated": "timestamptz", "active": "boolean", "day": "date"}
    with fake_records_api(records, style="none") as server:
        connector = connect(server, columns=columns)
        with connector:
            schema = connector.schema()
            (batch,) = list(connector.batches())
    assert schema == pa.schema([("id", pa.int64()), ("amount", pa.decimal128(38, 10)),
                                ("updated", pa.timestamp("us", tz="UTC")), ("active", pa.bool_()),
                                ("day", pa.date32())])
    assert batch.schema == schema
    rows = batch.to_pylist()
    utc8 = datetime(2024, 1, 1, 8, tzinfo=timezone.utc)
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert [r["amount"] for r in rows] == [Decimal("12.5"), Decimal("0.1"), None]
    assert [r["updated"] for r in rows] == [utc8, utc8, None]
    assert [r["active"] for r in rows] == [True, False, None]
    assert [r["day"] for r in rows] == [date(2024, 1, 2), None, None]


def test_an_inferred_schema_takes_the_union_of_keys_and_turns_nested_values_into_json():
    records = [
        {"id": 1, "name": "a", "meta": {"tier": "gold"}},
        {"id": 2, "score": 1.5, "tags": ["x", "y"]},
        {"id": 3, "name": "c", "score": 2},
    ]
    with fake_records_api(records, style="none") as server:
        connector = connect(server)
        with connector:
            schema = connector.schema()
            rows = [row for batch in connector.batches() for row in batch.to_pylist()]
    assert schema == pa.schema([("id", pa.int64()), ("name", pa.string()), ("meta", pa.string()),
                                ("score", pa.float64()), ("tags", pa.string())])
    assert json.loads(rows[0]["meta"]) == {"tier": "gold"}
    assert json.loads(rows[1]["tags"]) == ["x", "y"]
    assert rows[1]["name"] is None and rows[0]["score"] is None
    assert rows[2]["score"] == 2.0


def test_schema_reads_only_the_first_page():
    with fake_records_api(RECORDS, style="page", page_size=3) as server:
        with connect(server, pagination={"style": "page", "page_size": 3}) as connector:
            assert connector.schema().names == ["id", "name", "amount", "updated"]
    assert len(server.requests) == 1


def test_columns_select_and_order_and_an_unknown_column_is_an_error():
    with fake_records_api(RECORDS, style="none") as server:
        rows = read(connect(server), columns=["name", "id"])
        assert list(rows[0]) == ["name", "id"]
        with pytest.raises(SourceError, match="'nope' not found"):
            read(connect(server), columns=["id", "nope"])


@pytest.mark.parametrize("bad", ["abc", 1.5])
def test_a_value_that_does_not_fit_the_declared_type_names_the_column_and_page(bad):
    records = [{"id": 1}, {"id": 2}, {"id": bad}]
    with fake_records_api(records, style="page", page_size=2) as server:
        connector = connect(server, columns={"id": "bigint"}, pagination={"style": "page", "page_size": 2})
        with pytest.raises(SourceError, match=r"page 2: column 'id'.*int64"):
            read(connector)


# ---------------------------------------------------------------------- retries


def test_429_with_retry_after_is_retried_after_the_requested_wait():
    sleeps: list[float] = []
    with fake_records_api(RECORDS, style="none") as server:
        server.fail_next(429, {"Retry-After": "1"})
        rows = read(connect(server, sleeps))
    assert len(rows) == len(RECORDS)
    assert len(server.requests) == 2
    assert sleeps == [1.0]


def test_retry_after_as_an_http_date_and_capped_at_max_backoff():
    sleeps: list[float] = []
    before = datetime.now(timezone.utc)
    in_30s = (before + timedelta(seconds=30)).replace(microsecond=0)  # HTTP dates have whole seconds
    with fake_records_api(RECORDS, style="none") as server:
        server.fail_next(503, {"Retry-After": format_datetime(in_30s, usegmt=True)})
        server.fail_next(429, {"Retry-After": "120"})
        read(connect(server, sleeps, max_backoff="1m"))
    after = datetime.now(timezone.utc)
    assert len(sleeps) == 2
    # The wait is the date minus the moment the reply was read, which lies between before and after
    # (however slow the machine): exactly what is left of the ~30 s.
    assert (in_30s - after).total_seconds() <= sleeps[0] <= (in_30s - before).total_seconds()
    assert sleeps[1] == 60.0  # 120 s asked, capped at max_backoff


def test_a_500_then_success_succeeds_after_an_exponential_backoff():
    sleeps: list[float] = []
    with fake_records_api(RECORDS, style="none") as server:
        server.fail_next(500)
        server.fail_next(502, times=3)
        rows = read(connect(server, sleeps, max_backoff=1.5))
    assert len(rows) == len(RECORDS)
    assert len(server.requests) == 5
    # 0.5 s doubling, with up to 10% jitter, capped at max_backoff.
    for waited, base in zip(sleeps, [0.5, 1.0, 1.5, 1.5]):
        assert base <= waited <= min(base * 1.1, 1.5)
    assert len(sleeps) == 4


def test_exhausted_retries_name_the_url_page_and_last_status():
    sleeps: list[float] = []
    with fake_records_api(RECORDS, style="none") as server:
        server.fail_next(503, times=10)
        with pytest.raises(SourceError) as info:
            read(connect(server, sleeps, max_retries=2))
    message = str(info.value)
    assert f"{server.url}/records" in message and "page 1" in message and "503" in message
    assert len(server.requests) == 3 and len(sleeps) == 2


def test_a_404_fails_at_once_without_retries():
    sleeps: list[float] = []
    with fake_records_api(RECORDS, style="none") as server:
        with pytest.raises(SourceError, match="HTTP 404"):
            read(connect(server, sleeps, path="/missing"))
    assert len(server.requests) == 1 and sleeps == []


def test_a_read_timeout_is_retried():
    sleeps: list[float] = []
    with fake_records_api(RECORDS, style="none") as server:
        server.stall_next(1.0)
        rows = read(connect(server, sleeps, timeout=0.2))
    assert len(rows) == len(RECORDS)
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_an_unreachable_server_fails_after_retries_naming_the_error():
    sleeps: list[float] = []
    spec = HttpSource(type="http", name="crm", url=f"http://127.0.0.1:{free_port()}/records", max_retries=1)
    connector = HttpConnector(spec)
    connector._sleep = sleeps.append
    with pytest.raises(SourceError, match="ConnectError"):
        read(connector)
    assert len(sleeps) == 1


# ---------------------------------------------------------------------- auth and secrets


@pytest.mark.parametrize(
    ("auth", "fake_auth", "expected"),
    [
        ({"env": "CRM_TOKEN"}, {}, f"Bearer {TOKEN}"),
        ({"type": "header", "header": "X-Api-Key", "env": "CRM_TOKEN"},
         {"auth_header": "x-api-key", "auth_scheme": None}, TOKEN),
    ],
)
def test_the_token_is_sent_as_a_header(monkeypatch, auth, fake_auth, expected):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    with fake_records_api(RECORDS, style="cursor", page_size=3, token=TOKEN, **fake_auth) as server:
        rows = read(connect(server, auth=auth, pagination={"style": "cursor"}))
    assert len(rows) == len(RECORDS)
    header = fake_auth.get("auth_header", "authorization")
    assert [r.headers[header] for r in server.requests] == [expected] * 3


def test_basic_auth_sends_user_and_password(monkeypatch):
    monkeypatch.setenv("CRM_LOGIN", "ann:pa55")
    with fake_records_api(RECORDS, style="none") as server:
        read(connect(server, auth={"type": "basic", "env": "CRM_LOGIN"}))
    assert server.requests[0].headers["authorization"] == "Basic " + base64.b64encode(b"ann:pa55").decode()


def test_a_missing_token_variable_is_named_and_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    with fake_records_api(RECORDS, style="none", token=TOKEN) as server:
        with pytest.raises(SourceError, match="environment variable CRM_TOKEN is not set"):
            read(connect(server, auth={"env": "CRM_TOKEN"}))
    assert server.requests == []


def test_a_wrong_token_fails_at_once_with_401(monkeypatch):
    monkeypatch.setenv("CRM_TOKEN", "wrong")
    with fake_records_api(RECORDS, style="none", token=TOKEN) as server:
        with pytest.raises(SourceError, match="HTTP 401"):
            read(connect(server, [], auth={"env": "CRM_TOKEN"}))
    assert len(server.requests) == 1


def test_the_secret_never_appears_in_label_errors_or_logs(monkeypatch, caplog):
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    with fake_records_api(RECORDS, style="page", page_size=3, token=TOKEN) as server:
        connector = connect(server, [], auth={"env": "CRM_TOKEN"}, max_retries=2,
                            params={"api_key": TOKEN}, pagination={"style": "page", "page_size": 3})
        batches = connector.batches()
        next(batches)
        # A server that echoes the credential back in its error body.
        server.fail_next(500, body=f"bad request with Authorization: Bearer {TOKEN}", times=3)
        with pytest.raises(SourceError) as info:
            next(batches)
        connector.close()
    assert "HTTP 500" in str(info.value) and "page 2" in str(info.value)
    assert "page 1: 3 records" in caplog.text  # the debug lines are there, just without the secret
    for text in (connector.label, str(info.value), caplog.text):
        assert TOKEN not in text
    assert connector.label == f"crm ({server.url}/records)"


def test_the_label_drops_query_string_and_user_info():
    spec = HttpSource(type="http", name=None, url="https://bob:pw@api.example.com/v1/items?api_key=zzz")
    with HttpConnector(spec) as connector:
        assert connector.label == "http (https://api.example.com/v1/items)"


# ---------------------------------------------------------------------- rate limit, filters, bad bodies


def test_requests_per_second_spaces_the_requests():
    """The throttle is checked on a clock that moves only when the connector waits, so the
    machine's load cannot make it pass or fail (no wall-clock assertion)."""
    twelve = [{"id": i} for i in range(12)]
    now = [0.0]
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with fake_records_api(twelve, style="page", page_size=3) as server:
        connector = connect(server, requests_per_second=20, pagination={"style": "page", "page_size": 3})
        connector._sleep, connector._clock = wait, lambda: now[0]
        rows = read(connector)
    assert len(rows) == 12 and len(server.requests) == 5
    # The first request goes at once; each later one waits out the rest of its 1/20 s slot.
    assert waits == [pytest.approx(0.05)] * 4


def test_record_filter_by_keys_reads_the_key_column_even_when_not_selected():
    with fake_records_api(RECORDS, style="page", page_size=3) as server:
        connector = connect(server, pagination={"style": "page", "page_size": 3})
        rows = read(connector, columns=["name"], record_filter=RecordFilter(key_column="id", keys=(2, 5, 7)))
        assert rows == [{"name": "n2"}, {"name": "n5"}, {"name": "n7"}]
        text_keys = RecordFilter(key_column="id", keys=("3",))
        assert [r["id"] for r in read(connect(server), record_filter=text_keys)] == [3]


def test_record_filter_by_modified_window():
    window = RecordFilter(
        updated_column="updated",
        modified_from=datetime(2024, 1, 3, tzinfo=timezone.utc),
        modified_to=datetime(2024, 1, 5),  # naive: taken as UTC
    )
    with fake_records_api(RECORDS, style="none") as server:
        rows = read(connect(server), record_filter=window)
    assert [r["id"] for r in rows] == [3, 4]


def test_a_page_that_is_not_json_is_a_clear_error():
    with fake_records_api(RECORDS, style="page", page_size=3) as server:
        connector = connect(server, pagination={"style": "page", "page_size": 3})
        batches = connector.batches()
        next(batches)
        server.fail_next(200, {"Content-Type": "text/html"}, "<html>maintenance</html>")
        with pytest.raises(SourceError) as info:
            next(batches)
        connector.close()
    message = str(info.value)
    assert "page 2" in message and "not JSON" in message and "text/html" in message
    assert f"{server.url}/records?page=2" in message


def test_a_missing_records_path_is_a_clear_error():
    with fake_records_api(RECORDS, style="none") as server:
        with pytest.raises(SourceError, match=r"page 1 .*no records at records_path 'items' \(the body has: data\)"):
            read(connect(server, records_path="items"))
