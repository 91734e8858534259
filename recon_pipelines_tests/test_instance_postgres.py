"""The production instance config (docker/dagster.yaml), tested for real on PostgreSQL.

Only the run launcher is swapped: dagster_docker.DockerRunLauncher needs dagster-docker and a
Docker engine, neither of which is here; Dagster's DefaultRunLauncher starts each run as a
process of the code server instead. Storage, the run queue (QueuedRunCoordinator with its limits),
run monitoring and telemetry are the production file's, byte for byte.

1. In process: the instance records a demo reconciliation (the generated week, one run) in
   PostgreSQL (runs, event logs, asset materializations), and the tracker's rows land in the
   same database, equal to the demo's ground truth.
2. The docker/ topology as local processes (``dagster_server.running_stack``): code server,
   webserver and daemon on that instance, running the compose services' commands; through the
   webserver's GraphQL API the location loads, every asset is there, and a run launched through
   the API is queued, launched by the daemon, and succeeds.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import runpy
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from recon_pipelines.demo.generate import REFERENCE_DATE, WINDOW_DAYS
from recon_pipelines_tests import docker_checks as dc
from recon_pipelines_tests.dagster_server import (
    ASSET_NODES_QUERY,
    DEFAULT_RUN_LAUNCHER,
    INSTANCE_QUERY,
    RUN_QUERY,
    graphql_schema_problems,
    running_stack,
    stack_env,
    swap_top_level_sections,
    write_instance_yaml,
)

RECONCILIATIONS = ("crm_vs_billing", "billing_vs_warehouse")
ASSET_STEPS = ("snapshot_a", "snapshot_b", "matched_pairs", "discrepancies", "tracker_state")
JOB = "reconcile_crm_vs_billing"
SWAPPED_SECTIONS = {"run_launcher"}
# The demo's specs are daily-partitioned; the README's tour backfills the generated week as one
# run (single-run backfill policy): these tags, on a run of the job.
DAYS = [(REFERENCE_DATE - timedelta(days=n)).isoformat() for n in range(WINDOW_DAYS, 0, -1)]
WEEK = {"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]}


def _production() -> dict:
    return yaml.safe_load(dc.INSTANCE_YAML.read_text(encoding="utf-8"))


def _assert_only_launcher_swapped(copy) -> None:
    """The copy is the production file but for the run launcher: same keys, same values for every
    other key, and the same bytes once the production block is put back."""
    assert set(copy.swapped) == SWAPPED_SECTIONS
    production, written = _production(), yaml.safe_load(copy.path.read_text(encoding="utf-8"))
    assert set(written) == set(production)
    assert {k: v for k, v in written.items() if k not in SWAPPED_SECTIONS} == \
           {k: v for k, v in production.items() if k not in SWAPPED_SECTIONS}
    assert production["run_launcher"]["class"] == "DockerRunLauncher"
    assert written["run_launcher"] == DEFAULT_RUN_LAUNCHER
    assert copy.unswapped_text() == dc.INSTANCE_YAML.read_text(encoding="utf-8")
    # kept as in production: the queue that the daemon must drain, and run monitoring
    assert written["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert written["run_monitoring"]["enabled"] is True


def _set_env(monkeypatch, env: dict[str, str]) -> None:
    for name in [n for n in list(os.environ) if n.startswith(("DAGSTER_", "RECON_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _event_counts(rows) -> dict[str, int]:
    """event_logs.dagster_event_type holds DagsterEventType values (RUN_START is stored as
    PIPELINE_START); keyed here by the enum's names."""
    from dagster import DagsterEventType

    return {DagsterEventType(value).name: count for value, count in rows}


def _asset_keys(name: str) -> set[tuple[str, ...]]:
    return {(name, step) for step in ASSET_STEPS}


# ----------------------------------------------------------------------------- no server needed


def test_graphql_documents_match_the_installed_schema():
    """Every query and mutation the helpers send is valid for the installed dagster-graphql."""
    assert graphql_schema_problems() == []


def test_swapping_a_section_keeps_every_other_byte():
    text = "# head\na:\n  x: 1\n\n# about b\nb:\n  - 1\n  # inner\n  - 2\n\n# about c\nc: 3\n"
    new, swapped = swap_top_level_sections(text, {"b": {"y": 2}})
    assert new == "# head\na:\n  x: 1\n\n# about b\nb:\n  y: 2\n\n# about c\nc: 3\n"
    assert swapped == {"b": ("b:\n  - 1\n  # inner\n  - 2\n", "b:\n  y: 2\n")}
    with pytest.raises(KeyError):
        swap_top_level_sections(text, {"d": 1})


# ----------------------------------------------------------------------------- against PostgreSQL


