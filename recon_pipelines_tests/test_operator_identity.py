"""The audit trail records who acted as authenticated, not as claimed: the OS account for the
CLI, the run's launcher for the Dagster job; a claimed name is kept in the note."""

from __future__ import annotations

import os
import pwd

import pytest
from click.testing import CliRunner

from recon_pipelines import cli
from recon_pipelines.dagster_defs.operator_jobs import discrepancy_action
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.identity import DAGSTER_PLUS_ENV, DAGSTER_UNAUTHENTICATED, dagster_launcher, os_user
from recon_pipelines.tracker import Tracker
from recon_pipelines_tests.test_tracker import T0, d, found

ME = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture
def tracker_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    tracker = Tracker(url)
    tracker.apply_run("crm_vs_billing", "r1", found(d("1"), d("2")), now=T0)
    tracker.engine.dispose()
    return url


def test_os_user_ignores_the_environment(monkeypatch):
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    assert os_user() == ME != "mallory"


def test_cli_actor_is_the_os_user_even_when_another_is_claimed(tracker_url, monkeypatch):
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("RECON_ACTOR", "mallory")  # the old way to name the actor: now ignored
    result = CliRunner().invoke(cli.main, ["discrepancies", "--tracker-url", tracker_url, "resolve", "1-amount",
                                           "--actor", "mallory", "--note", "fixed in billing"])
    assert result.exit_code == 0, result.output
    plain = CliRunner().invoke(cli.main, ["discrepancies", "--tracker-url", tracker_url, "ack", "2-amount"])
    assert plain.exit_code == 0, plain.output

    tracker = Tracker(tracker_url)
    resolved, acked = tracker.history("1-amount")[-1], tracker.history("2-amount")[-1]
    assert (resolved["action"], resolved["actor"]) == ("resolve", ME)
    assert resolved["note"] == "on behalf of mallory: fixed in billing"
    assert (acked["action"], acked["actor"], acked["note"]) == ("acknowledge", ME, None)

    shown = CliRunner().invoke(cli.main, ["discrepancies", "--tracker-url", tracker_url, "show", "1-amount"]).output
    assert f"by {ME}" in shown and "(on behalf of mallory: fixed in billing)" in shown
    assert "by mallory" not in shown


def test_on_behalf_of_never_replaces_the_actor(tracker_url):
    tracker = Tracker(tracker_url)
    tracker.act(["1-amount"], "mute", "ana", until=T0.replace(year=2999), on_behalf_of="lead", now=T0)
    event = tracker.history("1-amount")[-1]
    assert event["actor"] == "ana"
    assert event["note"] == "on behalf of lead: muted until 2999-11-01T00:00:00+00:00"


@pytest.mark.parametrize("tags, environ, actor", [
    ({}, {}, DAGSTER_UNAUTHENTICATED),
    ({"user": "mallory@example.com"}, {}, DAGSTER_UNAUTHENTICATED),  # OSS: a launchpad tag is free text
    ({"user": "ana@example.com"}, {DAGSTER_PLUS_ENV: "prod"}, "ana@example.com"),  # Dagster+ sets it
    ({"user": "  "}, {DAGSTER_PLUS_ENV: "prod"}, DAGSTER_UNAUTHENTICATED),
])
def test_dagster_launcher(tags, environ, actor):
    assert dagster_launcher(tags, environ) == actor


def test_dagster_job_takes_the_actor_from_the_run_not_its_config_or_tags(tracker_url, tmp_path):
    config = {"ops": {"apply_discrepancy_action": {"config": {
        "ids": ["1-amount"], "action": "acknowledge", "on_behalf_of": "ana"}}}}
    result = discrepancy_action.execute_in_process(
        run_config=config, tags={"user": "mallory@example.com"},
        resources={"recon": ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=tracker_url)})
    assert result.success
    event = Tracker(tracker_url).history("1-amount")[-1]
    assert (event["actor"], event["note"], event["run_id"]) == (DAGSTER_UNAUTHENTICATED, "on behalf of ana",
                                                                result.run_id)


def test_dagster_job_refuses_an_actor_in_its_config(tracker_url, tmp_path):
    import dagster as dg

    with pytest.raises(dg.DagsterInvalidConfigError, match="actor"):
        discrepancy_action.execute_in_process(
            run_config={"ops": {"apply_discrepancy_action": {"config": {
                "ids": ["1-amount"], "action": "acknowledge", "actor": "mallory"}}}},
            resources={"recon": ReconResource(storage_dir=str(tmp_path / "store"), tracker_url=tracker_url)})
