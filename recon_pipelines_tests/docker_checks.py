"""Static checks of the deployment files in docker/, runnable without a Docker engine.

Every ``check_*`` function returns a list of problems (empty when all is well), so the
same code checks the real files and, in the tests, deliberately broken copies of them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shlex
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
INSTANCE_YAML = DOCKER_DIR / "dagster.yaml"
WORKSPACE_YAML = DOCKER_DIR / "workspace.yaml"

DEPENDS_ON_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART_POLICY = re.compile(r"^(no|always|unless-stopped|on-failure(:\d+)?)$")
# Compose interpolation: $$ is a literal dollar; ${VAR}, ${VAR:-x}, ${VAR?err}, ... and $VAR.
_COMPOSE_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
_SHELL_OPERATORS = {";", "&&", "||", "|", "&"}
# pip options that change how, not what, is installed
_COSMETIC_PIP_OPTIONS = {"--no-cache-dir", "--disable-pip-version-check", "-q", "--quiet", "-U", "--upgrade",
                         "--no-input", "--progress-bar=off", "--root-user-action=ignore"}


# ----------------------------------------------------------------------------- loading


def load_yaml(path: Path) -> tuple[Any, list[str]]:
    """The parsed file, or None and the reason it cannot be parsed."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8")), []
    except FileNotFoundError:
        return None, [f"{path}: file not found"]
    except yaml.YAMLError as exc:
        return None, [f"{path}: not valid YAML: {exc}"]


def parse_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose .env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if sep:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[name.strip()] = value
    return values


