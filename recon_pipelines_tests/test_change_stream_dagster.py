"""The change_stream_<name> sensor on a real JetStream stream: consumes events, requests one
re-check per batch of expired keys with a stable run key, records the lag, and the re-check
run reports the key as not_propagated and closes it."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg
import pytest

from recon_pipelines.dagster_defs.definitions import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.names import recheck_op_name
from recon_pipelines.spec import parse_spec
from recon_pipelines.streams import wiring
from recon_pipelines.streams.events import ChangeEvent
from recon_pipelines.streams.settle import NOT_PROPAGATED
from recon_pipelines_tests.stream_support import nats_reachable, unique, wait_for


@pytest.fixture
def setup(tmp_path):
    nats_reachable()
    for side, rows in (("a", "id,amount\n1,10\n2,20\n"), ("b", "id,amount\n1,10\n")):
        (tmp_path / f"{side}.csv").write_text(rows)
    stream = unique("RECON_TEST")
    spec = parse_spec({
        "name": "orders", "key": "id", "fields": {"amount": {"compare": "numeric"}},
        "source_a": {"type": "file", "path": str(tmp_path / "a.csv")},
        "source_b": {"type": "file", "path": str(tmp_path / "b.csv")},
        "change_stream": {"stream": stream, "subject_prefix": f"recon_test.{stream}", "window": "1s"},
    })
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    with wiring.shared_log(spec) as log:
        log.create_stream()
        try:
            with dg.instance_for_test() as instance:
                yield spec, recon, instance, log
        finally:
            log.delete_stream()


def test_sensor_requests_one_recheck_per_expired_batch_and_the_run_reports_it(setup):
    spec, recon, instance, log = setup
    now = datetime.now(timezone.utc)
    log.publish([ChangeEvent("a", "1", "upsert", now, {"amount": "10"}, "1"),
                 ChangeEvent("a", "2", "upsert", now, {"amount": "20"}, "2"),
                 ChangeEvent("b", "1", "upsert", now, {"amount": "10"}, "1")])
    defs = build_definitions(specs=[spec], recon=recon)
    sensor = defs.get_sensor_def("change_stream_orders")

    def tick():
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources={"recon": recon}))

    first = tick()
    observed = first.asset_events[0]
    assert observed.asset_key == dg.AssetKey(["orders", "discrepancies"])
    assert observed.metadata["events_consumed"].value == 3 and observed.metadata["open_expectations"].value == 1

    due = wait_for(lambda: tick().run_requests, timeout=30)  # once key 2's window of 1 s has passed
    assert [r.run_config["ops"][recheck_op_name("orders")]["config"]["keys"] for r in due] == [["2"]]
    assert {r.run_key for r in tick().run_requests} == {due[0].run_key}  # the same batch, the same run key

    job = defs.resolve_job_def("recheck_orders")
    result = job.execute_in_process(instance=instance, run_config=due[0].run_config)
    assert result.success
    found = recon.tracker().discrepancies("orders")
    assert [(d["key"], d["kind"]) for d in found] == [("2", NOT_PROPAGATED)]
    after = tick()
    assert after.run_requests == [] and after.asset_events[0].metadata["open_expectations"].value == 0
    assert after.asset_events[0].metadata["events_pending"].value == 0


def test_sensor_skips_with_a_reason_when_nats_is_unreachable(tmp_path):
    spec = parse_spec({
        "name": "orders", "key": "id", "fields": {"amount": {"compare": "numeric"}},
        "source_a": {"type": "file", "path": str(tmp_path / "a.csv")},
        "source_b": {"type": "file", "path": str(tmp_path / "b.csv")},
        "change_stream": {"stream": "S", "url": "nats://user:secret@127.0.0.1:1", "window": "1s"},
    })
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    defs = build_definitions(specs=[spec], recon=recon)
    with dg.instance_for_test() as instance:
        result = defs.get_sensor_def("change_stream_orders").evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, resources={"recon": recon}))
    assert result.run_requests == [] and "cannot reach NATS" in result.skip_message
    assert "secret" not in result.skip_message
