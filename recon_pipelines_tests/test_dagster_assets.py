"""The asset graph, materialized in process with a real (temporary) Dagster instance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.assets import STEPS
from recon_pipelines.dagster_defs.result_checks import open_discrepancies_check
from recon_pipelines.dagster_defs.metadata import shown
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
    # The table to read, most severe first, with the ids the discrepancy_action job asks for.
    first = meta["discrepancies"]["most_severe"].records[0].data
    assert (first["severity"], first["kind"], first["key"], first["status"]) == ("critical", "only_in_a", "4", "new")
    assert len(first["id"]) == 24
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


@pytest.mark.parametrize("raw, expected", [
    ("a\r\nb", "a\\r\\nb"),          # a carriage return no longer splits a row
    ("x | y", "x \\| y"),                # nor a pipe a cell
    ("bell\x07\ttab", "bell\\x07\\ttab"),
    ("line\u2028sep", "line\\u2028sep"),
    (None, "∅"),
    ("é ✓ <b>", "é ✓ <b>"),            # printable text is shown as it is
])
def test_shown_values_stay_on_one_line(raw, expected):
    assert shown(raw) == expected


def test_long_values_are_cut():
    assert shown("x" * 500) == "x" * 199 + "…"
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



def test_field_figures_separate_agreement_drift_and_mismatch(setup):
    _, defs, _ = setup
    with dg.instance_for_test() as instance:
        meta = materializations(defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance))
    d = meta["discrepancies"]
    # 3 matched pairs: amount differs on order 2 only; 'paid' vs 'PAID' agrees after lower (drift, not a mapping).
    assert (d["field/amount/agree"], d["field/amount/mismatches"]) == (2, 1)
    assert (d["field/status/agree"], d["field/status/within_tolerance"], d["field/status/mapped"]) == (3, 1, 0)
    by_field = {r.data["field"]: r.data for r in d["by_field"].records}
    assert by_field["amount"]["mismatches"] == 1 and by_field["status"]["within_tolerance"] == 1
    by_kind = {r.data["kind"]: r.data for r in d["by_kind"].records}
    assert by_kind["only_in_a"]["critical"] == 1 and by_kind["only_in_b"]["total"] == 1


def check_results(result) -> dict:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


def test_open_critical_discrepancies_fail_the_result_check_until_muted(setup):
    _, defs, recon = setup
    job = defs.resolve_job_def("reconcile_orders")
    with dg.instance_for_test() as instance:
        check = check_results(job.execute_in_process(instance=instance))[("tracker_state", "open_discrepancies")]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["open_critical"].value == 1
        tracker = Tracker(recon.tracker_url)
        (critical,) = tracker.discrepancies("orders", severity="critical")
        tracker.act([critical["id"]], "mute", actor="ana", note="known", until=datetime.now(timezone.utc) + timedelta(days=7))
        again = check_results(job.execute_in_process(instance=instance))[("tracker_state", "open_discrepancies")]
    assert again.passed


@pytest.mark.parametrize("open_counts, expect, outcome", [
    ({"critical": 1}, {}, (False, dg.AssetCheckSeverity.ERROR)),
    ({"critical": 1}, {"max_open_critical": 1}, (True, None)),
    ({"warning": 51}, {"max_open_warning": 50}, (False, dg.AssetCheckSeverity.WARN)),
    ({"warning": 50, "info": 900}, {"max_open_warning": 50}, (True, None)),
    ({"warning": 5000}, {}, (True, None)),  # no warning limit unless the spec sets one
])
def test_open_discrepancies_check_follows_the_spec_expectations(tmp_path, open_counts, expect, outcome):
    spec = parse_spec({**SPEC, "expect": expect}, tmp_path / "orders.yaml")
    result = open_discrepancies_check(spec, open_counts)
    assert result.passed == outcome[0]
    if not result.passed:
        assert result.severity == outcome[1]


def test_mismatch_rate_check_warns_past_the_spec_limit(tmp_path):
    write_sides(tmp_path, "1,10.00,PAID\n2,20.50,paid\n3,30.004,open\n9,1,open\n")
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 'tracker.sqlite'}")
    results = {}
    for limit in (0.5, 0.9):
        spec = parse_spec({**SPEC, "expect": {"max_mismatch_rate": limit}}, tmp_path / "orders.yaml")
        with dg.instance_for_test() as instance:
            result = build_definitions(specs=[spec], recon=recon).resolve_job_def("reconcile_orders").execute_in_process(instance=instance)
        results[limit] = check_results(result)[("discrepancies", "mismatch_rate")]
    # 5 records compared (3 pairs, 1 only in A, 1 only in B), 3 of them with a discrepancy: 0.6.
    assert results[0.5].metadata["mismatch_rate"].value == pytest.approx(0.6)
    assert not results[0.5].passed and results[0.5].severity == dg.AssetCheckSeverity.WARN
    assert results[0.9].passed


def test_schema_check_fails_when_a_column_changes_type_or_disappears(setup):
    """Compared with the schema the tracker recorded at the previous run (schema_diff.py)."""
    tmp_path, defs, _ = setup
    job = defs.resolve_job_def("reconcile_orders")
    a = pq.read_table(tmp_path / "a.parquet")
    with dg.instance_for_test() as instance:
        first = check_results(job.execute_in_process(instance=instance))[("snapshot_a", "schema_unchanged")]
        pq.write_table(a.set_column(1, "amount", pa.array(["10", "20", "30", "40"])), tmp_path / "a.parquet")
        retyped = job.execute_in_process(instance=instance)
        pq.write_table(a.drop_columns(["status"]), tmp_path / "a.parquet")
        gone = check_results(job.execute_in_process(instance=instance, raise_on_error=False))[("snapshot_a", "schema_unchanged")]
    assert first.passed and first.metadata["compared_with"].value == "nothing (first run)"
    retyped_check = check_results(retyped)[("snapshot_a", "schema_unchanged")]
    assert not retyped_check.passed and retyped_check.severity == dg.AssetCheckSeverity.WARN
    assert retyped_check.metadata["type_changed"].value == 1
    changes = materializations(retyped)["snapshot_a"]["schema_changes"].records
    assert [(r.data["column"], r.data["change"], r.data["before"], r.data["after"]) for r in changes] == [
        ("amount", "type_changed", "DOUBLE", "VARCHAR")]
    assert check_results(retyped)[("snapshot_b", "schema_unchanged")].passed
    assert not gone.passed and gone.metadata["removed"].value == 1 and gone.metadata["type_changed"].value == 1


def test_snapshots_carry_row_count_and_column_schema(setup):
    _, defs, _ = setup
    with dg.instance_for_test() as instance:
        meta = materializations(defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance))
    assert meta["snapshot_b"]["dagster/row_count"] == 4
    assert [c.name for c in meta["snapshot_a"]["dagster/column_schema"].columns] == ["order_id", "amount", "status"]


def test_daily_reconciliations_go_stale_when_they_stop_running(tmp_path):
    incremental = {**SPEC, "source_a": {**SPEC["source_a"], "updated_at": "at"}, "source_b": {**SPEC["source_b"], "updated_at": "at"},
                   "incremental": {"start": "2026-01-01"}}
    graph = build_definitions(specs=[parse_spec(incremental, tmp_path / "orders.yaml")]).resolve_asset_graph()
    policy = graph.get(dg.AssetKey(["orders", "tracker_state"])).freshness_policy
    assert policy.fail_window.to_timedelta() > timedelta(days=1)
    on_demand = build_definitions(specs=[parse_spec(SPEC, tmp_path / "orders.yaml")]).resolve_asset_graph()
    assert on_demand.get(dg.AssetKey(["orders", "tracker_state"])).freshness_policy is None