def check_env_example(path: Path) -> list[str]:
    """The template parses, declares each variable once, and holds no real-looking secret."""
    problems = []
    seen: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, sep, value = stripped.removeprefix("export ").partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            problems.append(f"{path}:{number}: not a VAR=value line: {stripped!r}")
            continue
        if name in seen:
            problems.append(f"{path}:{number}: {name} is declared twice")
        seen.add(name)
        if re.search(r"xox[abposr]-\d+-|-----BEGIN [A-Z ]*PRIVATE KEY-----|ghp_[A-Za-z0-9]{20,}", value):
            problems.append(f"{path}:{number}: {name} looks like a real secret; use a placeholder")
    return problems


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str):
                yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def compose_variables(node: Any) -> set[str]:
    """Names interpolated by Compose in a parsed compose file (``$$`` escapes are not variables)."""
    names = set()
    for text in _strings(node):
        for match in _COMPOSE_VAR.finditer(text):
            if not match.group(1):
                names.add(match.group(2) or match.group(3))
    return names


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-style interpolation of ``text`` (enough of it for these files)."""

    def sub(match: re.Match) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(3)
        return env.get(name, "")

    return _COMPOSE_VAR.sub(sub, text)


# ----------------------------------------------------------------------------- compose


def _services(compose: Any) -> dict[str, dict]:
    services = compose.get("services") if isinstance(compose, Mapping) else None
    return services if isinstance(services, dict) else {}


def _volume_source(entry: Any) -> tuple[str | None, str]:
    """(source, type) of a service volume in short (``src:dst[:mode]``) or long syntax."""
    if isinstance(entry, Mapping):
        return entry.get("source"), entry.get("type", "volume")
    parts = str(entry).split(":")
    if len(parts) == 1:
        return None, "anonymous"
    source = parts[0]
    if source.startswith((".", "/", "~", "$")):
        return source, "bind"
    return source, "volume"


def check_compose(compose_path: Path, env_example_path: Path) -> list[str]:
    """The compose file parses; dependencies, volumes, networks, restart policies and every
    interpolated variable resolve against the file itself and the .env template."""
    compose, problems = load_yaml(compose_path)
    if problems:
        return problems
    services = _services(compose)
    if not services:
        return [f"{compose_path}: no services"]
    compose_dir = Path(compose_path).parent
    declared_volumes = set((compose.get("volumes") or {}).keys())
    declared_networks = set((compose.get("networks") or {}).keys())
    env_names = set(parse_env_file(env_example_path)) if Path(env_example_path).exists() else set()
    if not Path(env_example_path).exists():
        problems.append(f"{env_example_path}: file not found")

    for name in sorted(compose_variables(compose) - env_names):
        problems.append(f"{compose_path}: ${{{name}}} is not declared in {Path(env_example_path).name}")

    for name, service in services.items():
        where = f"{compose_path}: service {name}"
        if not isinstance(service, Mapping):
            problems.append(f"{where}: not a mapping")
            continue
        if "image" not in service and "build" not in service:
            problems.append(f"{where}: neither image nor build")

        restart = service.get("restart")
        if restart is None:
            problems.append(f"{where}: no restart policy")
        elif not RESTART_POLICY.match(str(restart)):
            problems.append(f"{where}: unknown restart policy {restart!r}")

        depends_on = service.get("depends_on") or {}
        items = depends_on.items() if isinstance(depends_on, Mapping) else ((d, None) for d in depends_on)
        for target, spec in items:
            if target not in services:
                problems.append(f"{where}: depends_on {target!r}, which is not a service")
                continue
            condition = spec.get("condition", "service_started") if isinstance(spec, Mapping) else "service_started"
            if condition not in DEPENDS_ON_CONDITIONS:
                problems.append(f"{where}: depends_on {target!r} with unknown condition {condition!r}")
            if condition == "service_healthy" and not (services[target] or {}).get("healthcheck"):
                problems.append(f"{where}: waits for {target!r} to be healthy, but {target!r} has no healthcheck")

        for entry in service.get("volumes") or []:
            source, kind = _volume_source(entry)
            if kind == "volume" and source not in declared_volumes:
                problems.append(f"{where}: named volume {source!r} is not declared under top-level volumes")
            if kind == "bind" and source and source.startswith(".") and not (compose_dir / source).exists():
                problems.append(f"{where}: bind mount source {source!r} does not exist")

        networks = service.get("networks") or []
        for network in networks.keys() if isinstance(networks, Mapping) else networks:
            if network not in declared_networks:
                problems.append(f"{where}: network {network!r} is not declared under top-level networks")

        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, (str, Mapping)) else env_files:
            path = env_file.get("path") if isinstance(env_file, Mapping) else env_file
            required = env_file.get("required", True) if isinstance(env_file, Mapping) else True
            target = compose_dir / str(path)
            # the real .env is not committed: its template must be
            if required and not target.exists() and not Path(f"{target}.example").exists():
                problems.append(f"{where}: env_file {path!r} has neither the file nor a {path}.example template")

        healthcheck = service.get("healthcheck") or {}
        test = healthcheck.get("test") if isinstance(healthcheck, Mapping) else None
        if healthcheck and not test:
            problems.append(f"{where}: healthcheck without a test")
    return problems


def compose_builds(compose_path: Path) -> list[tuple[str, Path, Path]]:
    """(service, Dockerfile, build context) of every service the compose file builds."""
    compose, problems = load_yaml(compose_path)
    builds = []
    for name, service in _services(compose).items():
        build = (service or {}).get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (Path(compose_path).parent / build.get("context", ".")).resolve()
        builds.append((name, context / build.get("dockerfile", "Dockerfile"), context))
    return builds


def check_compose_builds(compose_path: Path) -> list[str]:
    problems = []
    for service, dockerfile, context in compose_builds(compose_path):
        if not context.is_dir():
            problems.append(f"{compose_path}: service {service}: build context {context} is not a directory")
        elif not dockerfile.is_file():
            problems.append(f"{compose_path}: service {service}: Dockerfile {dockerfile} not found")
    return problems


def service_environment(service: Mapping, env: Mapping[str, str]) -> dict[str, str]:
    """The ``environment:`` of a service, interpolated with ``env``."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: interpolate(str(value), env) for key, value in raw.items()}


def declared_names(compose: Any, section: str) -> set[str]:
    """The actual Docker names of the top-level volumes/networks (``name:`` or the key)."""
    names = set()
    for key, spec in (compose.get(section) or {}).items():
        names.add((spec or {}).get("name", key) if isinstance(spec, Mapping) else key)
    return names


# ----------------------------------------------------------------------------- Dockerfiles


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, arguments = line.partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
    if pending:
        instruction, _, arguments = pending.strip().partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
    return instructions


def _exec_or_shell(arguments: str) -> list[str]:
    if arguments.startswith("["):
        try:
            return [str(item) for item in json.loads(arguments)]
        except json.JSONDecodeError:
            pass
    return shlex.split(arguments)


def check_dockerfile_copy_sources(dockerfile: Path, context: Path) -> list[str]:
    """Every COPY/ADD source (other than from a build stage or a URL) exists in the context."""
    problems = []
    for instruction, arguments in dockerfile_instructions(dockerfile):
        if instruction not in ("COPY", "ADD"):
            continue
        words = _exec_or_shell(arguments)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        if any(f.startswith("--from") for f in flags) or len(paths) < 2:
            continue
        for source in paths[:-1]:
            if re.match(r"^[a-z]+://", source):
                continue
            if not glob.glob(str(context / source)):
                problems.append(f"{dockerfile}: {instruction} source {source!r} does not exist in {context}")
    return problems


