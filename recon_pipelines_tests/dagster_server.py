"""Real Dagster processes for tests: a code server, ``dagster-webserver`` and ``dagster-daemon``,
started as subprocesses against a DAGSTER_HOME, and a small GraphQL client for the webserver.

    write_instance_yaml(dagster_home)                      # docker/dagster.yaml, local run launcher
    env = stack_env(dagster_home, pg_url)                  # what docker/.env gives the containers
    with running_stack(dagster_home, env) as stack:        # the docker/ topology, on this machine
        status = stack.webserver.launch_and_wait("reconcile_crm_vs_billing", tags=partition_range_tags)
        assert status == "SUCCESS", stack.report(stack.webserver.last_run_id)

Each process runs in a session (process group) of its own, with stdout and stderr in
``<dagster_home>/process_logs/<name>.log`` (not ``<dagster_home>/logs``: that is Dagster's
telemetry folder, which dagster-daemon uploads unless DAGSTER_DISABLE_TELEMETRY is set). It is
stopped when its context manager exits, failure or not: SIGTERM to the group and to every
descendant found, then SIGKILL after a grace period.
Errors raised here (start-up failure, GraphQL errors, timeouts) carry the tail of the logs.

Also here: a copy of the production instance config (docker/dagster.yaml) with only named
top-level sections swapped (``write_instance_yaml``), the environment the stack reads it with
(``stack_env``), and the GraphQL documents the helpers send (checked against the installed
dagster-graphql schema by ``graphql_schema_problems``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PRODUCTION_INSTANCE_YAML = REPO_ROOT / "docker" / "dagster.yaml"
PRODUCTION_WORKSPACE_YAML = REPO_ROOT / "docker" / "workspace.yaml"
CODE_LOCATION_MODULE = "recon_pipelines.definitions"
LOCATION_NAME = "recon_pipelines"

# The production run launcher (dagster_docker.DockerRunLauncher) needs dagster-docker and a Docker
# engine; on this machine runs are launched by Dagster's default launcher instead: a process per
# run, started by the code server, the same way the Docker launcher starts a container per run.
DEFAULT_RUN_LAUNCHER = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}

TERMINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
_LOG_TAIL_CHARS = 6000
PROCESS_LOGS = "process_logs"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _bin(name: str) -> str:
    """An executable of this virtualenv (the one running the tests)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------------- configuration


@dataclass
class InstanceCopy:
    """A dagster.yaml written from the production one with some top-level sections replaced."""

    path: Path
    text: str
    source_text: str
    swapped: dict[str, tuple[str, str]]  # section -> (production block, replacement block)

    def unswapped_text(self) -> str:
        """The copy with the production blocks put back: equal to the production file."""
        text = self.text
        for old, new in self.swapped.values():
            text = text.replace(new, old, 1)
        return text


def swap_top_level_sections(text: str, replacements: Mapping[str, Any]) -> tuple[str, dict[str, tuple[str, str]]]:
    """Replace the block of each named top-level key of a YAML document with a dump of the new
    value; every other byte (comments included) stays as it is. A block runs from its key's line
    to its last indented line (comments just above the next key stay with that key)."""
    swapped: dict[str, tuple[str, str]] = {}
    for key, value in replacements.items():
        lines = text.splitlines(keepends=True)
        starts = [i for i, line in enumerate(lines) if line.startswith(f"{key}:")]
        if len(starts) != 1:
            raise KeyError(f"top-level key {key!r} found {len(starts)} times")
        start = starts[0]
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
            end += 1
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1
        old = "".join(lines[start:end])
        new = yaml.safe_dump({key: value}, sort_keys=False)
        text = "".join(lines[:start]) + new + "".join(lines[end:])
        swapped[key] = (old, new)
    return text, swapped


def write_instance_yaml(dagster_home: Path, replacements: Mapping[str, Any] | None = None,
                        source: Path = PRODUCTION_INSTANCE_YAML) -> InstanceCopy:
    """``<dagster_home>/dagster.yaml``: the production instance config with ``replacements``
    (default: only the run launcher, see DEFAULT_RUN_LAUNCHER)."""
    if replacements is None:
        replacements = {"run_launcher": DEFAULT_RUN_LAUNCHER}
    source_text = Path(source).read_text(encoding="utf-8")
    text, swapped = swap_top_level_sections(source_text, replacements)
    Path(dagster_home).mkdir(parents=True, exist_ok=True)
    path = Path(dagster_home) / "dagster.yaml"
    path.write_text(text, encoding="utf-8")
    return InstanceCopy(path=path, text=text, source_text=source_text, swapped=swapped)


