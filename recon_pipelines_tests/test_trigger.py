"""`recon trigger` against `dg dev` started as the README's `make demo` starts it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recon_pipelines.tracker import Tracker
from recon_pipelines.trigger import TriggerError, dagster_url, recheck_run_config
from recon_pipelines_tests.dagster_server import PROCESS_LOGS, WebServer, _bin, _managed, _server_info, _wait, free_port

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def dg_dev(home: Path, env: dict, port: int):
    """`dg dev --port PORT` in the repository (the demo's dg project), with its dagster.yaml in DAGSTER_HOME."""
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    server = WebServer(name="dg dev", host="127.0.0.1", port=port, log_path=home / PROCESS_LOGS / "dev.log",
                       args=[_bin("dg"), "dev", "--port", str(port), "--host", "127.0.0.1"])
    with _managed(server, env, cwd=REPO):
        _wait(server, lambda: _server_info(server.url), 180, f"{server.url}/server_info")
        server.wait_for_locations()
        yield server


def test_recon_trigger_launches_a_recheck_on_the_port_the_demo_serves(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "RECON_"))}
    env.update(DAGSTER_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1", DAGSTER_PORT=str(port),
               PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    with dg_dev(home, env, port) as server:
        recon = [str(Path(sys.executable).parent / "recon"), "trigger", "crm_vs_billing", "--keys", "1064,1043", "--wait"]
        proc = subprocess.run(recon, capture_output=True, text=True, env=env, timeout=300)  # no --url: DAGSTER_PORT
        assert proc.returncode == 0, proc.stdout + proc.stderr + server.logs()
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("run ") and lines[0].endswith(": SUCCESS"), proc.stdout
    run_id = lines[0].split()[1].rstrip(":")
    assert lines[1].strip() == f"{server.url}/runs/{run_id}"
    tracker = Tracker(f"sqlite:///{home / 'recon_tracker.sqlite'}")
    found = tracker.seen_in_run(run_id)
    assert {row["key"] for row in found} == {"1064", "1043"}  # a key-scoped run touches only those keys
    assert f"{len(found)} discrepancies found:" in proc.stdout
    assert {row["id"] for row in found} == {line.split()[0] for line in lines[lines.index(f"{len(found)} discrepancies found:") + 2:]}
    (run,) = tracker.runs("crm_vs_billing")
    assert run["scope"].startswith("keys-")


def test_trigger_reads_the_demo_port_unless_told_a_url(monkeypatch):
    monkeypatch.delenv("RECON_DAGSTER_URL", raising=False)
    monkeypatch.delenv("DAGSTER_PORT", raising=False)
    assert dagster_url() == "http://127.0.0.1:3000"
    monkeypatch.setenv("DAGSTER_PORT", "3100")
    assert dagster_url() == "http://127.0.0.1:3100"
    monkeypatch.setenv("RECON_DAGSTER_URL", "https://dagster.example.org/")
    assert dagster_url() == "https://dagster.example.org"
    assert dagster_url("http://10.0.0.1:3001") == "http://10.0.0.1:3001"
    monkeypatch.delenv("RECON_DAGSTER_URL")
    monkeypatch.setenv("DAGSTER_PORT", "30OO")
    with pytest.raises(TriggerError, match="DAGSTER_PORT"):
        dagster_url()


def test_an_unreachable_webserver_is_one_line_naming_the_fix():
    from recon_pipelines.trigger import trigger

    with pytest.raises(TriggerError) as caught:
        trigger("crm_vs_billing", keys=["1"], url=f"http://127.0.0.1:{free_port()}")
    assert "cannot reach Dagster at http://127.0.0.1:" in str(caught.value) and "\n" not in str(caught.value)


def test_trigger_needs_exactly_one_scope():
    with pytest.raises(TriggerError, match="exactly one"):
        recheck_run_config("crm_vs_billing", keys=["1"], full=True)
    assert recheck_run_config("crm_vs_billing", date_from="2026-11-01", date_to="2026-11-07") == {
        "ops": {"crm_vs_billing__recheck": {"config": {"date_from": "2026-11-01", "date_to": "2026-11-07"}}}}