def split_shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell line, split on ; && || | & outside quotes."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in _SHELL_OPERATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_install_targets(command: list[str]) -> tuple[str, ...] | None:
    """What a ``pip install`` command installs (options that only change how are dropped);
    None if the command is not a pip install."""
    words = list(command)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value prefixes
        words.pop(0)
    if len(words) >= 3 and re.fullmatch(r"python(3(\.\d+)?)?", Path(words[0]).name) and words[1:3] == ["-m", "pip"]:
        words = ["pip", *words[3:]]
    if len(words) < 2 or not re.fullmatch(r"pip3?(\.\d+)?", Path(words[0]).name) or words[1] != "install":
        return None
    return tuple(w for w in words[2:] if w not in _COSMETIC_PIP_OPTIONS)


def dockerfile_pip_installs(dockerfile: Path) -> list[tuple[str, ...]]:
    installs = []
    for instruction, arguments in dockerfile_instructions(dockerfile):
        if instruction != "RUN":
            continue
        script = " ".join(_exec_or_shell(arguments)) if arguments.startswith("[") else arguments
        for command in split_shell_commands(script):
            targets = pip_install_targets(command)
            if targets is not None:
                installs.append(targets)
    return installs


def check_dockerfile_installs_project(dockerfile: Path, install_command: str = "pip install .") -> list[str]:
    """The Dockerfile installs the project with ``install_command`` (the README's install step),
    up to options that do not change what is installed (--no-cache-dir, -q, ...)."""
    expected = [pip_install_targets(c) for c in split_shell_commands(install_command)]
    expected = [e for e in expected if e is not None]
    if len(expected) != 1:
        return [f"install command {install_command!r} is not one pip install"]
    if expected[0] in dockerfile_pip_installs(dockerfile):
        return []
    return [f"{dockerfile}: does not run {install_command!r} (pip installs found: {dockerfile_pip_installs(dockerfile)})"]


def dockerfile_cmd(dockerfile: Path) -> list[str]:
    cmd: list[str] = []
    for instruction, arguments in dockerfile_instructions(dockerfile):
        if instruction == "CMD":
            cmd = _exec_or_shell(arguments)
    return cmd


def option_value(command: list[str], *names: str) -> str | None:
    for i, word in enumerate(command):
        if word in names and i + 1 < len(command):
            return command[i + 1]
        for name in names:
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def service_command(compose_path: Path, service: str) -> list[str]:
    """The command a compose service runs: its ``command:``, else its Dockerfile's CMD."""
    compose, _ = load_yaml(compose_path)
    spec = _services(compose).get(service) or {}
    if spec.get("command"):
        command = spec["command"]
        return list(command) if isinstance(command, list) else shlex.split(command)
    for name, dockerfile, _context in compose_builds(compose_path):
        if name == service and dockerfile.is_file():
            return dockerfile_cmd(dockerfile)
    return []


def check_workspace(workspace_path: Path, compose_path: Path) -> list[str]:
    """Each gRPC code location in the workspace is a compose service serving on that port,
    under that location name."""
    workspace, problems = load_yaml(workspace_path)
    if problems:
        return problems
    services = _services(load_yaml(compose_path)[0])
    entries = (workspace or {}).get("load_from") or []
    if not entries:
        return [f"{workspace_path}: load_from is empty"]
    for entry in entries:
        server = (entry or {}).get("grpc_server")
        if not server:
            problems.append(f"{workspace_path}: {entry!r} is not a grpc_server entry")
            continue
        host, port, location = server.get("host"), server.get("port"), server.get("location_name")
        if host not in services:
            problems.append(f"{workspace_path}: grpc_server host {host!r} is not a compose service")
            continue
        command = service_command(compose_path, host)
        served_port = option_value(command, "-p", "--port")
        if str(served_port) != str(port):
            problems.append(f"{workspace_path}: {host} serves on port {served_port}, workspace says {port}")
        served_location = option_value(command, "--location-name")
        if served_location and served_location != location:
            problems.append(f"{workspace_path}: {host} serves location {served_location!r}, workspace says {location!r}")
    return problems


# ----------------------------------------------------------------------------- dagster.yaml


