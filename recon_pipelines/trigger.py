"""On-demand re-checks: specific keys, a date range, or everything, for one reconciliation.

Launches ``recheck_<name>`` on a running Dagster webserver through Dagster's own GraphQL
client (``dagster_graphql.DagsterGraphQLClient``: the run shows up in the UI and goes through
the instance's run queue), or in this process with ``local=True``. The same function serves
``recon trigger`` and Python callers.

Which webserver: ``url``, else ``$RECON_DAGSTER_URL``, else ``http://127.0.0.1:$DAGSTER_PORT``
(the port ``make demo`` serves on; 3000 when unset).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import dataclass
from urllib.parse import urlsplit

from recon_pipelines.names import recheck_job_name, recheck_op_name
from recon_pipelines.redact import redact

DAGSTER_URL_ENV = "RECON_DAGSTER_URL"
DAGSTER_PORT_ENV = "DAGSTER_PORT"
DEFAULT_DAGSTER_PORT = 3000
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class TriggerError(RuntimeError):
    """The re-check could not be launched; says why."""


@dataclass(frozen=True)
class Triggered:
    run_id: str
    status: str
    url: str | None = None  # the run's page, when launched on a webserver


def dagster_url(url: str | None = None) -> str:
    """The webserver to talk to (see the module docstring)."""
    if url or os.environ.get(DAGSTER_URL_ENV):
        return (url or os.environ[DAGSTER_URL_ENV]).rstrip("/")
    port = os.environ.get(DAGSTER_PORT_ENV) or str(DEFAULT_DAGSTER_PORT)
    if not port.isdigit():
        raise TriggerError(f"{DAGSTER_PORT_ENV}={port!r} is not a port number")
    return f"http://127.0.0.1:{port}"


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
            local: bool = False, wait: bool = False, timeout: float = 600.0, verbose: bool = False) -> Triggered:
    run_config = recheck_run_config(name, keys, date_from, date_to, full)
    if local:
        return _run_here(name, run_config, verbose)
    return _launch(dagster_url(url), name, run_config, wait, timeout)


def _run_here(name: str, run_config: dict, verbose: bool) -> Triggered:
    # Quiet unless asked: Dagster's Beta/Preview warnings and its DEBUG event log say nothing
    # an operator needs; failures still come back as the status (and the run's logs in the UI).
    with contextlib.ExitStack() as quiet:
        if not verbose:
            quiet.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            run_config = {**run_config, "loggers": {"console": {"config": {"log_level": "ERROR"}}}}
        import dagster as dg

        from recon_pipelines.definitions import defs

        try:
            job = defs.resolve_job_def(recheck_job_name(name))
        except Exception:
            raise TriggerError(f"no reconciliation named {name!r} in this code location") from None
        instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
        result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
    return Triggered(result.run_id, "SUCCESS" if result.success else "FAILURE")


def _launch(base_url: str, name: str, run_config: dict, wait: bool, timeout: float) -> Triggered:
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TriggerError(f"not a webserver URL: {base_url!r} (e.g. http://127.0.0.1:3000)")
    client = DagsterGraphQLClient(parts.hostname, port_number=parts.port, use_https=parts.scheme == "https",
                                  timeout=30, path_prefix=parts.path.rstrip("/"))
    job = recheck_job_name(name)
    try:
        run_id = client.submit_job_execution(job, run_config=run_config)
        status = client.get_run_status(run_id).value
        deadline = time.monotonic() + timeout
        while wait and status not in FINISHED:
            if time.monotonic() > deadline:
                raise TriggerError(f"run {run_id} still {status} after {timeout:g} s")
            time.sleep(1.0)
            status = client.get_run_status(run_id).value
    except DagsterGraphQLClientError as exc:
        raise TriggerError(redact(_explain(exc, job, base_url))) from None
    return Triggered(run_id, status, f"{base_url}/runs/{run_id}")


def _explain(exc: Exception, job: str, base_url: str) -> str:
    """One line for the client's errors (they carry whole GraphQL documents otherwise)."""
    kind, *detail = exc.args or ("error",)
    if str(kind).endswith("NotFoundError"):
        return f"no job {job} on the Dagster webserver at {base_url}: is the reconciliation's spec loaded?"
    if _caused_by(exc, OSError):  # refused, unknown host, timeout: the client wraps them in gql errors
        return (f"cannot reach Dagster at {base_url}: is it running (make demo)? Otherwise pass --url, "
                f"or set {DAGSTER_URL_ENV} or {DAGSTER_PORT_ENV}")
    message = "; ".join(e.get("message", str(e)) if isinstance(e, dict) else str(e) for d in detail
                        for e in (d if isinstance(d, list) else [d]))
    return f"{job} was not launched ({kind}){': ' + message if message else ''}"


def _caused_by(exc: BaseException, kind: type) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
