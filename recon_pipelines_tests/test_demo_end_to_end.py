"""The demo as a newcomer meets it: the code location loads, materializing each reconciliation
shows numbers equal to the generator's ground truth, and `recon run` agrees with Dagster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from recon_pipelines.cli import main as recon
from recon_pipelines.dagster_defs import build_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.demo import DEMO_DATA_ENV, DEMO_SPECS_DIR, generate_demo
from recon_pipelines.tracker import Tracker

RECONCILIATIONS = ("crm_vs_billing", "billing_vs_warehouse")
WEEK = {"dagster/asset_partition_range_start": "2026-11-13", "dagster/asset_partition_range_end": "2026-11-19"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    truth = generate_demo(folder / "data")
    patch = pytest.MonkeyPatch()
    patch.setenv(DEMO_DATA_ENV, str(folder / "data"))
    recon_resource = ReconResource(storage_dir=str(folder / "storage"), tracker_url=f"sqlite:///{folder / 'tracker.sqlite'}")
    defs = build_definitions(DEMO_SPECS_DIR, recon=recon_resource)
    results = {}
    with dg.instance_for_test() as instance:
        for name in RECONCILIATIONS:
            # What the README's tour does: backfill the generated week from the UI (one run for the range).
            result = defs.resolve_job_def(f"reconcile_{name}").execute_in_process(instance=instance, tags=WEEK)
            assert result.success
            results[name] = {
                e.materialization.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()
            }
    yield folder, truth, results, recon_resource
    patch.undo()


@pytest.mark.parametrize("name", RECONCILIATIONS)
def test_ui_numbers_match_the_ground_truth(demo, name):
    _, truth, results, _ = demo
    expected = truth["reconciliations"][name]
    meta = results[name]["discrepancies"]
    assert meta["discrepancies"] == expected["total"]
    assert {k.removeprefix("kind/"): v for k, v in meta.items() if k.startswith("kind/")} == expected["by_kind"]
    mismatches = {k.split("/")[1]: v for k, v in meta.items() if k.startswith("field/") and k.endswith("/mismatches") and v}
    assert mismatches == expected["field_mismatches"]
    severities = {k.removeprefix("severity/"): v for k, v in meta.items() if k.startswith("severity/") and v}
    assert severities == expected["by_severity"]
    assert results[name]["tracker_state"]["new"] == expected["total"]


@pytest.mark.parametrize("name", RECONCILIATIONS)
def test_tracker_holds_exactly_the_seeded_discrepancies(demo, name):
    _, truth, _, recon_resource = demo
    expected = {(d["kind"], d["key"], d.get("field")) for d in truth["reconciliations"][name]["discrepancies"]}
    stored = {(r["kind"], r["key"], r["field"]) for r in Tracker(recon_resource.tracker_url).discrepancies(name)}
    assert stored == expected


@pytest.mark.parametrize("name", RECONCILIATIONS)
def test_recon_run_prints_what_dagster_stored_and_exits_1(demo, name, tmp_path):
    folder, _, _, _ = demo
    out = tmp_path / "found.jsonl"
    result = CliRunner().invoke(recon, ["run", str(DEMO_SPECS_DIR / f"{name}.yaml"), "--format", "json", "-o", str(out)],
                                env={DEMO_DATA_ENV: str(folder / "data")})
    assert result.exit_code == 1, result.output
    cli_rows = [json.loads(line) for line in out.read_text().splitlines()]
    stored = pq.read_table(folder / "storage" / name / "2026-11-13..2026-11-19" / "discrepancies.parquet").to_pylist()
    columns = ("id", "kind", "key", "field", "value_a", "value_b", "severity")
    assert sorted(tuple(r[c] for c in columns) for r in cli_rows) == sorted(tuple(r[c] for c in columns) for r in stored)


def test_deep_scan_finds_the_same_as_the_week(demo):
    """The unpartitioned deep scan over everything agrees with the week's backfill."""
    folder, truth, _, recon_resource = demo
    defs = build_definitions(DEMO_SPECS_DIR, recon=recon_resource)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("recheck_crm_vs_billing").execute_in_process(
            instance=instance, run_config=recheck_config_for("crm_vs_billing", full=True))
    assert result.success
    full = pq.read_table(folder / "storage" / "crm_vs_billing" / "full" / "discrepancies.parquet")
    expected = {(d["kind"], d["key"], d.get("field")) for d in truth["reconciliations"]["crm_vs_billing"]["discrepancies"]}
    assert {(r["kind"], r["key"], r["field"]) for r in full.to_pylist()} == expected


def recheck_config_for(name: str, **config) -> dict:
    from recon_pipelines.dagster_defs.runs import recheck_config
    from recon_pipelines.spec import load_spec

    return recheck_config(load_spec(DEMO_SPECS_DIR / f"{name}.yaml"), **config)


def test_the_code_location_validates(tmp_path):
    """What `make demo` loads: `dagster definitions validate` on the module, demo data generated on load."""
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    env.pop(DEMO_DATA_ENV, None)
    env.pop("RECON_SPEC_DIR", None)
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run([str(dagster), "definitions", "validate", "-m", "recon_pipelines.definitions"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr
    assert (tmp_path / "demo_data" / "crm.sqlite").exists()