def instance_env_vars(node: Any) -> set[str]:
    """Every ``{env: VAR}`` in a Dagster config tree."""
    names: set[str] = set()
    if isinstance(node, Mapping):
        if set(node.keys()) == {"env"} and isinstance(node["env"], str):
            names.add(node["env"])
        for value in node.values():
            names |= instance_env_vars(value)
    elif isinstance(node, list):
        for item in node:
            names |= instance_env_vars(item)
    return names


def _launcher_env_names(instance: Mapping) -> list[str]:
    config = ((instance.get("run_launcher") or {}).get("config")) or {}
    return [str(item).split("=", 1)[0] for item in config.get("env_vars") or [] if "=" not in str(item)]


def check_instance_env(instance_path: Path, env_example_path: Path) -> list[str]:
    """Every variable the instance reads, and every variable the run launcher forwards from the
    daemon's environment, is in the .env template; and the launcher forwards all that the
    instance reads, since each run container rebuilds the instance from this config."""
    instance, problems = load_yaml(instance_path)
    if problems:
        return problems
    env_names = set(parse_env_file(env_example_path))
    read = instance_env_vars(instance)
    forwarded = _launcher_env_names(instance)
    for name in sorted(read - env_names):
        problems.append(f"{instance_path}: {{env: {name}}} is not declared in {Path(env_example_path).name}")
    for name in sorted(set(forwarded) - env_names):
        problems.append(f"{instance_path}: run_launcher forwards {name}, which is not declared in "
                        f"{Path(env_example_path).name}")
    if (instance.get("run_launcher") or {}).get("class") == "DockerRunLauncher":
        for name in sorted(read - set(forwarded)):
            problems.append(f"{instance_path}: run containers need {name} to load the instance, "
                            "but run_launcher.config.env_vars does not forward it")
    return problems


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _config_errors(where: str, result: Any) -> list[str]:
    return [f"{where}: {error.message}" for error in result.errors]


def docker_run_launcher_schema() -> Any:
    """DockerRunLauncher's config schema: from dagster-docker when it is installed (it is in the
    images, not in the project's environment), else a copy of dagster-docker 0.29's schema."""
    try:
        from dagster_docker import DockerRunLauncher

        return DockerRunLauncher.config_type()
    except ImportError:
        from dagster import Field, StringSource

        return {
            "image": Field(StringSource, is_required=False),
            "network": Field(StringSource, is_required=False),
            **docker_container_context_schema(),
        }


def docker_container_context_schema() -> Any:
    """The ``docker`` part of a code location's container context (dagster-docker 0.29)."""
    try:
        from dagster_docker.container_context import DOCKER_CONTAINER_CONTEXT_SCHEMA

        return DOCKER_CONTAINER_CONTEXT_SCHEMA
    except ImportError:
        from dagster import Array, Field, Permissive, StringSource

        return {
            "registry": Field(
                {"url": Field(StringSource), "username": Field(StringSource), "password": Field(StringSource)},
                is_required=False,
            ),
            "env_vars": Field([str], is_required=False),
            "container_kwargs": Field(Permissive(), is_required=False),
            "networks": Field(Array(StringSource), is_required=False),
        }


def _docker_kwargs_problems(where: str, config: Mapping) -> list[str]:
    """dagster-docker's own extra rules (``validate_docker_config``)."""
    problems = []
    if config.get("network") and config.get("networks"):
        problems.append(f"{where}: cannot set both network and networks")
    for key, use in (("image", "image"), ("environment", "env_vars"), ("network", "networks")):
        if key in (config.get("container_kwargs") or {}):
            problems.append(f"{where}: container_kwargs.{key} is not allowed; use {use}")
    return problems


