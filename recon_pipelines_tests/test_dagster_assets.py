"""The asset graph, materialized in process with a real (temporary) Dagster instance."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.assets import STEPS, sample_markdown
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.engine import DISCREPANCY_SCHEMA
from recon_pipelines.spec import parse_spec
from recon_pipelines.tracker import Tracker

SPEC = {
    "name": "orders",
    "source_a": {"type": "file", "path": "a.parquet", "name": "shop"},
    "source_b": {"type": "file", "path": "b.csv", "name": "ledger"},
    "key": [{"name": "order_id", "b": "ref"}],
    "fields": {"amount": {"compare": "numeric", "abs_tol": 0.01, "b": "total"}, "status": {"compare": "string", "normalize": ["lower"]}},
    "severity": {"rules": [{"kind": "only_in_a", "tier": "critical"}]},
}


def write_sides(folder, b_rows: str) -> None:
    pq.write_table(pa.table({"order_id": [1, 2, 3, 4], "amount": [10.0, 20.0, 30.0, 40.0],
                             "status": ["paid", "paid", "open", "open"]}), folder / "a.parquet")
    (folder / "b.csv").write_text("ref,total,status\n" + b_rows)


@pytest.fixture
def setup(tmp_path):
    write_sides(tmp_path, "1,10.00,PAID\n2,20.50,paid\n3,30.004,open\n9,1,open\n")
    spec = parse_spec(SPEC, tmp_path / "orders.yaml")
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    return tmp_path, build_definitions(specs=[spec], recon=recon), recon


def materializations(result) -> dict[str, dict]:
    return {
        e.materialization.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def test_definitions_load_and_show_the_five_steps(setup):
    _, defs, _ = setup
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {f"orders/{step}" for step in STEPS}
    assert graph.get(dg.AssetKey(["orders", "matched_pairs"])).parent_keys == {
        dg.AssetKey(["orders", "snapshot_a"]), dg.AssetKey(["orders", "snapshot_b"])}
    assert graph.get(dg.AssetKey(["orders", "tracker_state"])).parent_keys == {dg.AssetKey(["orders", "discrepancies"])}
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {"orders"}


def test_materializing_finds_the_discrepancies_and_records_metadata(setup):
    tmp_path, defs, recon = setup
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance)
    assert result.success
    meta = materializations(result)
    assert meta["snapshot_a"]["rows"] == 4 and meta["snapshot_b"]["rows"] == 4
    assert (meta["matched_pairs"]["matched"], meta["matched_pairs"]["only_in_a"], meta["matched_pairs"]["only_in_b"]) == (3, 1, 1)
    assert meta["discrepancies"]["discrepancies"] == 3
    assert meta["discrepancies"]["field/amount/mismatches"] == 1
    # 30.004 vs 30.0 stayed within tolerance: shown as drift, not as a discrepancy.
    assert meta["discrepancies"]["field/amount/within_tolerance"] == 2
    assert meta["discrepancies"]["field/amount/max_within_tolerance"] == pytest.approx(0.004)
    assert meta["discrepancies"]["severity/critical"] == 1
    assert "| critical | only\\_in\\_a | 4 |" in meta["discrepancies"]["sample"]
    assert (meta["tracker_state"]["new"], meta["tracker_state"]["open"]) == (3, 3)
    stored = pq.read_table(tmp_path / "store" / "orders" / "full" / "discrepancies.parquet")
    assert stored.schema == DISCREPANCY_SCHEMA
    tracker = Tracker(recon.tracker_url)
    assert {r["id"] for r in tracker.discrepancies("orders")} == set(stored.column("id").to_pylist())


def test_second_run_updates_instead_of_reporting_again(setup):
    tmp_path, defs, recon = setup
    job = defs.resolve_job_def("reconcile_orders")
    with dg.instance_for_test() as instance:
        job.execute_in_process(instance=instance)
        write_sides(tmp_path, "1,10.00,PAID\n2,20.00,paid\n3,30.004,open\n9,1,open\n")  # amount of order 2 fixed
        second = materializations(job.execute_in_process(instance=instance))
    assert (second["tracker_state"]["new"], second["tracker_state"]["seen_again"], second["tracker_state"]["resolved"]) == (0, 2, 1)


def test_snapshot_checks_flag_a_bad_side_before_comparison(tmp_path):
    write_sides(tmp_path, "1,10,paid\n1,11,paid\n")  # duplicated key in B
    (tmp_path / "b.csv").write_text("ref,wrong_total,status\n1,10,paid\n1,11,paid\n")
    spec = parse_spec(SPEC, tmp_path / "orders.yaml")
    defs = build_definitions(specs=[spec], recon=ReconResource(storage_dir=str(tmp_path / "s"),
                                                                tracker_url=f"sqlite:///{tmp_path / 't.sqlite'}"))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance, raise_on_error=False)
    checks = {(e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks[("snapshot_b", "required_columns")] is False
    assert checks[("snapshot_b", "key_unique")] is False
    assert checks[("snapshot_a", "required_columns")] is True
    # The blocking check stopped the comparison: nothing downstream was materialized.
    assert set(materializations(result)) == {"snapshot_a", "snapshot_b"}


def test_sample_markdown_escapes_values_from_the_data():
    table = pa.Table.from_pylist(
        [{"id": "x", "reconciliation": "r", "kind": "field_mismatch", "key": "1", "field": "name",
          "value_a": "a | b [link](http://evil)", "value_b": "<!channel>", "severity": "warning", "reason": "value_differs"}],
        schema=DISCREPANCY_SCHEMA,
    )
    text = sample_markdown(table)
    assert "a \\| b \\[link\\](http://evil)" in text and "\\<!channel\\>" in text


def test_operator_action_job_goes_through_the_tracker(setup):
    _, defs, recon = setup
    with dg.instance_for_test() as instance:
        defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance)
        tracker = Tracker(recon.tracker_url)
        target = tracker.discrepancies("orders", status="new")[0]["id"]
        config = {"ops": {"apply_discrepancy_action": {"config": {
            "ids": [target], "action": "mute", "on_behalf_of": "ana@finance", "note": "known rounding", "mute_for": "7d"}}}}
        result = defs.resolve_job_def("discrepancy_action").execute_in_process(instance=instance, run_config=config)
        assert result.success
        refused = defs.resolve_job_def("discrepancy_action").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"ops": {"apply_discrepancy_action": {"config": {"ids": [target], "action": "resolve",
                                                                        "note": "x"}}}})
        assert not refused.success
    assert tracker.get(target)["status"] == "muted"
    last = tracker.history(target)[-1]
    # the actor is what launched the run (OSS: nobody authenticated), the typed name only a note
    assert (last["action"], last["actor"], last["run_id"]) == ("mute", "dagster-ui (unauthenticated)", result.run_id)
    assert last["note"].startswith("on behalf of ana@finance: muted until ") and "known rounding" in last["note"]
