"""The Dagster key check and the engine agree on what an invalid key is: null, or blank text."""

from __future__ import annotations

import dagster as dg

from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.spec import parse_spec
from recon_pipelines_tests.test_dagster_assets import SPEC, materializations, write_sides


def test_blank_keys_fail_key_not_null_and_count_as_the_engine_counts_them(tmp_path):
    # B: one empty key (NULL in CSV), one of spaces, one of a tab and an NBSP, two good ones.
    write_sides(tmp_path, '1,10.00,paid\n,20.00,paid\n"   ",30.00,open\n"\t\u00a0",40.00,open\n4,40.00,open\n')
    spec = parse_spec(SPEC, tmp_path / "orders.yaml")
    recon = ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=f"sqlite:///{tmp_path / 't.sqlite'}")
    defs = build_definitions(specs=[spec], recon=recon)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("reconcile_orders").execute_in_process(instance=instance)
    checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    b_check = checks[("snapshot_b", "key_not_null")]
    assert b_check.passed is False
    assert b_check.metadata["records_without_key"].value == 3
    assert checks[("snapshot_a", "key_not_null")].passed is True
    # Blank keys are not duplicates of each other: they are invalid, not paired.
    assert checks[("snapshot_b", "key_unique")].passed is True
    pairs = materializations(result)["matched_pairs"]
    assert pairs["invalid_key_rows_b"] == 3 == b_check.metadata["records_without_key"].value
