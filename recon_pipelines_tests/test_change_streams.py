"""Event-driven reconciliation on real change streams: PostgreSQL logical decoding (a cluster of
the tests' own, wal_level=logical) publishing to a NATS JetStream stream, consumed by a durable
consumer into the tracker's expectation store; expired keys re-checked and reported."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from recon_pipelines.spec import parse_spec
from recon_pipelines.streams import wiring
from recon_pipelines.streams.events import ChangeEvent
from recon_pipelines.streams.settle import NOT_PROPAGATED, recheck_expired
from recon_pipelines.tracker import Tracker
from recon_pipelines_tests.stream_support import logical_cluster, nats_reachable, unique, wait_for


@pytest.fixture(scope="module")
def cluster():
    with logical_cluster() as admin_url:
        yield admin_url


class Systems:
    """Two databases on the logical cluster, an orders table each, in a publication; a stream."""

    def __init__(self, admin_url: str, tmp_path):
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.urls, self.engines, self.slots = {}, {}, {}
        suffix = uuid.uuid4().hex[:8]
        for side in "ab":
            name = f"sys_{side}_{suffix}"
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            self.urls[side] = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            self.engines[side] = sa.create_engine(self.urls[side])
            with self.engines[side].begin() as conn:
                conn.execute(sa.text("CREATE TABLE orders (id integer PRIMARY KEY, amount numeric(12,2), status text)"))
                conn.execute(sa.text("CREATE PUBLICATION recon_orders FOR TABLE orders"))
            self.slots[side] = f"recon_{side}_{suffix}"
        admin.dispose()
        self.stream = unique("RECON_TEST")
        self.tracker = Tracker(f"sqlite:///{tmp_path / 'tracker.sqlite'}")
        self.storage = tmp_path / "runs"

    def spec(self, **stream):
        return parse_spec(self.spec_dict(**stream))

    def spec_dict(self, **stream) -> dict:
        return {
            "name": "orders",
            "source_a": {"type": "sql", "url": self.urls["a"], "table": "orders"},
            "source_b": {"type": "sql", "url": self.urls["b"], "table": "orders"},
            "key": "id",
            "fields": {"amount": {"compare": "numeric", "abs_tol": 0.001}, "status": {"compare": "exact"}},
            "change_stream": {"stream": self.stream, "subject_prefix": f"recon_test.{self.stream}", "window": "1s", "ack_wait": "1s", "cdc": {
                side: {"table": "public.orders", "slot": self.slots[side], "publication": "recon_orders"} for side in "ab"},
                **stream},
        }

    def write(self, side: str, sql: str, **params) -> None:
        with self.engines[side].begin() as conn:
            conn.execute(sa.text(sql), params)

    def close(self, admin_url: str):
        for engine in self.engines.values():
            engine.dispose()
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for side in "ab":
                conn.execute(sa.text("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                     "WHERE slot_name = :slot"), {"slot": self.slots[side]})
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(self.urls[side]).database}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def systems(cluster, tmp_path):
    nats_reachable()
    systems = Systems(cluster, tmp_path)
    spec = systems.spec()
    with wiring.shared_log(spec) as log:
        log.create_stream()
        for side in "ab":
            wiring.cdc_reader(spec, side).ensure_slot()  # changes are captured from here on
        try:
            yield systems
        finally:
            log.delete_stream()
            systems.close(cluster)


def pump(spec, store, sides="ab") -> wiring.Consumed:
    """CDC -> shared log -> expectation store, as far as there is anything to move."""
    with wiring.shared_log(spec) as log:
        for side in sides:
            wiring.forward_cdc(spec, log, side, idle_timeout=0.5)
        return wiring.consume(log, store, max_events=10_000, timeout=0.5)


def settle_when_due(systems, spec, store):
    """Wait (bounded) until the window of every open expectation has passed, then re-check them."""
    batches = wait_for(lambda: store.claim_due(datetime.now(timezone.utc), 100, 10) if store.lag(
        datetime.now(timezone.utc)).overdue == store.lag(datetime.now(timezone.utc)).open else None, timeout=30)
    for claim, keys in batches.items():
        recheck_expired(spec, systems.tracker, store, keys, systems.storage, run_id=f"test-{claim}")
    return batches


def reported(systems):
    return {(d["key"], d["kind"], d["field"]): d for d in systems.tracker.discrepancies("orders")}


def test_propagated_in_time_reports_nothing(systems):
    spec = systems.spec()
    store = wiring.expectation_store(spec, systems.tracker.engine)
    for side in "ab":
        systems.write(side, "INSERT INTO orders VALUES (1, 10.50, 'paid'), (2, 20.00, 'open')")
    systems.write("a", "UPDATE orders SET status = 'paid' WHERE id = 2")
    systems.write("b", "UPDATE orders SET status = 'paid' WHERE id = 2")
    consumed = pump(spec, store)
    assert consumed.handled == 6 and consumed.opened == 2 and consumed.closed == 2  # A's update moves its own expectation
    assert store.lag(datetime.now(timezone.utc)).open == 0
    assert store.claim_due(datetime.now(timezone.utc), 100, 10) == {}
    assert reported(systems) == {}


def test_missing_counterpart_is_reported_once_with_its_event_time(systems):
    spec = systems.spec()
    store = wiring.expectation_store(spec, systems.tracker.engine)
    systems.write("a", "INSERT INTO orders VALUES (7, 70.00, 'paid')")
    assert pump(spec, store).opened == 1
    batches = settle_when_due(systems, spec, store)
    assert [keys for keys in batches.values()] == [["7"]]
    found = reported(systems)
    assert list(found) == [("7", NOT_PROPAGATED, None)]
    detail = json.loads(found[("7", NOT_PROPAGATED, None)]["detail"])
    assert detail["was"] == "only_in_a" and detail["written_on"] == "a" and detail["counterpart_at"] is None
    assert datetime.fromisoformat(detail["event_at"]) <= datetime.now(timezone.utc)
    # later passes find nothing new: the expectation is closed, the discrepancy seen once
    assert pump(spec, store).handled == 0
    assert store.claim_due(datetime.now(timezone.utc), 100, 10) == {}
    assert systems.tracker.discrepancies("orders")[0]["times_seen"] == 1


def test_counterpart_with_other_values_is_reported_with_both_times(systems):
    spec = systems.spec()
    store = wiring.expectation_store(spec, systems.tracker.engine)
    systems.write("a", "INSERT INTO orders VALUES (3, 30.00, 'paid'), (4, 40.00, 'paid')")
    systems.write("b", "INSERT INTO orders VALUES (3, 31.00, 'paid'), (4, 40.000, 'paid')")
    consumed = pump(spec, store)
    assert consumed.opened == 2 and consumed.closed == 1  # key 4 matched; key 3 stays open
    settle_when_due(systems, spec, store)
    found = reported(systems)
    assert list(found) == [("3", NOT_PROPAGATED, "amount")]
    detail = json.loads(found[("3", NOT_PROPAGATED, "amount")]["detail"])
    assert detail["was"] == "field_mismatch" and detail["counterpart_at"] is not None
    assert datetime.fromisoformat(detail["counterpart_at"]) >= datetime.fromisoformat(detail["event_at"])


def test_late_counterpart_reports_nothing_after_the_recheck(systems):
    """The window passes, but the counterpart lands before the re-check reads B: the key-scoped
    comparison finds both sides equal and closes the key without a report."""
    spec = systems.spec()
    store = wiring.expectation_store(spec, systems.tracker.engine)
    systems.write("a", "INSERT INTO orders VALUES (5, 50.00, 'paid')")
    assert pump(spec, store, sides="a").opened == 1
    wait_for(lambda: store.lag(datetime.now(timezone.utc)).overdue == 1)
    systems.write("b", "INSERT INTO orders VALUES (5, 50.00, 'paid')")  # late
    settle_when_due(systems, spec, store)
    assert store.lag(datetime.now(timezone.utc)).open == 0
    assert reported(systems) == {}
    # B's late event then waits for a repeat on A that never comes; its re-check finds no fault
    assert pump(spec, store, sides="b").opened == 1
    settle_when_due(systems, spec, store)
    assert store.lag(datetime.now(timezone.utc)).open == 0 and reported(systems) == {}


def test_deletes_expect_a_delete_on_the_other_side(systems):
    spec = systems.spec()
    store = wiring.expectation_store(spec, systems.tracker.engine)
    for side in "ab":
        systems.write(side, "INSERT INTO orders VALUES (8, 8.00, 'paid'), (9, 9.00, 'paid')")
    pump(spec, store)
    systems.write("a", "DELETE FROM orders WHERE id IN (8, 9)")
    systems.write("b", "DELETE FROM orders WHERE id = 8")  # 9's delete never reaches B
    consumed = pump(spec, store)
    assert consumed.opened == 2 and consumed.closed == 1
    settle_when_due(systems, spec, store)
    found = reported(systems)
    assert list(found) == [("9", NOT_PROPAGATED, None)]
    detail = json.loads(found[("9", NOT_PROPAGATED, None)]["detail"])
    assert detail["op"] == "delete" and detail["was"] == "only_in_b"


def test_restart_in_the_middle_loses_nothing_and_counts_nothing_twice(systems):
    spec = systems.spec()
    store = wiring.expectation_store(spec, systems.tracker.engine)
    for i in range(10):  # ten transactions on A; B repeats all but key 104
        systems.write("a", "INSERT INTO orders VALUES (:id, :amount, 'paid')", id=100 + i, amount=i)
        if i != 4:
            systems.write("b", "INSERT INTO orders VALUES (:id, :amount, 'paid')", id=100 + i, amount=i)

    class Crash(Exception):
        pass

    # 1. The CDC reader crashes after publishing 3 transactions of A, before confirming the third.
    with wiring.shared_log(spec) as log:
        reader = wiring.cdc_reader(spec, "a")
        published = []

        def publish_then_crash(events):
            log.publish(events)
            published.extend(events)
            if len(published) == 3:
                raise Crash()

        with pytest.raises(Crash):
            reader.read(publish_then_crash, idle_timeout=0.5)
        # 2. It restarts: the unconfirmed transaction comes again; the stream drops the duplicate.
        wiring.forward_cdc(spec, log, "a", idle_timeout=0.5)
        wiring.forward_cdc(spec, log, "b", idle_timeout=0.5)
        assert log._run(log._js.stream_info(log.stream)).state.messages == 19

    # 3. The consumer applies a batch, then dies before acknowledging it: it is delivered again.
    with wiring.shared_log(spec) as log:
        first = log.fetch(5, timeout=2)
        assert len(first) == 5
        store.apply(log.source, first)
    totals = {"handled": 0, "skipped": 0}

    def consume_all():  # the 5 unacknowledged come back once their ack_wait (1 s) has passed
        consumed = wiring.consume(log, store, max_events=100, timeout=0.5)
        totals["handled"] += consumed.handled
        totals["skipped"] += consumed.skipped
        return totals["handled"] + totals["skipped"] >= 19

    with wiring.shared_log(spec) as log:
        wait_for(consume_all, timeout=30)
        assert log.pending().unacknowledged == 0
    assert totals == {"handled": 14, "skipped": 5}  # the 5 already applied are not applied twice
    assert store.lag(datetime.now(timezone.utc)).open == 1
    assert list(store.expectations([str(100 + i) for i in range(10)])) == ["104"]
    settle_when_due(systems, spec, store)
    assert list(reported(systems)) == [("104", NOT_PROPAGATED, None)]


def test_store_skips_positions_it_has_handled(tracker_url):
    """Idempotency by position, on both tracker databases: a redelivered batch changes nothing."""
    engine = Tracker(tracker_url).engine
    from recon_pipelines.streams.expectations import ExpectationStore

    store = ExpectationStore(engine, "r", window=60)
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    events = [ChangeEvent("a", "1", "upsert", at, {"x": "1"}, "001"), ChangeEvent("b", "1", "upsert", at, {"x": "2"}, "002"),
              ChangeEvent("a", "2", "upsert", at, {"x": "1"}, "003")]
    first = store.apply("s", events)
    again = store.apply("s", events)
    assert (first.handled, first.opened, again.handled, again.skipped) == (3, 2, 0, 3)
    open_ = store.expectations(["1", "2"])
    assert open_["1"].counterpart_at == at and open_["1"].waiting_for == "b" and open_["2"].due_at > at
    assert store.apply("s", [ChangeEvent("b", "1", "upsert", at, {"x": "1"}, "004")]).closed == 1


def test_severity_rules_can_name_not_propagated_and_rules_for_the_original_kind_still_apply(tmp_path):
    """Key 3's amounts differ (was a field_mismatch): the rule naming not_propagated rates it
    critical. Key 2 never reached B (was only_in_a): that rule's field does not match, and the
    rule for only_in_a rates it, as it did before the relabelling."""
    for side, rows in (("a", "id,amount\n1,10\n2,20\n3,30\n"), ("b", "id,amount\n1,10\n3,31\n")):
        (tmp_path / f"{side}.csv").write_text(rows)
    spec = parse_spec({
        "name": "orders", "key": "id", "fields": {"amount": {"compare": "numeric"}},
        "source_a": {"type": "file", "path": str(tmp_path / "a.csv")},
        "source_b": {"type": "file", "path": str(tmp_path / "b.csv")},
        "severity": {"default": "info", "rules": [{"kind": "not_propagated", "field": "amount", "tier": "critical"},
                                                  {"kind": "only_in_a", "tier": "warning"}]},
        "change_stream": {"stream": "UNUSED", "window": "1s"},  # no server: the store is the tracker's
    })
    tracker = Tracker(f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    store = wiring.expectation_store(spec, tracker.engine)
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    store.apply("a", [ChangeEvent("a", key, "upsert", at, {"amount": value}, f"00{key}") for key, value in (("2", "20"), ("3", "30"))])

    recheck_expired(spec, tracker, store, ["2", "3"], tmp_path / "runs", run_id="recheck", as_of=at.replace(hour=1))

    found = {(d["key"], d["kind"]): (d["severity"], json.loads(d["detail"])["was"]) for d in tracker.discrepancies("orders")}
    assert found == {("2", NOT_PROPAGATED): ("warning", "only_in_a"), ("3", NOT_PROPAGATED): ("critical", "field_mismatch")}


def test_shared_log_authenticates_with_a_token_from_the_environment(tmp_path, monkeypatch):
    """A NATS server of the test's own that requires a token: refused without it (the error
    names the server, not the token), accepted with token_env."""
    import shutil
    import socket
    import subprocess

    from recon_pipelines.streams.jetstream import SharedLog, StreamError

    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not shutil.os.path.exists(server):
        from recon_pipelines_tests.stream_support import unavailable

        unavailable("no nats-server binary")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([server, "-a", "127.0.0.1", "-p", str(port), "--auth", "s3cret-token", "-js",
                                "-sd", str(tmp_path / "js")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(up, timeout=20)
        url = f"nats://127.0.0.1:{port}"
        with pytest.raises(StreamError, match="cannot reach NATS") as refused:
            SharedLog(url, "S", "recon_test.s", durable="d", timeout=3).connect()
        assert "s3cret" not in str(refused.value)
        monkeypatch.setenv("RECON_TEST_NATS_TOKEN", "s3cret-token")
        with SharedLog(url, "S", "recon_test.s", durable="d", token_env="RECON_TEST_NATS_TOKEN", timeout=5) as log:
            log.create_stream()
            at = datetime.now(timezone.utc)
            log.publish([ChangeEvent("a", "1", "upsert", at, {"x": "1"}, "p1")])
            assert [e.key for e in wait_for(lambda: log.fetch(10, timeout=1))] == ["1"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_message_that_is_not_an_event_is_set_aside_with_one_line(tmp_path):
    nats_reachable()
    from recon_pipelines.streams.jetstream import SharedLog

    stream = unique("RECON_TEST")
    with SharedLog("nats://127.0.0.1:4222", stream, f"recon_test.{stream}", durable="d") as log:
        log.create_stream()
        try:
            log._run(log._js.publish(f"recon_test.{stream}.a", b'{"side": "a", "key": 1}'))  # no op, no time
            log.publish([ChangeEvent("b", "2", "delete", datetime.now(timezone.utc), {}, "p2")])
            events = wait_for(lambda: log.fetch(10, timeout=1))
            assert [(e.side, e.key, e.op) for e in events] == [("b", "2", "delete")]
            assert len(log.rejected) == 1 and log.rejected[0].startswith(f"stream {stream} message 1: change event:")
            log.ack(events)
            assert log.pending().unacknowledged == 0 and log.pending().not_delivered == 0  # terminated, not redelivered
        finally:
            log.delete_stream()


def test_cdc_needs_a_sql_table_source(tmp_path):
    from recon_pipelines.spec import SpecError

    with pytest.raises(SpecError, match="change_stream.cdc.b: side B must be a sql source"):
        parse_spec({
            "name": "orders", "key": "id", "fields": {"amount": {"compare": "numeric"}},
            "source_a": {"type": "sql", "url": "postgresql://x@127.0.0.1/db", "table": "orders"},
            "source_b": {"type": "file", "path": str(tmp_path / "b.csv")},
            "change_stream": {"stream": "S", "window": "1s",
                              "cdc": {"b": {"table": "orders", "slot": "s_b", "publication": "p"}}},
        })


def test_recon_streams_forward_publishes_what_was_committed(systems, tmp_path):
    """The forwarding process a deployment runs: `recon streams forward SPEC --once`."""
    import yaml
    from click.testing import CliRunner

    from recon_pipelines.cli import main as recon

    spec_file = tmp_path / "orders.yaml"
    spec_file.write_text(yaml.safe_dump(systems.spec_dict()))
    systems.write("a", "INSERT INTO orders VALUES (7, 70.00, 'paid')")
    result = CliRunner().invoke(recon, ["streams", "forward", str(spec_file), "--side", "a", "--once", "--idle", "0.5"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"orders: side a: 1 change(s) published to {systems.stream}"]
    spec = systems.spec()
    store = wiring.expectation_store(spec, systems.tracker.engine)
    with wiring.shared_log(spec) as log:
        consumed = wiring.consume(log, store, max_events=100, timeout=0.5)
    assert (consumed.handled, consumed.opened) == (1, 1)  # key 7 now waits for its counterpart in B
    again = CliRunner().invoke(recon, ["streams", "forward", str(spec_file), "--once", "--idle", "0.5"])
    assert again.exit_code == 0 and again.output == ""  # confirmed: nothing is forwarded twice
    uncaptured = yaml.safe_dump({**systems.spec_dict(), "change_stream": {"stream": systems.stream, "window": "1s"}})
    spec_file.write_text(uncaptured)
    refused = CliRunner().invoke(recon, ["streams", "forward", str(spec_file), "--once"])
    assert refused.exit_code == 2 and "change_stream.cdc: the spec captures no side" in refused.output