def check_instance_config(instance_path: Path, env: Mapping[str, str]) -> list[str]:
    """Validate the instance config with Dagster's own schema (``dagster_instance_config``, what
    ``DagsterInstance.get()`` uses), then each configurable class's config against that class's
    schema, with ``env`` as the environment. Nothing is connected to."""
    from dagster._config import process_config
    from dagster._core.errors import DagsterInvalidConfigError
    from dagster._core.instance.config import dagster_instance_config
    from dagster._serdes import class_from_code_pointer

    instance, problems = load_yaml(instance_path)
    if problems:
        return problems
    with _environment(env), tempfile.TemporaryDirectory() as home:
        Path(home, "dagster.yaml").write_text(Path(instance_path).read_text(encoding="utf-8"), encoding="utf-8")
        try:
            dagster_instance_config(home)
        except DagsterInvalidConfigError as exc:
            return [f"{instance_path}: {exc}"]

        storage = (instance.get("storage") or {}).get("postgres")
        if storage is not None:
            from dagster_postgres import DagsterPostgresStorage
            from dagster_postgres.utils import pg_url_from_config

            result = process_config(DagsterPostgresStorage.config_type(), storage)
            if not result.success:
                problems += _config_errors(f"{instance_path}: storage.postgres", result)
            else:
                import sqlalchemy as sa

                url = sa.make_url(pg_url_from_config(result.value))
                try:
                    driver = url.get_dialect().driver
                except Exception as exc:  # e.g. the dialect's DBAPI module is not installed
                    driver = f"<unloadable: {exc}>"
                if driver != "psycopg2":
                    problems.append(f"{instance_path}: storage connects with driver {driver!r}, not psycopg2 "
                                    "(set postgres_db.scheme: postgresql+psycopg2)")

        for section in ("run_coordinator", "scheduler", "compute_logs", "local_artifact_storage"):
            spec = instance.get(section)
            if not spec:
                continue
            try:
                cls = class_from_code_pointer(spec["module"], spec["class"])
            except Exception as exc:
                problems.append(f"{instance_path}: {section}: cannot load {spec['module']}.{spec['class']}: {exc}")
                continue
            result = process_config(cls.config_type(), spec.get("config") or {})
            if not result.success:
                problems += _config_errors(f"{instance_path}: {section}", result)

        launcher = instance.get("run_launcher")
        if launcher and launcher.get("class") == "DockerRunLauncher":
            result = process_config(docker_run_launcher_schema(), launcher.get("config") or {})
            if not result.success:
                problems += _config_errors(f"{instance_path}: run_launcher", result)
            problems += _docker_kwargs_problems(f"{instance_path}: run_launcher", launcher.get("config") or {})
        elif launcher:
            try:
                cls = class_from_code_pointer(launcher["module"], launcher["class"])
                result = process_config(cls.config_type(), launcher.get("config") or {})
                if not result.success:
                    problems += _config_errors(f"{instance_path}: run_launcher", result)
            except ImportError as exc:
                problems.append(f"{instance_path}: run_launcher: cannot load {launcher['module']}: {exc}")
    return problems


def check_container_context(compose_path: Path, instance_path: Path, env: Mapping[str, str]) -> list[str]:
    """DAGSTER_CONTAINER_CONTEXT of each compose service is valid JSON for the Docker container
    context; the named volumes it mounts into run containers, and the launcher's network, are
    the Docker names of volumes and networks the compose file declares."""
    from dagster._config import process_config

    compose, problems = load_yaml(compose_path)
    instance, more = load_yaml(instance_path)
    problems += more
    if problems:
        return problems
    volume_names = declared_names(compose, "volumes")
    network_names = declared_names(compose, "networks")

    launcher_config = ((instance.get("run_launcher") or {}).get("config")) or {}
    for network in [launcher_config.get("network"), *(launcher_config.get("networks") or [])]:
        if network and network not in network_names:
            problems.append(f"{instance_path}: run_launcher network {network!r} is not a network "
                            f"{Path(compose_path).name} creates (declared names: {sorted(network_names)})")

    for name, service in _services(compose).items():
        raw = service_environment(service or {}, env).get("DAGSTER_CONTAINER_CONTEXT")
        if raw is None:
            continue
        where = f"{compose_path}: service {name}: DAGSTER_CONTAINER_CONTEXT"
        try:
            context = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON: {exc}")
            continue
        docker = context.get("docker") or {}
        result = process_config(docker_container_context_schema(), docker)
        if not result.success:
            problems += _config_errors(where, result)
        problems += _docker_kwargs_problems(where, docker)
        for entry in (docker.get("container_kwargs") or {}).get("volumes") or []:
            source = str(entry).split(":", 1)[0]
            if not source:
                problems.append(f"{where}: volume {entry!r} has an empty host path")
            elif source.startswith((".", "~")):
                problems.append(f"{where}: volume {entry!r}: the Docker API needs an absolute host path")
            elif not source.startswith("/") and source not in volume_names:
                problems.append(f"{where}: run containers mount volume {source!r}, which "
                                f"{Path(compose_path).name} does not declare (declared names: {sorted(volume_names)})")
    return problems


def env_for_validation(env_example_path: Path) -> dict[str, str]:
    """The template's values, with a dummy for each empty one, as the environment to validate with."""
    return {name: value or f"dummy-{name.lower()}" for name, value in parse_env_file(env_example_path).items()}