@pytest.mark.postgres
def test_production_instance_records_a_reconciliation_in_postgres(pg_url, tmp_path, monkeypatch):
    from dagster import AssetKey, DagsterInstance
    from dagster._core.launcher import DefaultRunLauncher
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    from recon_pipelines.demo import DEMO_DATA_ENV, generate_demo

    home = tmp_path / "dagster_home"
    copy = write_instance_yaml(home)
    _assert_only_launcher_swapped(copy)
    env = stack_env(home, pg_url)
    assert dc.instance_env_vars(_production()) <= set(env)  # every {env: VAR} the production file reads
    _set_env(monkeypatch, env)

    if importlib.util.find_spec("dagster_docker") is None:  # why the launcher is swapped
        production_home = tmp_path / "production_home"
        production_home.mkdir()
        (production_home / "dagster.yaml").write_text(dc.INSTANCE_YAML.read_text(encoding="utf-8"))
        with (pytest.raises(Exception, match="Couldn't import module dagster_docker"),
              DagsterInstance.from_config(str(production_home)) as production):
            production.run_launcher  # noqa: B018 (loaded lazily)

    # the demo data where the code location looks for it (DAGSTER_HOME/demo_data), with its truth
    truth = generate_demo(home / "demo_data")["reconciliations"]["crm_vs_billing"]
    assert truth["total"] == 50
    monkeypatch.setenv(DEMO_DATA_ENV, str(home / "demo_data"))  # what prepare_demo() sets; undone after
    # the code location module itself, evaluated in this environment (not a cached import)
    defs = runpy.run_module("recon_pipelines.definitions")["defs"]
    group = {tuple(spec.key.path) for spec in defs.resolve_all_asset_specs() if spec.group_name == "crm_vs_billing"}
    assert _asset_keys("crm_vs_billing") <= group

    with DagsterInstance.get() as instance:  # DAGSTER_HOME/dagster.yaml, like every process of the stack
        assert Path(instance.root_directory) == home
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, DefaultRunLauncher)
        result = defs.resolve_job_def(JOB).execute_in_process(instance=instance, tags=WEEK)
        assert result.success
        run_id = result.run_id

    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            q = functools.partial(_rows, conn)
            # Dagster's run storage
            assert q("SELECT run_id, pipeline_name, status FROM runs") == [(run_id, JOB, "SUCCESS")]
            assert q("SELECT value FROM run_tags WHERE run_id = :r AND key = 'recon/reconciliation'",
                     r=run_id) == [("crm_vs_billing",)]
            # its event log
            events = _event_counts(q("SELECT dagster_event_type, count(*) FROM event_logs WHERE run_id = :r "
                                     "AND dagster_event_type IS NOT NULL GROUP BY 1", r=run_id))
            assert events["RUN_START"] == 1 and events["RUN_SUCCESS"] == 1, events
            assert events.get("STEP_FAILURE", 0) == 0 and events["STEP_SUCCESS"] >= 1, events
            assert events.get("ASSET_CHECK_EVALUATION", 0) >= 1, events
            # asset materializations, in the event log: every asset of the group (the five steps and
            # whatever the spec adds), each of the five steps once per day of the week ...
            materialized = {(tuple(AssetKey.from_db_string(k).path), day) for k, day in q(
                "SELECT asset_key, partition FROM event_logs WHERE run_id = :r "
                "AND dagster_event_type = 'ASSET_MATERIALIZATION'", r=run_id)}
            assert {key for key, _ in materialized} == group
            assert {(key, day) for key in _asset_keys("crm_vs_billing") for day in DAYS} <= materialized
            # ... and in the asset index
            indexed = q("SELECT asset_key, last_run_id FROM asset_keys WHERE last_materialization IS NOT NULL")
            assert {tuple(AssetKey.from_db_string(k).path) for k, _ in indexed} == group
            assert {r for _, r in indexed} == {run_id}
            # the tracker, in the same database, holding the demo's ground truth from this run
            assert q("SELECT count(*) FROM recon_discrepancies WHERE reconciliation = 'crm_vs_billing'") \
                == [(truth["total"],)]
            stored = q("SELECT kind, key, field, last_run_id FROM recon_discrepancies")
            assert {(kind, key, fld) for kind, key, fld, _ in stored} == \
                   {(d["kind"], d["key"], d.get("field")) for d in truth["discrepancies"]}
            assert {last.split(":")[0] for *_, last in stored} == {run_id}
            assert q("SELECT discrepancies, new FROM recon_runs WHERE run_id LIKE :r",
                     r=f"{run_id}:%") == [(truth["total"], truth["total"])]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_webserver_and_daemon_on_the_production_instance(pg_url, tmp_path):
    from dagster import DagsterEventType

    from recon_pipelines.demo import load_ground_truth

    home = tmp_path / "dagster_home"
    copy = write_instance_yaml(home)
    _assert_only_launcher_swapped(copy)
    env = stack_env(home, pg_url, extra={"RECON_MAX_CONCURRENT_RUNS": "3"})

    with running_stack(home, env) as stack:
        server = stack.webserver
        # the processes run the compose services' commands, with local host, port and workspace
        code_location = dc.service_command(dc.COMPOSE_FILE, "recon_code_location")
        for process, command in ((stack.code_server, code_location),
                                 (server, dc.service_command(dc.COMPOSE_FILE, "dagster_webserver")),
                                 (stack.daemon, dc.service_command(dc.COMPOSE_FILE, "dagster_daemon"))):
            assert Path(process.args[0]).name == command[0]
        assert stack.code_server.args[1:] == _with_options(code_location, {"-h": "127.0.0.1",
                                                                           "-p": str(stack.code_server.port)})[1:]
        webserver = dc.service_command(dc.COMPOSE_FILE, "dagster_webserver")
        assert server.args[1:] == _with_options(webserver, {"-h": "127.0.0.1", "-p": str(server.port),
                                                            "-w": str(stack.workspace)})[1:]
        daemon = dc.service_command(dc.COMPOSE_FILE, "dagster_daemon")
        assert stack.daemon.args[1:] == _with_options(daemon, {"-w": str(stack.workspace)})[1:]

        # the code location loaded without error
        (entry,) = server.location_entries()
        location = entry["locationOrLoadError"]
        assert location["__typename"] == "RepositoryLocation", f"{location}\n{stack.logs()}"
        assert entry["name"] == location["name"] == stack.code_server.location_name
        jobs = {job["name"] for repository in location["repositories"] for job in repository["jobs"]}
        assert {f"reconcile_{name}" for name in RECONCILIATIONS} | {"discrepancy_action"} <= jobs

        # every reconciliation's five assets, in its group, in its job
        nodes = server.graphql(ASSET_NODES_QUERY)["assetNodes"]
        by_key = {tuple(node["assetKey"]["path"]): node for node in nodes}
        for name in RECONCILIATIONS:
            assert _asset_keys(name) <= set(by_key), sorted(by_key)
            for key in _asset_keys(name):
                assert by_key[key]["groupName"] == name and f"reconcile_{name}" in by_key[key]["jobNames"]
                assert by_key[key]["isMaterializable"]

        # the instance the webserver serves is the production one, launcher aside
        instance = server.graphql(INSTANCE_QUERY)["instance"]
        assert instance["runLauncher"]["name"] == "DefaultRunLauncher"
        assert instance["runQueuingSupported"] is True
        assert instance["runQueueConfig"]["maxConcurrentRuns"] == 3
        assert yaml.safe_load(instance["runQueueConfig"]["tagConcurrencyLimitsYaml"]) == \
            _production()["run_coordinator"]["config"]["tag_concurrency_limits"]

        # a run launched through the API: queued, dequeued by the daemon, run by the code server
        status = server.launch_and_wait(JOB, tags=WEEK, timeout=180)
        run_id = server.last_run_id
        assert status == "SUCCESS", stack.report(run_id)
        run = server.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["jobName"] == JOB
        assert {"key": "recon/reconciliation", "value": "crm_vs_billing"} in run["tags"]
        # everything the job targets was materialized: the five steps and what the spec adds
        targeted = {key for key, node in by_key.items() if JOB in node["jobNames"]}
        assert _asset_keys("crm_vs_billing") <= targeted
        assert {tuple(m["assetKey"]["path"]) for m in run["assetMaterializations"]} == targeted
        health = server.graphql(INSTANCE_QUERY)["instance"]["daemonHealth"]
        daemons = {d["daemonType"]: d for d in health["allDaemonStatuses"]}
        assert daemons["QUEUED_RUN_COORDINATOR"]["healthy"] is True, daemons

    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            q = functools.partial(_rows, conn)
            # The daemon's delivery sensor may launch deliver_notifications for the alerts this run
            # queued, at a moment that depends on the machine's load: only the reconcile run is ours.
            assert q("SELECT run_id, status FROM runs WHERE pipeline_name <> 'deliver_notifications'") == [(run_id, "SUCCESS")]
            # submitted to the queue; launched (RUN_STARTING) only by the daemon's queued run coordinator
            order = [DagsterEventType(t).name for (t,) in q(
                "SELECT dagster_event_type FROM event_logs WHERE run_id = :r AND dagster_event_type IS NOT NULL "
                "ORDER BY id", r=run_id)]
            lifecycle = [t for t in order if t in ("RUN_ENQUEUED", "RUN_STARTING", "RUN_START", "RUN_SUCCESS")]
            assert lifecycle == ["RUN_ENQUEUED", "RUN_STARTING", "RUN_START", "RUN_SUCCESS"], order
            assert order.count("ASSET_MATERIALIZATION") >= len(ASSET_STEPS) * len(DAYS), order
            # the tracker, written by the run, matches the ground truth of the data the code server generated
            truth = load_ground_truth(home / "demo_data")["reconciliations"]["crm_vs_billing"]
            assert q("SELECT count(*) FROM recon_discrepancies WHERE reconciliation = 'crm_vs_billing' "
                     "AND last_run_id LIKE :r", r=f"{run_id}:%") == [(truth["total"],)] == [(50,)]
    finally:
        engine.dispose()


def _rows(conn, sql: str, **params) -> list:
    return conn.execute(sa.text(sql), params).all()


def _with_options(command: list[str], values: dict[str, str]) -> list[str]:
    """``command`` with the value following each option in ``values`` replaced."""
    out = list(command)
    for option, value in values.items():
        index = out.index(option)
        out[index + 1] = value
    return out
