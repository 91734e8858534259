"""The export guard: a bad export (empty, or far smaller than the last run's) is held as
suspicious instead of resolving and opening everything, until an operator accepts it.

End to end on real trackers (SQLite and PostgreSQL), through ``recon run --track``, the
outbox and a fake Slack; plus the verdict itself on hand-made figures."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from recon_pipelines import pipeline
from recon_pipelines.cli import main as recon
from recon_pipelines.identity import os_user
from recon_pipelines.remediation import outbox
from recon_pipelines.remediation.notifications import held_run_notifications, notification_writer, run_failure_notifications
from recon_pipelines.spec import load_spec
from recon_pipelines.spec.models import GuardSpec
from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.guard import Observation, SideSample, verdict
from recon_pipelines.tracker.schema import events, outbox as outbox_table, runs, staging
from recon_pipelines_tests.remediation_support import deliverer
from recon_pipelines_tests.slack_fake import FakeSlack

CUSTOMERS = 1000
DRIFTED = 100  # customers whose plan differs on the billing side


def run_tracked(spec, tracker, run_id=None):
    """``recon run --track``: the one run path with the tracker and the notification outbox."""
    return pipeline.run(spec, tracker=tracker, run_id=run_id, on_outcome=notification_writer(spec))


def spec_file(folder, guard: dict | None = None):
    raw = {
        "name": "crm_vs_billing",
        "source_a": {"type": "file", "path": "crm.csv", "name": "crm"},
        "source_b": {"type": "file", "path": "billing.csv", "name": "billing"},
        "key": "customer_id",
        "fields": {"plan": "exact"},
        "severity": {"default": "critical"},
        "notifications": {"destinations": {"alerts": {"type": "slack", "channel": "#revenue-alerts"},
                                           "pager": {"type": "log"}}},
        "routing": [{"tier": "critical", "destinations": ["alerts", "pager"]}],
        **({"guard": guard} if guard is not None else {}),
    }
    path = folder / "crm_vs_billing.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def write_crm(folder, ids=range(CUSTOMERS)) -> None:
    (folder / "crm.csv").write_text("customer_id,plan\n" + "".join(f"{i},pro\n" for i in ids))


def write_billing(folder, ids=range(CUSTOMERS), drifted=DRIFTED) -> None:
    (folder / "billing.csv").write_text(
        "customer_id,plan\n" + "".join(f"{i},{'basic' if i < drifted else 'pro'}\n" for i in ids))


@pytest.fixture
def setup(tmp_path, tracker_url):
    write_crm(tmp_path)
    write_billing(tmp_path)
    tracker = Tracker(tracker_url)
    yield tmp_path, tracker
    tracker.engine.dispose()


def open_ids(tracker: Tracker) -> set[str]:
    return {r["id"] for r in tracker.discrepancies("crm_vs_billing", status="open")}


def outbox_rows(tracker: Tracker) -> list[sa.Row]:
    with tracker.engine.connect() as conn:
        return conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id)).all()


def cli(*args: str):
    return CliRunner().invoke(recon, list(args), catch_exceptions=False)


# --------------------------------------------------------------------------- end to end


def test_a_header_only_export_changes_nothing_and_alerts_once(setup, tracker_url):
    folder, tracker = setup
    spec = load_spec(spec_file(folder))
    first = cli("run", str(folder / "crm_vs_billing.yaml"), "--track", "--tracker-url", tracker_url)
    assert first.exit_code == 1 and f"tracker         {DRIFTED} opened, 0 resolved, {DRIFTED} open" in first.output
    before, before_outbox = open_ids(tracker), len(outbox_rows(tracker))

    (folder / "billing.csv").write_text("customer_id,plan\n")  # the bad export: a header, no rows
    result = cli("run", str(folder / "crm_vs_billing.yaml"), "--track", "--tracker-url", tracker_url)

    assert result.exit_code == 2
    run_id = tracker.runs("crm_vs_billing")[-1]["run_id"]
    assert result.stderr.strip() == (f"billing: 0 rows, previous run 1,000: run held as suspicious; "
                                      f"accept with `recon runs accept {run_id}`")
    assert open_ids(tracker) == before  # nothing resolved, nothing opened
    assert tracker.status_counts("crm_vs_billing") == {"new": DRIFTED}
    with tracker.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(events).where(events.c.run_id == run_id)) == 0
    held = tracker.runs("crm_vs_billing")[-1]
    assert (held["outcome"], held["rows_b"], held["new"], held["resolved"]) == ("suspicious", 0, 0, 0)
    assert held["guard_note"] == result.stderr.strip()
    alerts = outbox_rows(tracker)[before_outbox:]
    assert [(r.destination, r.event, r.tier) for r in alerts] == [("alerts", "run_failed", "critical"),
                                                                  ("pager", "run_failed", "critical")]

    with FakeSlack() as slack:
        deliverer(tracker.engine, spec, slack).deliver()
        posts = slack.top_level("#revenue-alerts")
    held_posts = [p for p in posts if "run held as suspicious" in json.dumps(p)]
    assert len(held_posts) == 1 and "billing: 0 rows, previous run 1,000" in json.dumps(held_posts[0])


def test_accepting_applies_the_held_run_with_the_operator_on_record(setup, tracker_url):
    folder, tracker = setup
    path = spec_file(folder)
    run_tracked(load_spec(path), tracker)
    (folder / "billing.csv").write_text("customer_id,plan\n")
    held = run_tracked(load_spec(path), tracker)
    assert held.outcome.held

    listed = cli("runs", "--tracker-url", tracker_url, "list", "--status", "suspicious", "--format", "json")
    assert [json.loads(line)["run_id"] for line in listed.output.splitlines()] == [held.outcome.run_id]
    table = cli("runs", "--tracker-url", tracker_url, "list", "-r", "crm_vs_billing").output.splitlines()
    assert len(table) == 4 and table[2].startswith(f"{held.outcome.run_id}  crm_vs_billing  full   suspicious")
    assert table[3] == f"    held: {held.outcome.held}"

    result = cli("runs", "--tracker-url", tracker_url, "accept", held.outcome.run_id, "--spec", str(path),
                 "--actor", "alice@example.com")
    assert result.exit_code == 0, result.output
    actor = f"{os_user()} (on behalf of alice@example.com)"  # the OS account acts; the claimed name is a note
    assert f"run {held.outcome.run_id} accepted by {actor}: {CUSTOMERS} opened, {DRIFTED} resolved" in result.output

    # What the run would have done: the plan mismatches are gone, every CRM customer is only_in_a.
    state = {r["id"]: (r["kind"], r["status"]) for r in tracker.discrepancies("crm_vs_billing")}
    assert sum(1 for kind, status in state.values() if kind == "only_in_a" and status == "new") == CUSTOMERS
    assert sum(1 for kind, status in state.values() if kind == "field_mismatch" and status == "resolved") == DRIFTED
    row = tracker.runs("crm_vs_billing")[-1]
    assert (row["outcome"], row["accepted_by"], row["new"], row["resolved"]) == ("accepted", actor, CUSTOMERS, DRIFTED)
    with tracker.engine.connect() as conn:
        actors = set(conn.scalars(sa.select(events.c.actor).where(events.c.run_id == held.outcome.run_id)))
        assert conn.scalar(sa.select(sa.func.count()).select_from(staging)) == 0  # the held rows are used up
    assert actors == {actor}
    # The openings are routed like any run's (critical: Slack and the log), after the one alert.
    opened = [r for r in outbox_rows(tracker) if r.run_id == held.outcome.run_id and r.event == "opened"]
    assert len({r.discrepancy_id for r in opened}) == CUSTOMERS

    again = cli("runs", "--tracker-url", tracker_url, "accept", held.outcome.run_id, "--spec", str(path))
    assert again.exit_code == 2 and "is accepted, not suspicious" in again.stderr


def test_a_side_that_shrinks_40_percent_passes(setup):
    folder, tracker = setup
    spec = load_spec(spec_file(folder))
    run_tracked(spec, tracker)
    write_billing(folder, ids=range(400, CUSTOMERS))  # 600 of 1,000 rows: 40% fewer
    outcome = run_tracked(spec, tracker).outcome
    assert outcome.held is None
    assert tracker.runs("crm_vs_billing")[-1]["outcome"] == "ok"
    assert len(outcome.new_ids) == 400  # the missing customers are reported, as they should be


def test_the_threshold_is_the_spec_s(setup):
    folder, tracker = setup
    spec = load_spec(spec_file(folder, guard={"max_shrink": 0.3}))
    run_tracked(spec, tracker)
    before = open_ids(tracker)
    write_billing(folder, ids=range(400, CUSTOMERS))
    outcome = run_tracked(spec, tracker).outcome
    assert outcome.held.startswith("billing: 600 rows, previous run 1,000 (40% fewer, more than max_shrink 30%)")
    assert open_ids(tracker) == before


def test_a_replaced_export_of_the_same_size_is_held_by_its_keys(setup):
    folder, tracker = setup
    spec = load_spec(spec_file(folder))
    run_tracked(spec, tracker)
    write_billing(folder, ids=range(CUSTOMERS, 2 * CUSTOMERS))  # as many rows, other customers
    outcome = run_tracked(spec, tracker).outcome
    assert outcome.held is not None
    assert "billing: 1,000 rows, but only 0% of the previous run's keys are still there" in outcome.held
    assert len(open_ids(tracker)) == DRIFTED


def test_the_first_run_is_held_only_when_a_side_is_empty(setup):
    folder, tracker = setup
    (folder / "billing.csv").write_text("customer_id,plan\n")
    held = run_tracked(load_spec(spec_file(folder)), tracker).outcome
    assert held.held.startswith("billing: 0 rows, no previous run: run held as suspicious")
    assert tracker.status_counts("crm_vs_billing") == {}
    allowed = run_tracked(load_spec(spec_file(folder, guard={"allow_empty": True})), tracker).outcome
    assert allowed.held is None and len(allowed.new_ids) == CUSTOMERS


def test_a_held_run_is_not_the_next_run_s_baseline(setup):
    """Two empty exports in a row: the second is compared with the last applied run, not the held one."""
    folder, tracker = setup
    spec = load_spec(spec_file(folder, guard={"allow_empty": True}))
    run_tracked(spec, tracker)
    write_billing(folder, ids=range(100))
    assert run_tracked(spec, tracker).outcome.held.startswith("billing: 100 rows, previous run 1,000")
    assert run_tracked(spec, tracker).outcome.held.startswith("billing: 100 rows, previous run 1,000")


def test_an_old_held_run_cannot_undo_a_later_one(setup, tracker_url):
    folder, tracker = setup
    path = spec_file(folder)
    run_tracked(load_spec(path), tracker)
    (folder / "billing.csv").write_text("customer_id,plan\n")
    held = run_tracked(load_spec(path), tracker).outcome
    write_billing(folder)
    later = run_tracked(load_spec(path), tracker).outcome
    assert later.held is None
    result = cli("runs", "--tracker-url", tracker_url, "accept", held.run_id, "--spec", str(path))
    assert result.exit_code == 2
    assert f"was held before run {later.run_id} was applied" in result.stderr
    assert len(open_ids(tracker)) == DRIFTED


def test_a_retried_held_run_stays_held_and_alerts_once(setup):
    folder, tracker = setup
    spec = load_spec(spec_file(folder))
    run_tracked(spec, tracker)
    (folder / "billing.csv").write_text("customer_id,plan\n")
    first = run_tracked(spec, tracker, run_id="dagster-run-1:full").outcome
    count = len(outbox_rows(tracker))
    retried = run_tracked(spec, tracker, run_id="dagster-run-1:full").outcome
    assert retried.already_applied and retried.held == first.held
    # The run-failure sensor's message for the same Dagster run is the same message: not added.
    sensor_said = run_failure_notifications(spec, "dagster-run-1", "recheck_crm_vs_billing", "boom")
    with tracker.engine.begin() as conn:
        outbox.enqueue(conn, spec.name, sensor_said, datetime.now(timezone.utc))
    assert len(outbox_rows(tracker)) == count
    assert [n.key for n in held_run_notifications(spec, "dagster-run-1:full", "x")] == \
        ["run_failed:crm_vs_billing:dagster-run-1"] * 2


# --------------------------------------------------------------------------- the verdict on hand-made figures


def seen(rows_a: int, rows_b: int, kept_b: int | None = None, tested: int = 0, against: str | None = "r1") -> Observation:
    return Observation("h", {"a": SideSample(rows_a), "b": SideSample(rows_b, kept=kept_b, tested=tested)}, against)


BASELINE = {"run_id": "r1", "rows_a": 1000, "rows_b": 1000}


@pytest.mark.parametrize(("policy", "baseline", "observed", "expected"), [
    (GuardSpec(), BASELINE, seen(1000, 500), None),  # exactly 50% fewer: not more than max_shrink
    (GuardSpec(), BASELINE, seen(1000, 499), "b: 499 rows, previous run 1,000 (50% fewer, more than max_shrink 50%)"),
    (GuardSpec(max_shrink=0.9), BASELINE, seen(1000, 200), None),
    (GuardSpec(), BASELINE, seen(0, 1000), "a: 0 rows, previous run 1,000"),
    (GuardSpec(allow_empty=True), BASELINE, seen(0, 1000), None),
    (GuardSpec(), None, seen(0, 0), "a: 0 rows, no previous run; b: 0 rows, no previous run"),
    (GuardSpec(), None, seen(5, 7), None),
    (GuardSpec(), BASELINE, seen(3000, 1000), None),  # growth is never suspicious
    (GuardSpec(), BASELINE, seen(1000, 1000, kept_b=64, tested=128), None),
    (GuardSpec(), BASELINE, seen(1000, 1000, kept_b=63, tested=128),
     "b: 1,000 rows, but only 49% of the previous run's keys are still there (a sample of 128; more than max_shrink 50% gone)"),
    # measured against another run than the baseline (a run applied in between): keys not judged
    (GuardSpec(), BASELINE, seen(1000, 1000, kept_b=0, tested=128, against="r0"), None),
])
def test_verdict(policy, baseline, observed, expected):
    assert verdict(policy, ("a", "b"), baseline, observed) == expected


# --------------------------------------------------------------------------- Dagster


def dagster_setup(folder):
    from recon_pipelines.dagster_defs import build_definitions
    from recon_pipelines.dagster_defs.resources import ReconResource

    spec = load_spec(spec_file(folder))
    recon = ReconResource(storage_dir=str(folder / "store"), tracker_url=f"sqlite:///{folder / 'tracker.sqlite'}")
    return spec, build_definitions(specs=[spec], recon=recon), Tracker(recon.tracker_url)


def test_the_asset_check_fails_and_the_run_holds(tmp_path):
    import dagster as dg

    write_crm(tmp_path)
    write_billing(tmp_path)
    spec, defs, tracker = dagster_setup(tmp_path)
    job = defs.resolve_job_def("reconcile_crm_vs_billing")
    with dg.instance_for_test() as instance:
        first = job.execute_in_process(instance=instance)
        assert first.success
        assert [e.passed for e in first.get_asset_check_evaluations() if e.check_name == "export_guard"] == [True]
        before, count = open_ids(tracker), len(outbox_rows(tracker))
        (tmp_path / "billing.csv").write_text("customer_id,plan\n")
        second = job.execute_in_process(instance=instance, raise_on_error=False)
    guard = [e for e in second.get_asset_check_evaluations() if e.check_name == "export_guard"]
    assert len(guard) == 1 and not guard[0].passed and guard[0].severity == dg.AssetCheckSeverity.ERROR
    assert guard[0].description.startswith("billing: 0 rows, previous run 1,000: run held as suspicious")
    assert not second.success  # blocking: the run is marked failed
    assert open_ids(tracker) == before
    assert [(r.destination, r.event) for r in outbox_rows(tracker)[count:]] == [("alerts", "run_failed"), ("pager", "run_failed")]
    assert tracker.runs("crm_vs_billing")[-1]["run_id"] == f"{second.run_id}:full:crm_vs_billing"


def test_the_deep_scan_job_fails_with_the_line(tmp_path):
    import dagster as dg

    from recon_pipelines.dagster_defs.runs import recheck_config

    write_crm(tmp_path)
    write_billing(tmp_path)
    spec, defs, tracker = dagster_setup(tmp_path)
    job = defs.resolve_job_def("recheck_crm_vs_billing")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(run_config=recheck_config(spec, full=True), instance=instance).success
        (tmp_path / "billing.csv").write_text("customer_id,plan\n")
        result = job.execute_in_process(run_config=recheck_config(spec, full=True), instance=instance,
                                        raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "billing: 0 rows, previous run 1,000: run held as suspicious" in str(failure.event_specific_data.error)
    assert tracker.runs("crm_vs_billing")[-1]["outcome"] == "suspicious"
    assert tracker.status_counts("crm_vs_billing") == {"new": DRIFTED}


# --------------------------------------------------------------------------- the key sample


@pytest.mark.parametrize("null_keys", [0, 9000], ids=["distinct keys", "mostly null keys (exact top-k fallback)"])
def test_the_key_sample_is_the_smallest_hashes_and_counts_what_is_kept(tmp_path, null_keys):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from recon_pipelines import pipeline

    ids = {"a": list(range(1000)) + [None] * null_keys, "b": list(range(500, 1500)) + [None] * null_keys}
    for side, keys in ids.items():
        pq.write_table(pa.table({"customer_id": pa.array(keys, pa.int64())}), tmp_path / f"{side}.parquet")
    spec = load_spec(spec_file(tmp_path))
    folder = pipeline.RunFolder(tmp_path / "run")  # what key_samples reads: the run's snapshots
    folder.root.mkdir()
    for side in "ab":
        folder[f"snapshot_{side}"].write_bytes((tmp_path / f"{side}.parquet").read_bytes())
    summary = {"rows_a": 1000 + null_keys, "rows_b": 1000 + null_keys}

    with duckdb.connect() as con:  # the reference: every hash, sorted in Python
        every = {s: sorted({h for (h,) in con.execute(f"SELECT hash(customer_id) FROM '{tmp_path / s}.parquet' WHERE customer_id IS NOT NULL").fetchall()})
                 for s in "ab"}
    first = pipeline.key_samples(spec, folder, summary, None)
    assert {s: list(first.sides[s].sample) for s in "ab"} == {s: every[s][:128] for s in "ab"}
    assert first.sides["a"].kept is None

    # Against A's sample as the baseline of both sides: A keeps all 128; B holds the keys 500..1499.
    baseline = {"run_id": "r1", "key_sample": {"hash": pipeline.KEY_HASH, "a": {"sample": every["a"][:128]},
                                               "b": {"sample": every["a"][:128]}}}
    second = pipeline.key_samples(spec, folder, summary, baseline)
    assert (second.sides["a"].kept, second.sides["a"].tested) == (128, 128)
    assert second.sides["b"].kept == len(set(every["a"][:128]) & set(every["b"]))
    other_hash = {**baseline, "key_sample": {**baseline["key_sample"], "hash": "duckdb-0.0-hash"}}
    assert pipeline.key_samples(spec, folder, summary, other_hash).sides["b"].kept is None
