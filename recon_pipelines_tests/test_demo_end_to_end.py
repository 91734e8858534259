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
            results[name] = materializations_by_day(result)
            results[name]["checks"] = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    yield folder, truth, results, recon_resource
    patch.undo()


def materializations_by_day(result) -> dict[str, dict[str, dict]]:
    """step -> partition -> metadata values."""
    out: dict[str, dict[str, dict]] = {}
    for event in result.get_asset_materialization_events():
        m = event.materialization
        out.setdefault(m.asset_key.path[-1], {})[m.partition] = {k: v.value for k, v in m.metadata.items()}
    return out


DAYS = [f"2026-11-{d}" for d in range(13, 20)]


@pytest.mark.parametrize("name", RECONCILIATIONS)
def test_ui_numbers_match_the_ground_truth(demo, name):
    """Each day shows its own figures; together the days hold exactly the seeded discrepancies."""
    folder, truth, results, _ = demo
    expected = truth["reconciliations"][name]
    by_day = results[name]["discrepancies"]
    assert sorted(by_day) == DAYS
    seen: dict[str, dict] = {}
    for day in DAYS:
        rows = pq.read_table(folder / "storage" / name / day / "discrepancies.parquet").to_pylist()
        assert by_day[day]["discrepancies"] == len(rows)
        assert sum(v for k, v in by_day[day].items() if k.startswith("severity/")) == len(rows)
        assert by_day[day]["scope"] == day and by_day[day]["backfill_range"] == "2026-11-13..2026-11-19"
        seen.update({r["id"]: r for r in rows})
    rows = list(seen.values())
    assert len(rows) == expected["total"]
    assert _counts(rows, "kind") == expected["by_kind"]
    assert _counts([r for r in rows if r["field"]], "field") == expected["field_mismatches"]
    assert _counts(rows, "severity") == expected["by_severity"]
    assert sum(results[name]["tracker_state"][day]["new"] for day in DAYS) >= expected["total"]


def _counts(rows: list[dict], column: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[column]] = counts.get(row[column], 0) + 1
    return counts


def test_each_day_of_the_backfill_shows_what_that_day_alone_shows(demo, tmp_path):
    """The single-run backfill of the week gives every partition the figures of a run of that day
    alone (not the week's total on every day); only the tracker-wide counts differ."""
    folder, _, results, _ = demo
    tracker_wide = ("open", "status/", "open_severity/")
    defs_alone = {}
    for day in DAYS:
        recon_alone = ReconResource(storage_dir=str(tmp_path / day), tracker_url=f"sqlite:///{tmp_path / f'{day}.sqlite'}")
        defs_alone[day] = build_definitions(DEMO_SPECS_DIR, recon=recon_alone)
    for day in DAYS:
        with dg.instance_for_test() as instance:
            alone = defs_alone[day].resolve_job_def("reconcile_crm_vs_billing").execute_in_process(
                instance=instance, partition_key=day)
        for step, by_partition in materializations_by_day(alone).items():
            if step not in ("snapshot_a", "snapshot_b", "matched_pairs", "discrepancies", "tracker_state"):
                continue
            figures = {k: v for k, v in by_partition[day].items()
                       if isinstance(v, int | float) and not k.startswith(tracker_wide)}
            week = results["crm_vs_billing"][step][day]
            assert figures == {k: week[k] for k in figures}, (day, step)
    # Not the week's total copied onto each day: the days differ, and none shows all 50.
    per_day = [results["crm_vs_billing"]["discrepancies"][day]["discrepancies"] for day in DAYS]
    assert len(set(per_day)) > 1 and max(per_day) < 50


def test_open_critical_discrepancies_turn_the_check_red(demo):
    checks = demo[2]["crm_vs_billing"]["checks"]
    red = checks[("tracker_state", "open_discrepancies")]
    assert not red.passed and red.severity == dg.AssetCheckSeverity.ERROR
    assert red.metadata["open_critical"].value == 13
    assert checks[("snapshot_a", "schema_unchanged")].passed


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


def test_the_demo_shows_a_failing_warn_expectation(demo):
    """billing_vs_warehouse's billing side expects emails without stray blanks; the generated
    export has a few, so the UI shows the check failed (WARN) and the comparison still ran."""
    _, _, results, _ = demo
    check = results["billing_vs_warehouse"]["checks"][("snapshot_a", "expect_email_without_blanks")]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["failing_rows"].value >= 1
    assert results["billing_vs_warehouse"]["checks"][("snapshot_a", "expect_row_count")].passed is True