def postgres_env(pg_url: str) -> dict[str, str]:
    """The DAGSTER_POSTGRES_* variables docker/dagster.yaml reads, from a SQLAlchemy URL."""
    import sqlalchemy as sa

    url = sa.make_url(pg_url)
    return {
        "DAGSTER_POSTGRES_USER": url.username or "",
        "DAGSTER_POSTGRES_PASSWORD": url.password or "",
        "DAGSTER_POSTGRES_HOST": url.host or "127.0.0.1",
        "DAGSTER_POSTGRES_DB": url.database or "",
        "DAGSTER_POSTGRES_PORT": str(url.port or 5432),
    }


def stack_env(dagster_home: Path, pg_url: str, extra: Mapping[str, str] | None = None,
              base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the stack's processes, as docker/.env gives it to the containers:
    Dagster's storage and the tracker in the database of ``pg_url``. Inherited DAGSTER_* and
    RECON_* variables are dropped (a developer's RECON_SPEC_DIR must not leak in); without
    RECON_SPEC_DIR the code location serves the demo, generated under DAGSTER_HOME/demo_data."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if not k.startswith(("DAGSTER_", "RECON_"))}
    env.update(postgres_env(pg_url))
    env.update({
        "DAGSTER_HOME": str(dagster_home),
        "RECON_TRACKER_URL": pg_url,
        "RECON_MAX_CONCURRENT_RUNS": "4",
        "PYTHONUNBUFFERED": "1",
        # dagster-daemon uploads $DAGSTER_HOME/logs to telemetry.dagster.io unless this is set,
        # whatever `telemetry: enabled` says; tests make no such calls
        "DAGSTER_DISABLE_TELEMETRY": "1",
    })
    env.update(extra or {})
    return env


def write_grpc_workspace(path: Path, host: str, port: int, source: Path = PRODUCTION_WORKSPACE_YAML) -> str:
    """The production workspace.yaml (one grpc_server entry) with host and port swapped;
    returns the location name it declares."""
    workspace = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    (entry,) = workspace["load_from"]
    entry["grpc_server"].update({"host": host, "port": port})
    Path(path).write_text(yaml.safe_dump(workspace, sort_keys=False), encoding="utf-8")
    return entry["grpc_server"]["location_name"]


# ----------------------------------------------------------------------------- processes


class DagsterProcessError(RuntimeError):
    """A process failed to start, died, or answered with an error; the message has its logs."""


@dataclass
class ManagedProcess:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    related: list[ManagedProcess] = field(default_factory=list)  # whose logs to add to errors
    stopped: bool = False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        try:
            text = _ANSI.sub("", self.log_path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            return f"--- {self.name}: no log at {self.log_path}"
        cut = "[...]\n" if len(text) > chars else ""
        return f"--- {self.name} ({self.log_path}):\n{cut}{text[-chars:]}"

    def logs(self) -> str:
        """This process's log tail, then those of the related processes."""
        return "\n".join(p.log_tail() for p in [self, *self.related])

    def fail(self, message: str) -> DagsterProcessError:
        return DagsterProcessError(f"{message}\n{self.logs()}")

    def check_alive(self) -> None:
        if not self.alive():
            code = None if self.proc is None else self.proc.returncode
            raise self.fail(f"{self.name} is not running (exit code {code}): {' '.join(self.args)}")

    def start(self, env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.args)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=dict(env), cwd=str(cwd) if cwd else None, start_new_session=True,
            )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to the process group and every descendant, SIGKILL to whatever is left after
        ``grace`` seconds. Safe to call twice, and on a process that already exited."""
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        descendants = _descendants(self.proc.pid)
        _signal_group(self.proc.pid, signal.SIGTERM)
        for pid in descendants:
            _signal_pid(pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_pid_alive(p) for p in descendants):
            time.sleep(0.1)
        _signal_group(self.proc.pid, signal.SIGKILL)
        for pid in descendants:
            _signal_pid(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:  # psutil is a dev dependency; the process group covers the usual case
        return []
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _pid_alive(pid: int) -> bool:
    import psutil  # only called with descendants, which only psutil finds

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextlib.contextmanager
def _managed(process: ManagedProcess, env: Mapping[str, str], cwd: Path | None = None) -> Iterator[ManagedProcess]:
    try:
        process.start(env, cwd)
        yield process
    finally:
        process.stop()


def _wait(process: ManagedProcess, ready, timeout: float, what: str, interval: float = 0.25) -> None:
    """Poll ``ready()`` until true; fail at once if the process dies, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        process.check_alive()
        try:
            if ready():
                return
        except Exception as exc:  # noqa: BLE001 (any failure of the probe means: not up yet)
            last_error = exc
        if time.monotonic() > deadline:
            raise process.fail(f"{process.name}: {what} not within {timeout:.0f}s (last error: {last_error!r})")
        time.sleep(interval)


# ----------------------------------------------------------------------------- code server


@dataclass
class CodeServer(ManagedProcess):
    host: str = "127.0.0.1"
    port: int = 0
    location_name: str = LOCATION_NAME

    def write_workspace(self, path: Path) -> Path:
        """docker/workspace.yaml pointed at this server."""
        declared = write_grpc_workspace(path, self.host, self.port)
        if declared != self.location_name:
            raise ValueError(f"{PRODUCTION_WORKSPACE_YAML} names location {declared!r}, "
                             f"the server {self.location_name!r}")
        return Path(path)


def _grpc_answers(host: str, port: int) -> bool:
    from dagster._grpc.client import DagsterGrpcClient

    DagsterGrpcClient(port=port, host=host).ping("ready")
    return True


@contextlib.contextmanager
def running_code_server(dagster_home: Path, env: Mapping[str, str], module: str = CODE_LOCATION_MODULE,
                        location_name: str = LOCATION_NAME, port: int | None = None,
                        startup_timeout: float = 120.0) -> Iterator[CodeServer]:
    """``dagster code-server start`` (the recon_code_location service's command) on a local port,
    returned once it answers gRPC (it loads the code before it serves)."""
    port = port or free_port()
    server = CodeServer(
        name="code-server",
        args=[_bin("dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port), "-m", module,
              "--location-name", location_name],
        log_path=Path(dagster_home) / PROCESS_LOGS / "code-server.log",
        host="127.0.0.1", port=port, location_name=location_name,
    )
    with _managed(server, env, cwd=dagster_home):
        _wait(server, lambda: _grpc_answers(server.host, server.port), startup_timeout, "gRPC answer")
        yield server


# ----------------------------------------------------------------------------- webserver


class GraphQLError(DagsterProcessError):
    def __init__(self, message: str, errors: Any = None):
        super().__init__(message)
        self.errors = errors


@dataclass
class WebServer(ManagedProcess):
    host: str = "127.0.0.1"
    port: int = 0
    launched_run_ids: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def last_run_id(self) -> str | None:
        return self.launched_run_ids[-1] if self.launched_run_ids else None

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """POST /graphql; the ``data``, or GraphQLError (with the logs) on any ``errors``."""
        self.check_alive()
        try:
            response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})},
                                  timeout=timeout)
        except httpx.HTTPError as exc:
            raise self.fail(f"POST {self.url}/graphql failed: {exc!r}") from exc
        try:
            body = response.json()
        except ValueError:
            raise self.fail(f"POST {self.url}/graphql: HTTP {response.status_code}, "
                            f"not JSON: {response.text[:2000]}") from None
        if body.get("errors") or response.status_code != 200 or body.get("data") is None:
            raise GraphQLError(f"GraphQL errors (HTTP {response.status_code}): "
                               f"{json.dumps(body.get('errors'), indent=1)[:4000]}\nquery: {query}\n{self.logs()}",
                               body.get("errors"))
        return body["data"]

    # --- the workspace

    def location_entries(self) -> list[dict[str, Any]]:
        workspace = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise self.fail(f"workspaceOrError: {workspace}")
        return workspace["locationEntries"]

    def wait_for_locations(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """The location entries once none is still LOADING."""
        entries: list[dict[str, Any]] = []

        def loaded() -> bool:
            nonlocal entries
            entries = self.location_entries()
            return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

        _wait(self, loaded, timeout, "code locations loaded", interval=0.5)
        return entries

    def find_job(self, job_name: str) -> tuple[str, str]:
        """(location name, repository name) of the one loaded repository holding ``job_name``."""
        found, errors = [], []
        for entry in self.location_entries():
            location = entry["locationOrLoadError"] or {}
            if location.get("__typename") == "PythonError":
                errors.append(f"{entry['name']}: {location['message']}")
                continue
            for repository in location.get("repositories", []):
                if job_name in {job["name"] for job in repository["jobs"]}:
                    found.append((location["name"], repository["name"]))
        if len(found) != 1:
            raise self.fail(f"job {job_name!r} found in {found or 'no repository'}; location errors: {errors}")
        return found[0]

    # --- runs

    def launch_run(self, job_name: str, run_config: Mapping[str, Any] | None = None,
                   tags: Mapping[str, str] | None = None, location_name: str | None = None,
                   repository_name: str | None = None) -> str:
        """Submit a run of ``job_name`` through the ``launchRun`` mutation; its run id."""
        if location_name is None or repository_name is None:
            location_name, repository_name = self.find_job(job_name)
        params: dict[str, Any] = {
            "selector": {"repositoryLocationName": location_name, "repositoryName": repository_name,
                         "jobName": job_name},
            "runConfigData": dict(run_config or {}),
        }
        if tags:
            params["executionMetadata"] = {"tags": [{"key": k, "value": str(v)} for k, v in tags.items()]}
        result = self.graphql(LAUNCH_RUN_MUTATION, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise self.fail(f"launchRun {job_name}: {json.dumps(result, indent=1)[:4000]}")
        run_id = result["run"]["runId"]
        self.launched_run_ids.append(run_id)
        return run_id

    def run_status(self, run_id: str) -> str:
        run = self.graphql(RUN_STATUS_QUERY, {"runId": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise self.fail(f"runOrError({run_id}): {run}")
        return run["status"]

    def wait_for_run(self, run_id: str, timeout: float = 180.0, interval: float = 1.0) -> str:
        """Poll until the run ends; its final status (SUCCESS, FAILURE or CANCELED)."""
        deadline = time.monotonic() + timeout
        status = None
        while True:
            status = self.run_status(run_id)
            if status in TERMINAL_RUN_STATUSES:
                return status
            for process in self.related:  # a dead daemon or code server: no point waiting
                process.check_alive()
            if time.monotonic() > deadline:
                hint = " (queued runs need dagster-daemon to dequeue them)" if status == "QUEUED" else ""
                raise self.fail(f"run {run_id} still {status} after {timeout:.0f}s{hint}\n"
                                f"{self.run_report(run_id, with_logs=False)}")
            time.sleep(interval)

    def launch_and_wait(self, job_name: str, run_config: Mapping[str, Any] | None = None,
                        tags: Mapping[str, str] | None = None, timeout: float = 180.0) -> str:
        """Launch ``job_name`` (looked up in the workspace) and wait for it to end; the final
        status. The run id is ``self.last_run_id``; ``run_report(run_id)`` tells why it failed."""
        run_id = self.launch_run(job_name, run_config=run_config, tags=tags)
        return self.wait_for_run(run_id, timeout=timeout)

    def run_report(self, run_id: str | None = None, with_logs: bool = True) -> str:
        """A run's status and its error events (for assertion messages), then the logs."""
        run_id = run_id or self.last_run_id
        lines = [f"run {run_id}:"]
        try:
            lines.append(f"status {self.run_status(run_id)}")
            connection = self.graphql(RUN_EVENTS_QUERY, {"runId": run_id})["logsForRun"]
            for event in connection.get("events", []):
                error = event.get("error")
                if error or event.get("level") in ("ERROR", "CRITICAL"):
                    lines.append(f"{event['__typename']}: {event.get('message')}")
                    if error:  # each error of the chain, and where the innermost was raised
                        chain = [error, *(link["error"] for link in error.get("errorChain") or [])]
                        lines += [f"  {e['message'].strip()}" for e in chain]
                        lines.append("".join((chain[-1].get("stack") or [])[-6:]).rstrip())
        except DagsterProcessError as exc:
            lines.append(f"(could not read the run: {str(exc).splitlines()[0]})")
        return "\n".join(lines) + ("\n" + self.logs() if with_logs else "")


def _server_info(url: str) -> bool:
    return httpx.get(f"{url}/server_info", timeout=5).status_code == 200


@contextlib.contextmanager
def running_webserver(dagster_home: Path, workspace: Path, env: Mapping[str, str], port: int | None = None,
                      startup_timeout: float = 120.0, related: Sequence[ManagedProcess] = ()) -> Iterator[WebServer]:
    """``dagster-webserver -h 127.0.0.1 -p PORT -w WORKSPACE`` (the dagster_webserver service's
    command), returned once ``/server_info`` answers 200 (the compose healthcheck)."""
    port = port or free_port()
    server = WebServer(
        name="webserver",
        args=[_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)],
        log_path=Path(dagster_home) / PROCESS_LOGS / "webserver.log",
        related=list(related), host="127.0.0.1", port=port,
    )
    with _managed(server, env, cwd=dagster_home):
        _wait(server, lambda: _server_info(server.url), startup_timeout, f"{server.url}/server_info")
        yield server


# ----------------------------------------------------------------------------- daemon


@contextlib.contextmanager
def running_daemon(dagster_home: Path, workspace: Path, env: Mapping[str, str], wait_ready: bool = True,
                   startup_timeout: float = 120.0) -> Iterator[ManagedProcess]:
    """``dagster-daemon run -w WORKSPACE`` (the dagster_daemon service's command); with
    ``wait_ready``, returned once ``dagster-daemon liveness-check`` (its healthcheck) passes."""
    daemon = ManagedProcess(
        name="daemon",
        args=[_bin("dagster-daemon"), "run", "-w", str(workspace)],
        log_path=Path(dagster_home) / PROCESS_LOGS / "daemon.log",
    )
    with _managed(daemon, env, cwd=dagster_home):
        if wait_ready:
            wait_daemon_live(daemon, env, dagster_home, startup_timeout)
        yield daemon


def wait_daemon_live(daemon: ManagedProcess, env: Mapping[str, str], cwd: Path, timeout: float = 120.0) -> None:
    def live() -> bool:
        return subprocess.run([_bin("dagster-daemon"), "liveness-check"], check=False, env=dict(env), cwd=str(cwd),
                              capture_output=True, timeout=60).returncode == 0

    _wait(daemon, live, timeout, "liveness-check passing", interval=1.0)


# ----------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    code_server: CodeServer
    webserver: WebServer
    daemon: ManagedProcess | None
    workspace: Path

    @property
    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.code_server, self.webserver, self.daemon) if p is not None]

    def logs(self) -> str:
        return "\n".join(p.log_tail() for p in self.processes)

    def report(self, run_id: str | None = None) -> str:
        return self.webserver.run_report(run_id)


@contextlib.contextmanager
def running_stack(dagster_home: Path, env: Mapping[str, str], with_daemon: bool = True,
                  startup_timeout: float = 120.0) -> Iterator[Stack]:
    """The docker/ topology as local processes: the code server, then the webserver and the
    daemon (started together), both loading the code location over gRPC through
    docker/workspace.yaml with host and port swapped. Returned with the location loaded."""
    dagster_home = Path(dagster_home)
    with contextlib.ExitStack() as stack:
        code_server = stack.enter_context(running_code_server(dagster_home, env, startup_timeout=startup_timeout))
        workspace = code_server.write_workspace(dagster_home / "workspace.yaml")
        daemon = None
        if with_daemon:  # started before the webserver, checked after it: they start in parallel
            daemon = stack.enter_context(running_daemon(dagster_home, workspace, env, wait_ready=False))
        related = [code_server, *([daemon] if daemon else [])]
        webserver = stack.enter_context(running_webserver(dagster_home, workspace, env, related=related,
                                                          startup_timeout=startup_timeout))
        if daemon is not None:
            daemon.related = [code_server]
            wait_daemon_live(daemon, env, dagster_home, startup_timeout)
        webserver.wait_for_locations(startup_timeout)
        yield Stack(code_server=code_server, webserver=webserver, daemon=daemon, workspace=workspace)


# ----------------------------------------------------------------------------- GraphQL documents
# Field names as in the installed dagster-graphql schema; graphql_schema_problems() checks them.

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name jobs { name } } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message stack }
  }
}
"""

ASSET_NODES_QUERY = """
query AssetNodes {
  assetNodes { assetKey { path } groupName jobNames isMaterializable }
}
"""

INSTANCE_QUERY = """
query Instance {
  instance {
    runLauncher { name }
    runQueuingSupported
    runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml }
    daemonHealth { allDaemonStatuses { daemonType required healthy } }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message path } }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