# ----------------------------------------------------------------------------- closed by default
#
# What `docker compose config` cannot say: who is reachable from where, which container holds
# which secret, what refuses a placeholder, what runs as root. Each rule takes the policy (which
# service may do what) as an argument, so the tests state the threat model and these functions
# only check files against it.

CADDYFILE = DOCKER_DIR / "Caddyfile"
SECRETS_GUARD = DOCKER_DIR / "require-secrets.sh"
GUARD_NAME = "recon-require-secrets"
REQUIRED_SECRETS_ENV = "RECON_REQUIRED_SECRETS"
LOOPBACK_ADDRESSES = {"127.0.0.1", "::1", "localhost"}
DOCKER_SOCKETS = {"/var/run/docker.sock", "/run/docker.sock", "/var/run", "/run"}
# Template variables that hold credentials (a URL may carry a password or a token).
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_HASH$|TRACKER_URL$|WEBHOOK_URL$")
# An exact release (python:3.11.13-slim-bookworm, caddy:2.10.0-alpine), or a digest. `3.11-slim`
# is a moving tag: it follows every 3.11.x. PostgreSQL numbers releases major.minor since 10.
_PINNED_TAG = re.compile(r"^\d+\.\d+\.\d+(?:-[\w.-]+)?$")
_TWO_PART_RELEASES = {"postgres"}
_PINNED_TWO_PART_TAG = re.compile(r"^\d+\.\d+(?:-[\w.-]+)?$")
_ROOT_USERS = {"root", "0", "0:0", "root:root"}


def secret_variables(env_example_path: Path) -> dict[str, str]:
    """The template's credential variables and their placeholder values."""
    return {name: value for name, value in parse_env_file(env_example_path).items() if SECRET_NAME.search(name)}


def parse_port(entry: Any, env: Mapping[str, str]) -> tuple[str | None, str | None, str]:
    """(host address or None, host port or None, container port) of a ``ports:`` entry, short or
    long syntax, after interpolation with ``env``."""
    if isinstance(entry, Mapping):
        host_ip = entry.get("host_ip")
        published = entry.get("published")
        return (interpolate(str(host_ip), env) if host_ip else None,
                interpolate(str(published), env) if published is not None else None, str(entry.get("target")))
    text = interpolate(str(entry), env).split("/", 1)[0]
    bracketed = re.fullmatch(r"\[([^\]]+)\]:([^:]*):(.+)", text)  # [::1]:8080:80
    if bracketed:
        return bracketed.group(1), bracketed.group(2), bracketed.group(3)
    parts = text.split(":")
    if len(parts) == 1:
        return None, None, parts[0]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def check_published_ports(compose_path: Path, env: Mapping[str, str], may_publish: set[str]) -> list[str]:
    """Only the services in ``may_publish`` publish ports, each on an explicit loopback host
    address (with the template's values: the default an operator starts from); none uses the
    host's network namespace."""
    compose, problems = load_yaml(compose_path)
    if problems:
        return problems
    for name, service in _services(compose).items():
        where = f"{compose_path}: service {name}"
        if str((service or {}).get("network_mode", "")).startswith("host"):
            problems.append(f"{where}: network_mode host exposes every port it listens on")
        for entry in (service or {}).get("ports") or []:
            host_ip, host_port, target = parse_port(entry, env)
            if name not in may_publish:
                problems.append(f"{where}: publishes port {target}; only {sorted(may_publish)} may publish ports")
            elif not host_ip:
                problems.append(f"{where}: port {target} is published on every host interface; "
                                "give a host address (127.0.0.1 by default)")
            elif host_ip not in LOOPBACK_ADDRESSES:
                problems.append(f"{where}: port {target} is published on {host_ip} by default, not on loopback")
    return problems


def check_docker_socket(compose_path: Path, may_mount: set[str]) -> list[str]:
    """Only the services in ``may_mount`` mount the Docker socket (root on the host)."""
    compose, problems = load_yaml(compose_path)
    if problems:
        return problems
    for name, service in _services(compose).items():
        for entry in (service or {}).get("volumes") or []:
            source, _kind = _volume_source(entry)
            if source and source.rstrip("/") in DOCKER_SOCKETS and name not in may_mount:
                problems.append(f"{compose_path}: service {name} mounts the Docker socket ({source}); "
                                f"only {sorted(may_mount)} may")
    return problems


