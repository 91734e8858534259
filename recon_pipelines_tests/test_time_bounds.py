"""Nothing waits forever: HTTP requests and pages have total deadlines, a pagination that repeats
itself is caught, tracker sessions are bounded by the server, runs carry a maximum duration, and
concurrent writers of one snapshot never share a temporary file."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from recon_pipelines.dagster_defs.definitions import build_definitions
from recon_pipelines.sources.base import SourceError
from recon_pipelines.sources.http import HttpConnector
from recon_pipelines.snapshots import partial_path, write_snapshot
from recon_pipelines.spec import parse_spec
from recon_pipelines.spec.models import FileSource, HttpSource
from recon_pipelines.tracker import Tracker, create_tracker_engine
from recon_pipelines.tracker.db import POSTGRES_CONNECT_ARGS, postgres_connect_args

try:
    from recon_pipelines_tests.http_fakes import FakeServer
    from recon_pipelines_tests.test_tracker import d, found
except ImportError:  # the tests folder is not a package: pytest puts it on sys.path
    from http_fakes import FakeServer
    from test_tracker import d, found

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- HTTP


class DripServer:
    """Answers one request one byte per second: the body after headers sent at once, or
    (``headers=True``) the status line and headers too."""

    def __init__(self, headers: bool = False):
        self.drip_headers = headers
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.sock.close()
        self.thread.join(timeout=5)

    def _serve(self):
        body = b'{"data": [' + b" " * 500 + b"]}"
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        # Headers long enough that, dripped, they would outlast the test's own timeout.
        head = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-padding: " + b"p" * 1000 + b"\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode())
        with conn:
            conn.recv(65536)
            if self.drip_headers:
                body = head + body
            else:
                conn.sendall(head)
            for byte in body:
                if self.stop.wait(1.0):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the client gave up: what the test expects
                    return


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_server_dripping_its_response_is_cut_off_at_the_request_deadline(headers):
    with DripServer(headers=headers) as server:
        spec = HttpSource.model_validate({"type": "http", "url": server.url + "/records", "timeout": 2,
                                          "request_deadline": 3, "max_retries": 0})
        with HttpConnector(spec) as connector, pytest.raises(SourceError) as failure:
            list(connector.batches())
    message = str(failure.value)
    assert "RequestDeadlineExceeded" in message and "request_deadline=3s" in message, message


def test_retries_stop_at_the_page_deadline():
    clock = [0.0]
    with FakeServer(lambda *_: (503, {}, b"busy")) as server:
        spec = HttpSource.model_validate({"type": "http", "url": server.url + "/records", "max_retries": 50,
                                          "max_backoff": 10, "page_deadline": 30})
        connector = HttpConnector(spec)
        connector._clock = lambda: clock[0]
        connector._sleep = lambda seconds: clock.__setitem__(0, clock[0] + seconds)
        with connector, pytest.raises(SourceError, match=r"not read within page_deadline=30s"):
            list(connector.batches())
    assert 2 < len(server.requests) < 51


@pytest.mark.parametrize("style", ["page", "offset"])
def test_an_api_that_ignores_the_page_parameter_is_caught_on_the_repeat(style):
    page = {"data": [{"id": 1}, {"id": 2}, {"id": 3}]}
    with FakeServer(lambda *_: (200, {}, page)) as server:
        spec = HttpSource.model_validate({"type": "http", "url": server.url + "/records",
                                          "pagination": {"style": style, "page_size": 3}})
        with HttpConnector(spec) as connector, pytest.raises(SourceError, match="page identical to one already followed"):
            list(connector.batches())
    assert len(server.requests) == 2


# --------------------------------------------------------------------------- tracker sessions


def test_tracker_bounds_are_on_by_default_and_the_url_overrides_them():
    defaults = postgres_connect_args("postgresql+psycopg2://recon@db/recon")
    assert defaults["keepalives"] == 1 and defaults["connect_timeout"] == POSTGRES_CONNECT_ARGS["connect_timeout"]
    assert "-c idle_in_transaction_session_timeout=" in defaults["options"]
    assert "-c lock_timeout=" in defaults["options"] and "-c statement_timeout=" in defaults["options"]
    mine = postgres_connect_args("postgresql+psycopg2://recon@db/recon?connect_timeout=3&options=-c%20lock_timeout%3D5")
    assert "connect_timeout" not in mine  # the URL's own value reaches libpq
    assert mine["options"].endswith("-c lock_timeout=5")  # the last -c wins


@pytest.mark.postgres
def test_a_run_stalled_idle_in_transaction_is_ended_and_the_next_run_proceeds(pg_url):
    """The stalled run holds the reconciliation's lock and goes silent (a network stall); the server
    ends its session after the idle timeout and the next run takes the lock."""
    Tracker(pg_url).engine.dispose()  # schema in place
    short = f"{pg_url}?options=-c%20idle_in_transaction_session_timeout%3D500"
    stalled_engine = create_tracker_engine(short)
    stalled = stalled_engine.connect()
    stalled.begin()
    stalled.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key("orders")})
    # ... and never another word from this session.

    after = Tracker(pg_url)
    try:
        outcome = after.apply_run("orders", "r2", found(d("1")))  # waits for the lock, then proceeds
        assert len(outcome.new_ids) == 1
    finally:
        after.engine.dispose()
    with pytest.raises(sa.exc.OperationalError, match="idle-in-transaction timeout|server closed the connection"):
        stalled.execute(sa.text("SELECT 1"))
    stalled.invalidate()
    stalled_engine.dispose()


def _lock_key(reconciliation: str) -> int:
    from recon_pipelines.tracker.store import _lock_key as key

    return key(reconciliation)


# --------------------------------------------------------------------------- run duration


def _file_spec(tmp_path: Path, **extra) -> dict:
    (tmp_path / "a.csv").write_text("id,amount\n1,2\n")
    return {"name": "orders", "source_a": {"type": "file", "path": str(tmp_path / "a.csv")},
            "source_b": {"type": "file", "path": str(tmp_path / "a.csv")}, "key": "id", "fields": {"amount": "exact"},
            **extra}


@pytest.mark.parametrize("given, seconds", [(None, "7200"), ("30m", "1800")])
def test_max_runtime_becomes_the_dagster_max_runtime_tag_of_every_job(tmp_path, monkeypatch, given, seconds):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    spec = parse_spec(_file_spec(tmp_path, **({"max_runtime": given} if given else {})))
    defs = build_definitions(specs=[spec])
    for name in ("reconcile_orders", "recheck_orders"):
        assert defs.resolve_job_def(name).tags.get("dagster/max_runtime") == seconds, name


@pytest.mark.parametrize("instance", ["dagster.yaml", "docker/dagster.yaml"])
def test_run_monitoring_is_on_so_the_tag_is_enforced(instance):
    monitoring = yaml.safe_load((ROOT / instance).read_text())["run_monitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["max_runtime_seconds"] > 0  # runs without the tag (ad-hoc asset runs) are bounded too


def test_the_local_instance_file_is_accepted_by_dagster(tmp_path, monkeypatch):
    from dagster import DagsterInstance

    (tmp_path / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 7200


# --------------------------------------------------------------------------- snapshot files


def test_concurrent_writers_of_one_snapshot_use_distinct_temporary_names(tmp_path):
    target = tmp_path / "snapshot_a.parquet"
    names = {partial_path(target) for _ in range(50)}
    assert len(names) == 50 and all(n.parent == tmp_path and n.name.endswith(".partial") for n in names)


def test_two_threads_snapshotting_the_same_scope_both_finish_with_a_whole_file(tmp_path):
    rows = 200_000
    (tmp_path / "a.csv").write_text("id,amount\n" + "".join(f"{i},{i}\n" for i in range(rows)))
    source = FileSource(type="file", path=str(tmp_path / "a.csv"))
    target = tmp_path / "out" / "snapshot_a.parquet"
    errors: list[BaseException] = []

    def write():
        try:
            write_snapshot(source, {"id": "id", "amount": "amount"}, target)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert pq.read_metadata(target).num_rows == rows
    assert list(target.parent.glob("*.partial")) == []
