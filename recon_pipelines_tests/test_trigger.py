"""`recon trigger` against `dagster dev` started as the README's `make demo` starts it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recon_pipelines.tracker import Tracker
from recon_pipelines.trigger import TriggerError, recheck_run_config
from recon_pipelines_tests.dagster_server import PROCESS_LOGS, WebServer, _bin, _managed, _server_info, _wait, free_port

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def dagster_dev(home: Path, env: dict):
    """`dagster dev -m recon_pipelines.definitions` with the repository's dagster.yaml in DAGSTER_HOME."""
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    server = WebServer(name="dagster dev", host="127.0.0.1", port=port, log_path=home / PROCESS_LOGS / "dev.log",
                       args=[_bin("dagster"), "dev", "-m", "recon_pipelines.definitions", "-h", "127.0.0.1", "-p", str(port)])
    with _managed(server, env, cwd=home):
        _wait(server, lambda: _server_info(server.url), 180, f"{server.url}/server_info")
        server.wait_for_locations()
        yield server


def test_recon_trigger_launches_a_recheck_on_the_webserver(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "RECON_"))}
    env.update(DAGSTER_HOME=str(home), DAGSTER_DISABLE_TELEMETRY="1")
    with dagster_dev(home, env) as server:
        recon = [str(Path(sys.executable).parent / "recon"), "trigger", "crm_vs_billing", "--keys", "1064,1043",
                 "--url", server.url, "--wait"]
        proc = subprocess.run(recon, capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr + server.logs()
        assert "SUCCESS" in proc.stdout and f"{server.url}/runs/" in proc.stdout
    tracker = Tracker(f"sqlite:///{home / 'recon_tracker.sqlite'}")
    keys = {row["key"] for row in tracker.discrepancies("crm_vs_billing")}
    assert keys == {"1064", "1043"}  # a key-scoped run touches only those keys
    (run,) = tracker.runs("crm_vs_billing")
    assert run["scope"].startswith("keys-")


def test_trigger_needs_exactly_one_scope():
    with pytest.raises(TriggerError, match="exactly one"):
        recheck_run_config("crm_vs_billing", keys=["1"], full=True)
    assert recheck_run_config("crm_vs_billing", date_from="2026-11-01", date_to="2026-11-07") == {
        "ops": {"crm_vs_billing__recheck": {"config": {"date_from": "2026-11-01", "date_to": "2026-11-07"}}}}