def check_service_secrets(compose_path: Path, env_example_path: Path, may_receive: Mapping[str, set[str]]) -> list[str]:
    """No service reads the whole .env (env_file), and each receives only the credential
    variables ``may_receive`` grants it."""
    compose, problems = load_yaml(compose_path)
    if problems:
        return problems
    secrets = set(secret_variables(env_example_path))
    for name, service in _services(compose).items():
        where = f"{compose_path}: service {name}"
        if (service or {}).get("env_file"):
            problems.append(f"{where}: env_file passes every variable of the file; list the ones it needs "
                            "under environment:")
        for secret in sorted((compose_variables(service) & secrets) - set(may_receive.get(name, ()))):
            problems.append(f"{where}: receives {secret}, which it has no need for")
    return problems


def _entrypoint(compose_path: Path, service_name: str, service: Mapping) -> list[str]:
    if service.get("entrypoint"):
        entry = service["entrypoint"]
        return list(entry) if isinstance(entry, list) else shlex.split(entry)
    for name, dockerfile, _context in compose_builds(compose_path):
        if name == service_name and dockerfile.is_file():
            entry: list[str] = []
            for instruction, arguments in dockerfile_instructions(dockerfile):
                if instruction == "ENTRYPOINT":
                    entry = _exec_or_shell(arguments)
            return entry
    return []


def check_secrets_guarded(compose_path: Path, env_example_path: Path) -> list[str]:
    """Every service that receives a credential with a placeholder in the template starts
    through the guard (docker/require-secrets.sh), and names that credential's container
    variable in RECON_REQUIRED_SECRETS; a compose-mounted guard's source is the guard."""
    compose, problems = load_yaml(compose_path)
    if problems:
        return problems
    placeholders = {name for name, value in secret_variables(env_example_path).items() if value}
    for name, service in _services(compose).items():
        service = service or {}
        where = f"{compose_path}: service {name}"
        raw_env = service.get("environment") or {}
        if isinstance(raw_env, list):
            raw_env = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw_env)
        needed = {key for key, value in raw_env.items() if compose_variables(str(value)) & placeholders}
        if not needed:
            continue
        entrypoint = _entrypoint(compose_path, name, service)
        if not entrypoint or Path(entrypoint[0]).name != GUARD_NAME:
            problems.append(f"{where}: receives {sorted(needed)} but does not start through {GUARD_NAME} "
                            f"(entrypoint: {entrypoint})")
        declared = set(str(raw_env.get(REQUIRED_SECRETS_ENV, "")).split())
        for key in sorted(needed - declared):
            problems.append(f"{where}: {key} is not in {REQUIRED_SECRETS_ENV}, so a placeholder value would be accepted")
        for entry in service.get("volumes") or []:
            parts = str(entry).split(":")
            if len(parts) >= 2 and Path(parts[1]).name == GUARD_NAME:
                source = (Path(compose_path).parent / parts[0]).resolve()
                if source.name != SECRETS_GUARD.name or not source.is_file():
                    problems.append(f"{where}: mounts {parts[0]} as {GUARD_NAME}, not the guard script")
    return problems


def run_secrets_guard(script: Path, environment: Mapping[str, str], required: list[str],
                      command: tuple[str, ...] = ("echo", "started")) -> tuple[int, str, str]:
    """Run the guard as an entrypoint would (POSIX sh, a clean environment):
    (exit code, stdout, stderr)."""
    import subprocess

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment, REQUIRED_SECRETS_ENV: " ".join(required)}
    done = subprocess.run(["sh", str(script), *command], env=env, capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout, done.stderr


def _image_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return False
    pattern = _PINNED_TWO_PART_TAG if name.rsplit("/", 1)[-1] in _TWO_PART_RELEASES else _PINNED_TAG
    return bool(pattern.match(tag))


def check_images_pinned(compose_path: Path) -> list[str]:
    """Every image pulled (a service without build, every FROM of a built Dockerfile) is an
    exact release or a digest, never a moving tag such as ``15`` or ``latest``."""
    compose, problems = load_yaml(compose_path)
    if problems:
        return problems
    for name, service in _services(compose).items():
        if "build" not in (service or {}) and not _image_pinned(str((service or {}).get("image", ""))):
            problems.append(f"{compose_path}: service {name}: image {service.get('image')!r} is not pinned "
                            "to an exact version or digest")
    for service, dockerfile, _context in compose_builds(compose_path):
        if not dockerfile.is_file():
            continue
        stages = set()
        for instruction, arguments in dockerfile_instructions(dockerfile):
            if instruction != "FROM":
                continue
            words = [w for w in arguments.split() if not w.startswith("--")]
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2])
            if words and words[0] not in stages and words[0] != "scratch" and not _image_pinned(words[0]):
                problems.append(f"{dockerfile}: FROM {words[0]} is not pinned to an exact version or digest")
    return problems


