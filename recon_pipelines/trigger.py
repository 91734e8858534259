"""On-demand re-checks: specific keys, a date range, or everything, for one reconciliation.

Launches ``recheck_<name>`` on a running Dagster webserver through its GraphQL API (so the run
shows up in the UI and goes through the instance's run queue), or in this process with
``local=True``. The same function serves ``recon trigger`` and Python callers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import httpx

DAGSTER_URL_ENV = "RECON_DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

_FIND_JOB = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name locationOrLoadError {
  __typename ... on RepositoryLocation { name repositories { name jobs { name } } } ... on PythonError { message } } } } } }
"""
_LAUNCH = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on RunConfigValidationInvalid { errors { message } }
  ... on Error { message } } }
"""
_STATUS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } ... on Error { message } } }"


class TriggerError(RuntimeError):
    """The re-check could not be launched; says why."""


@dataclass(frozen=True)
class Triggered:
    run_id: str
    status: str
    url: str | None = None  # the run's page, when launched on a webserver


def recheck_op_name(name: str) -> str:
    return f"{name}__recheck"  # "__": no job, schedule or asset op of another spec can have this name


def recheck_run_config(name: str, keys=None, date_from=None, date_to=None, full: bool = False) -> dict:
    config: dict = {}
    if keys:
        config["keys"] = [str(k) for k in keys]
    if date_from or date_to:
        config.update(date_from=str(date_from) if date_from else None, date_to=str(date_to) if date_to else None)
    if full:
        config["full"] = True
    if len([k for k in ("keys", "date_from", "full") if k in config]) != 1:
        raise TriggerError("give exactly one of keys, a date range (from and to), or full")
    return {"ops": {recheck_op_name(name): {"config": config}}}


def trigger(name: str, *, keys=None, date_from=None, date_to=None, full: bool = False, url: str | None = None,
            local: bool = False, wait: bool = False, timeout: float = 600.0) -> Triggered:
    run_config = recheck_run_config(name, keys, date_from, date_to, full)
    if local:
        return _run_here(name, run_config)
    return _launch(url or os.environ.get(DAGSTER_URL_ENV) or DEFAULT_DAGSTER_URL, name, run_config, wait, timeout)


def _run_here(name: str, run_config: dict) -> Triggered:
    import dagster as dg

    from recon_pipelines.definitions import defs

    try:
        job = defs.resolve_job_def(f"recheck_{name}")
    except Exception:
        raise TriggerError(f"no reconciliation named {name!r} in this code location") from None
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
    return Triggered(result.run_id, "SUCCESS" if result.success else "FAILURE")


def _launch(base_url: str, name: str, run_config: dict, wait: bool, timeout: float) -> Triggered:
    job = f"recheck_{name}"
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=30) as client:
        location, repository = _find_job(client, job)
        result = _graphql(client, _LAUNCH, {"params": {
            "selector": {"repositoryLocationName": location, "repositoryName": repository, "jobName": job},
            "runConfigData": run_config,
        }})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = "; ".join(e["message"] for e in result.get("errors", [])) or result.get("message", "")
            raise TriggerError(f"{job} was not launched ({result['__typename']}): {detail}")
        run_id, status = result["run"]["runId"], result["run"]["status"]
        deadline = time.monotonic() + timeout
        while wait and status not in FINISHED:
            if time.monotonic() > deadline:
                raise TriggerError(f"run {run_id} still {status} after {timeout:g} s")
            time.sleep(1.0)
            status = _graphql(client, _STATUS, {"id": run_id})["runOrError"].get("status", status)
    return Triggered(run_id, status, f"{base_url.rstrip('/')}/runs/{run_id}")


def _find_job(client: httpx.Client, job: str) -> tuple[str, str]:
    workspace = _graphql(client, _FIND_JOB)["workspaceOrError"]
    for entry in workspace.get("locationEntries", []):
        location = entry["locationOrLoadError"] or {}
        for repository in location.get("repositories", []):
            if any(j["name"] == job for j in repository["jobs"]):
                return location["name"], repository["name"]
    raise TriggerError(f"no job {job} on this Dagster webserver: is the reconciliation's spec loaded?")


def _graphql(client: httpx.Client, query: str, variables: dict | None = None) -> dict:
    try:
        response = client.post("/graphql", json={"query": query, "variables": variables or {}})
    except httpx.HTTPError as exc:
        raise TriggerError(f"cannot reach Dagster at {client.base_url}: {exc}") from None
    if response.status_code != 200:
        raise TriggerError(f"Dagster at {client.base_url} answered {response.status_code}")
    body = response.json()
    if body.get("errors"):
        raise TriggerError("; ".join(e.get("message", str(e)) for e in body["errors"]))
    return body["data"]