RUN_STATUS_QUERY = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status }
    ... on RunNotFoundError { message }
    ... on PythonError { message stack }
  }
}
"""

RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      runId
      status
      jobName
      tags { key value }
      assetMaterializations { assetKey { path } }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message stack }
  }
}
"""

RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level eventType }
        ... on ErrorEvent { error { message stack errorChain { error { message stack } } } }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message stack }
  }
}
"""

GRAPHQL_DOCUMENTS = {
    "WORKSPACE_QUERY": WORKSPACE_QUERY,
    "ASSET_NODES_QUERY": ASSET_NODES_QUERY,
    "INSTANCE_QUERY": INSTANCE_QUERY,
    "LAUNCH_RUN_MUTATION": LAUNCH_RUN_MUTATION,
    "RUN_STATUS_QUERY": RUN_STATUS_QUERY,
    "RUN_QUERY": RUN_QUERY,
    "RUN_EVENTS_QUERY": RUN_EVENTS_QUERY,
}


def graphql_schema_problems(documents: Mapping[str, str] = GRAPHQL_DOCUMENTS) -> list[str]:
    """Validate GraphQL documents against the installed dagster-graphql schema (no server)."""
    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    schema = create_schema().graphql_schema
    problems = []
    for name, document in documents.items():
        problems += [f"{name}: {error.message}" for error in validate(schema, parse(document))]
    return problems