def check_non_root(compose_path: Path) -> list[str]:
    """Every built image ends with a non-root USER; every other service sets a non-root ``user:``
    (a compose ``user:`` overrides the image's)."""
    compose, problems = load_yaml(compose_path)
    if problems:
        return problems
    built = {service: dockerfile for service, dockerfile, _context in compose_builds(compose_path)}
    for name, service in _services(compose).items():
        override = (service or {}).get("user")
        if override is not None:
            if str(override) in _ROOT_USERS:
                problems.append(f"{compose_path}: service {name} runs as {override}")
            continue
        if name not in built:
            problems.append(f"{compose_path}: service {name} runs its image's default user (root for most); "
                            "set user:")
            continue
        users = [args.split()[0] for instruction, args in dockerfile_instructions(built[name])
                 if instruction == "USER" and args.split()]
        if not users or users[-1] in _ROOT_USERS:
            problems.append(f"{built[name]}: the image runs as root (no final non-root USER)")
    return problems


# ----------------------------------------------------------------------------- the proxy


def caddyfile_lines(path: Path) -> list[str]:
    """The Caddyfile's lines, comments and blank lines dropped, whitespace collapsed."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = " ".join(raw.split("#", 1)[0].split()) if not raw.strip().startswith("#") else ""
        if line:
            lines.append(line)
    return lines


IDENTITY_HEADER = "X-Forwarded-User"
# Headers some upstreams take as the user's identity: a client must not be able to send them.
SPOOFABLE_IDENTITY_HEADERS = ("Remote-User", "X-Remote-User", "X-Forwarded-Email", "X-Forwarded-Preferred-Username",
                              "X-Auth-Request-User", "X-Auth-Request-Email")


def check_caddyfile(caddyfile: Path, compose_path: Path, proxy_service: str, upstream_service: str) -> list[str]:
    """The proxy authenticates (basic_auth with a hash from the environment), keeps its admin
    API off, forwards to the webserver's port, replaces the identity header with the
    authenticated user and strips the other identity headers and the credentials; every
    {$VAR} it reads is in the proxy service's environment."""
    try:
        lines = caddyfile_lines(caddyfile)
    except FileNotFoundError:
        return [f"{caddyfile}: file not found"]
    text = "\n".join(lines)
    problems = []
    if "admin off" not in lines:
        problems.append(f"{caddyfile}: the admin API is not turned off (admin off)")
    auth = re.search(r"^basic_auth(?: [^{]*)? \{\n(.*?)\n\}", text, re.S | re.M)
    if not auth:
        problems.append(f"{caddyfile}: no basic_auth block: the UI would be served to anyone")
    elif not re.fullmatch(r"\S+ \{\$[A-Z0-9_]+\}", auth.group(1).strip().splitlines()[0]):
        problems.append(f"{caddyfile}: basic_auth account is not '<user> {{$HASH_VARIABLE}}'")
    if f"header_up {IDENTITY_HEADER} {{http.auth.user.id}}" not in lines:
        problems.append(f"{caddyfile}: {IDENTITY_HEADER} is not set to the authenticated user")
    for header in (*SPOOFABLE_IDENTITY_HEADERS, "Authorization"):
        if f"header_up -{header}" not in lines:
            problems.append(f"{caddyfile}: a client-sent {header} header reaches the upstream")

    compose, more = load_yaml(compose_path)
    problems += more
    services = _services(compose)
    proxy_env = set((services.get(proxy_service) or {}).get("environment") or {})
    for name in sorted(set(re.findall(r"\{\$([A-Za-z_][A-Za-z0-9_]*)\}", text)) - proxy_env):
        problems.append(f"{caddyfile}: reads {{${name}}}, which service {proxy_service} does not set")
    upstream = re.search(r"^reverse_proxy (\S+)", text, re.M)
    if not upstream:
        problems.append(f"{caddyfile}: no reverse_proxy")
    else:
        target = upstream.group(1)
        variable = re.fullmatch(r"\{\$([A-Za-z_][A-Za-z0-9_]*)\}", target)
        if variable:
            target = str(((services.get(proxy_service) or {}).get("environment") or {}).get(variable.group(1), ""))
        port = option_value(service_command(compose_path, upstream_service), "-p", "--port")
        if target != f"{upstream_service}:{port}":
            problems.append(f"{caddyfile}: proxies to {target!r}, but the webserver is {upstream_service}:{port}")
    return problems
