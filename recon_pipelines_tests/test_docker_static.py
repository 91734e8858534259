"""Static checks of the deployable stack in docker/ (no Docker engine needed), the same checks
failing on deliberately broken copies, and one PostgreSQL-backed check that the production
instance config really opens (run storage, run queue) next to the tracker."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml

from recon_pipelines_tests import docker_checks as dc

# The README's install step for deployments; each image must install the project exactly this way.
README_INSTALL_COMMAND = "pip install ."


def test_the_readme_deploys_with_the_same_install_command():
    readme = (dc.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    deploying = readme[readme.index("## Deploying"):]
    deploying = deploying[: deploying.index("\n## ", 1)]
    assert f"`{README_INSTALL_COMMAND}`" in deploying
    assert "docker compose -f docker/docker-compose.yml up -d" in deploying
CODE_LOCATION_SERVICE = "recon_code_location"
DOCKERFILES = sorted(dc.DOCKER_DIR.glob("Dockerfile.*"))
# The images that install the project (the proxy image is Caddy only).
PYTHON_DOCKERFILES = [dc.DOCKER_DIR / "Dockerfile.code_location", dc.DOCKER_DIR / "Dockerfile.dagster"]
DEPLOYMENT_DOC = dc.REPO_ROOT / "docs" / "deployment.md"

# The threat model (docs/deployment.md), as the policy the static checks hold the files to.
PROXY_SERVICE, WEBSERVER_SERVICE = "proxy", "dagster_webserver"
TRIAGE_PROXY_SERVICE, TRIAGE_SERVICE = "triage_proxy", "recon_web"
# The UI and the triage page are reachable through their authenticating proxies only.
MAY_PUBLISH = {PROXY_SERVICE, TRIAGE_PROXY_SERVICE}
MAY_MOUNT_DOCKER_SOCKET = {"dagster_daemon"}  # it launches the run containers
_RUNS_RECONCILIATIONS = {"DAGSTER_POSTGRES_PASSWORD", "RECON_TRACKER_URL", "SLACK_BOT_TOKEN", "RECON_WEBHOOK_URL"}
MAY_RECEIVE = {
    "postgres": {"DAGSTER_POSTGRES_PASSWORD"},
    WEBSERVER_SERVICE: {"DAGSTER_POSTGRES_PASSWORD"},  # Dagster's storage only: no tracker, no Slack
    PROXY_SERVICE: {"RECON_UI_PASSWORD_HASH"},
    TRIAGE_PROXY_SERVICE: {"RECON_UI_PASSWORD_HASH"},
    TRIAGE_SERVICE: {"RECON_TRACKER_URL"},  # the tracker only: no Dagster storage, no Slack
    CODE_LOCATION_SERVICE: _RUNS_RECONCILIATIONS,  # sensors notify and read the tracker
    "dagster_daemon": _RUNS_RECONCILIATIONS,  # forwards them to the run containers it launches
}


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return dc.env_for_validation(dc.ENV_EXAMPLE)


def _instance() -> dict:
    return yaml.safe_load(dc.INSTANCE_YAML.read_text())


def _doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DEPLOYMENT_DOC.read_text(), re.S)


# ----------------------------------------------------------------------------- the real files


def test_expected_files_exist():
    for name in ("Dockerfile.code_location", "Dockerfile.dagster", "docker-compose.yml", "workspace.yaml",
                 "dagster.yaml", ".env.example"):
        assert (dc.DOCKER_DIR / name).is_file(), name
    assert DEPLOYMENT_DOC.is_file()


def test_compose_file_is_consistent():
    """Parses; depends_on targets, named volumes, networks and ${VAR}s all resolve."""
    assert dc.check_compose(dc.COMPOSE_FILE, dc.ENV_EXAMPLE) == []


def test_compose_services_and_postgres_healthcheck():
    compose = yaml.safe_load(dc.COMPOSE_FILE.read_text())
    services = compose["services"]
    assert {"postgres", CODE_LOCATION_SERVICE, "dagster_webserver", "dagster_daemon"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15.")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in (CODE_LOCATION_SERVICE, "dagster_webserver", "dagster_daemon"):
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
    # the daemon launches runs through the Docker socket; the webserver has none
    assert "/var/run/docker.sock:/var/run/docker.sock" in services["dagster_daemon"]["volumes"]
    assert not any("docker.sock" in str(v) for v in services["dagster_webserver"]["volumes"])


def test_env_example_is_a_clean_template():
    assert dc.check_env_example(dc.ENV_EXAMPLE) == []


def test_compose_builds_point_at_existing_dockerfiles():
    assert dc.check_compose_builds(dc.COMPOSE_FILE) == []
    built = {dockerfile.name for _service, dockerfile, _context in dc.compose_builds(dc.COMPOSE_FILE)}
    assert built == {path.name for path in DOCKERFILES}


@pytest.mark.parametrize("service, dockerfile, context", dc.compose_builds(dc.COMPOSE_FILE),
                         ids=[service for service, _dockerfile, _context in dc.compose_builds(dc.COMPOSE_FILE)])
def test_dockerfile_copy_sources_exist(service, dockerfile, context):
    assert context == dc.REPO_ROOT, f"{service} should build from the repository root"
    assert dc.check_dockerfile_copy_sources(dockerfile, context) == []


@pytest.mark.parametrize("dockerfile", PYTHON_DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_project_like_the_readme(dockerfile):
    assert dc.check_dockerfile_installs_project(dockerfile, README_INSTALL_COMMAND) == []


@pytest.mark.parametrize("dockerfile", PYTHON_DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_base_home_instance_and_launcher(dockerfile):
    instructions = dc.dockerfile_instructions(dockerfile)
    assert ("FROM", "python:3.11.13-slim-bookworm") in instructions
    env = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env
    assert ("COPY", "docker/dagster.yaml /opt/dagster/dagster_home/dagster.yaml") in instructions
    # dagster-docker is not a project dependency; the images add it for the DockerRunLauncher
    assert any("dagster-docker" in targets for targets in dc.dockerfile_pip_installs(dockerfile))


def test_code_location_module_and_cli_are_declared():
    command = dc.service_command(dc.COMPOSE_FILE, CODE_LOCATION_SERVICE)
    assert command[:3] == ["dagster", "code-server", "start"]
    assert dc.option_value(command, "-h", "--host") == "0.0.0.0"
    module = dc.option_value(command, "-m", "--module-name")
    assert module == "recon_pipelines.definitions"
    assert importlib.util.find_spec(module) is not None, f"{module} is not importable"
    pyproject = tomllib.loads((dc.REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["dagster"]["module_name"] == module
    assert "recon" in pyproject["project"]["scripts"]


def test_webserver_and_daemon_commands():
    webserver = dc.service_command(dc.COMPOSE_FILE, "dagster_webserver")
    assert webserver[0] == "dagster-webserver" and dc.option_value(webserver, "-w") == "/opt/dagster/app/workspace.yaml"
    assert dc.option_value(webserver, "-h") == "0.0.0.0" and dc.option_value(webserver, "-p") == "3000"
    assert dc.service_command(dc.COMPOSE_FILE, "dagster_daemon")[:2] == ["dagster-daemon", "run"]


def test_workspace_loads_the_code_location_over_grpc():
    assert dc.check_workspace(dc.WORKSPACE_YAML, dc.COMPOSE_FILE) == []
    workspace = yaml.safe_load(dc.WORKSPACE_YAML.read_text())
    assert workspace["load_from"] == [
        {"grpc_server": {"host": CODE_LOCATION_SERVICE, "port": 4000, "location_name": "recon_pipelines"}}
    ]


def test_instance_env_vars_are_declared_and_forwarded():
    assert dc.check_instance_env(dc.INSTANCE_YAML, dc.ENV_EXAMPLE) == []


def test_instance_config_validates_against_dagsters_schema(env):
    assert dc.check_instance_config(dc.INSTANCE_YAML, env) == []


def test_instance_sections():
    instance = _instance()
    assert instance["telemetry"] == {"enabled": False}
    assert instance["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert instance["run_launcher"]["class"] == "DockerRunLauncher"
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert "concurrency" not in instance  # limits live in run_coordinator.config only


def test_run_queue_allows_one_run_per_reconciliation():
    from recon_pipelines.dagster_defs.assets import RECON_TAG

    config = _instance()["run_coordinator"]["config"]
    assert "max_concurrent_runs" in config
    assert {"key": RECON_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in config["tag_concurrency_limits"]


def test_run_containers_get_declared_volumes_and_network(env):
    assert dc.check_container_context(dc.COMPOSE_FILE, dc.INSTANCE_YAML, env) == []


def test_deployment_doc_snippets(tmp_path, monkeypatch):
    """The doc's YAML parses; its Kubernetes instance passes Dagster's instance schema and keeps
    the same storage and run queue limits as docker/dagster.yaml; the variables it reads are in
    the template."""
    from dagster._core.instance.config import dagster_instance_config

    blocks = [yaml.safe_load(block) for block in _doc_blocks("yaml")]
    k8s = [b for b in blocks if (b.get("run_launcher") or {}).get("class") == "K8sRunLauncher"]
    assert len(k8s) == 1
    assert k8s[0]["run_coordinator"] == _instance()["run_coordinator"]
    assert k8s[0]["storage"] == _instance()["storage"]
    assert dc.instance_env_vars(k8s[0]) <= set(dc.parse_env_file(dc.ENV_EXAMPLE))
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(k8s[0]))
    for name, value in dc.env_for_validation(dc.ENV_EXAMPLE).items():
        monkeypatch.setenv(name, value)
    dagster_instance_config(str(tmp_path))
    assert "docker compose -f docker/docker-compose.yml up -d" in DEPLOYMENT_DOC.read_text()


# ----------------------------------------------------------------------------- broken copies


@pytest.fixture
def docker_copy(tmp_path) -> Path:
    target = tmp_path / "docker"
    shutil.copytree(dc.DOCKER_DIR, target, ignore=shutil.ignore_patterns(".env"))
    return target


def _edit_yaml(path: Path, edit) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _compose_problems(copy: Path) -> list[str]:
    return dc.check_compose(copy / "docker-compose.yml", copy / ".env.example")


def test_copy_is_clean(docker_copy):
    assert _compose_problems(docker_copy) == []
    assert dc.check_instance_env(docker_copy / "dagster.yaml", docker_copy / ".env.example") == []


def test_depends_on_missing_service_is_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"]["dagster_daemon"]["depends_on"].update({"redis": {"condition": "service_started"}}))
    assert any("depends_on 'redis'" in p for p in _compose_problems(docker_copy))


def test_depends_on_list_form_is_checked_too(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"]["dagster_daemon"].update({"depends_on": ["postgres", "rabbitmq"]}))
    problems = _compose_problems(docker_copy)
    assert any("depends_on 'rabbitmq'" in p for p in problems)
    assert not any("depends_on 'postgres'" in p for p in problems)


def test_waiting_for_health_without_healthcheck_is_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml", lambda c: c["services"]["postgres"].pop("healthcheck"))
    assert any("has no healthcheck" in p for p in _compose_problems(docker_copy))


def test_missing_variable_is_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"]["dagster_webserver"].setdefault("environment", {}).update(
                   {"EXTRA": "${RECON_NOT_DECLARED:-x}"}))
    assert any("RECON_NOT_DECLARED" in p for p in _compose_problems(docker_copy))


def test_variable_dropped_from_template_is_caught(docker_copy):
    env = docker_copy / ".env.example"
    env.write_text("\n".join(line for line in env.read_text().splitlines()
                             if not line.startswith("DAGSTER_POSTGRES_PASSWORD=")))
    assert any("DAGSTER_POSTGRES_PASSWORD" in p for p in _compose_problems(docker_copy))
    assert any("DAGSTER_POSTGRES_PASSWORD" in p for p in dc.check_instance_env(docker_copy / "dagster.yaml", env))


def test_escaped_dollar_is_not_a_variable():
    assert dc.compose_variables({"test": "pg_isready -U $${POSTGRES_USER} ${A} $B ${C:-d}"}) == {"A", "B", "C"}


def test_undeclared_volume_is_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"]["dagster_daemon"]["volumes"].append("scratch:/scratch"))
    assert any("named volume 'scratch'" in p for p in _compose_problems(docker_copy))


def test_missing_bind_mount_source_is_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"]["postgres"]["volumes"].append("./initdb:/docker-entrypoint-initdb.d:ro"))
    assert any("bind mount source './initdb'" in p for p in _compose_problems(docker_copy))


def test_undeclared_network_and_missing_restart_are_caught(docker_copy):
    def edit(c):
        c["services"]["dagster_webserver"]["networks"] = ["elsewhere"]
        c["services"]["postgres"].pop("restart")

    _edit_yaml(docker_copy / "docker-compose.yml", edit)
    problems = _compose_problems(docker_copy)
    assert any("network 'elsewhere'" in p for p in problems)
    assert any("service postgres: no restart policy" in p for p in problems)


def test_unparseable_compose_is_caught(docker_copy):
    (docker_copy / "docker-compose.yml").write_text("services:\n  postgres: [unclosed\n")
    assert any("not valid YAML" in p for p in _compose_problems(docker_copy))


def test_real_looking_secret_in_template_is_caught(tmp_path):
    env = tmp_path / ".env.example"
    env.write_text("SLACK_BOT_TOKEN=xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx\nA=1\nA=2\n")
    problems = dc.check_env_example(env)
    assert any("SLACK_BOT_TOKEN looks like a real secret" in p for p in problems)
    assert any("A is declared twice" in p for p in problems)


def test_instance_env_var_missing_from_template_or_launcher_is_caught(docker_copy):
    def edit(instance):
        instance["storage"]["postgres"]["postgres_db"]["params"] = {"sslmode": "require"}
        instance["storage"]["postgres"]["postgres_db"]["hostname"] = {"env": "PGHOST_NOT_DECLARED"}

    _edit_yaml(docker_copy / "dagster.yaml", edit)
    problems = dc.check_instance_env(docker_copy / "dagster.yaml", docker_copy / ".env.example")
    assert any("{env: PGHOST_NOT_DECLARED} is not declared" in p for p in problems)
    assert any("need PGHOST_NOT_DECLARED to load the instance" in p for p in problems)


def test_launcher_forwarding_an_undeclared_variable_is_caught(docker_copy):
    _edit_yaml(docker_copy / "dagster.yaml",
               lambda i: i["run_launcher"]["config"]["env_vars"].append("RECON_UNDECLARED"))
    problems = dc.check_instance_env(docker_copy / "dagster.yaml", docker_copy / ".env.example")
    assert any("forwards RECON_UNDECLARED" in p for p in problems)


@pytest.mark.parametrize("edit, expected", [
    (lambda i: i["telemetry"].update({"enable": False}), "enable"),
    (lambda i: i["run_coordinator"]["config"]["tag_concurrency_limits"][0].pop("limit"), "limit"),
    (lambda i: i["run_coordinator"]["config"].update({"max_concurrent_runs": "lots"}), "max_concurrent_runs"),
    (lambda i: i.update({"concurrency": {"runs": {"max_concurrent_runs": 5}}}), "incompatible"),
    (lambda i: i["storage"]["postgres"]["postgres_db"].pop("scheme"), "psycopg2"),
    (lambda i: i["storage"]["postgres"]["postgres_db"].update({"port": {"env": "DAGSTER_POSTGRES_USER"}}), "port"),
    (lambda i: i["run_launcher"]["config"].update({"networks": ["other"]}), "both network and networks"),
    (lambda i: i["run_launcher"]["config"].update({"env_vars": "DAGSTER_POSTGRES_USER"}), "env_vars"),
    (lambda i: i["run_launcher"]["config"].update({"container_kwargs": {"environment": {"A": "1"}}}), "env_vars"),
    (lambda i: i["run_coordinator"].update({"class": "NoSuchCoordinator"}), "NoSuchCoordinator"),
], ids=["typo", "tag-limit-without-limit", "non-int-limit", "two-concurrency-schemes", "psycopg3-scheme",
        "non-int-port", "network-and-networks", "env-vars-not-a-list", "environment-kwarg", "unknown-class"])
def test_invalid_instance_config_is_caught(docker_copy, env, edit, expected):
    _edit_yaml(docker_copy / "dagster.yaml", edit)
    problems = dc.check_instance_config(docker_copy / "dagster.yaml", env)
    assert problems and any(expected in p for p in problems), problems


def test_dockerfile_missing_copy_source_is_caught(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\nCOPY pyproject.toml NOTES.md \\\n     ./\n"
                          "COPY --from=builder /wheels /wheels\nRUN pip install .\n")
    problems = dc.check_dockerfile_copy_sources(dockerfile, tmp_path)
    assert problems == [f"{dockerfile}: COPY source 'NOTES.md' does not exist in {tmp_path}"]


def test_dockerfile_not_installing_the_repo_root_is_caught(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\n# RUN pip install .\nRUN pip install --no-cache-dir recon_pipelines && \\\n"
                          "    python -m pip install -q ./dist/*.whl\n")
    assert dc.check_dockerfile_installs_project(dockerfile, README_INSTALL_COMMAND)
    dockerfile.write_text("FROM python:3.11-slim\nRUN apt-get update; python -m pip install --no-cache-dir .\n")
    assert dc.check_dockerfile_installs_project(dockerfile, README_INSTALL_COMMAND) == []


def test_workspace_port_mismatch_is_caught(docker_copy):
    _edit_yaml(docker_copy / "workspace.yaml", lambda w: w["load_from"][0]["grpc_server"].update({"port": 4001}))
    problems = dc.check_workspace(docker_copy / "workspace.yaml", docker_copy / "docker-compose.yml")
    assert any("serves on port 4000, workspace says 4001" in p for p in problems)


def test_workspace_unknown_host_is_caught(docker_copy):
    _edit_yaml(docker_copy / "workspace.yaml", lambda w: w["load_from"][0]["grpc_server"].update({"host": "user_code"}))
    problems = dc.check_workspace(docker_copy / "workspace.yaml", docker_copy / "docker-compose.yml")
    assert any("'user_code' is not a compose service" in p for p in problems)


def test_run_container_volume_or_network_not_declared_is_caught(docker_copy, env):
    def edit(compose):
        compose["volumes"]["recon_storage"]["name"] = "renamed_storage"
        compose["networks"]["recon"]["name"] = "renamed_network"

    _edit_yaml(docker_copy / "docker-compose.yml", edit)
    problems = dc.check_container_context(docker_copy / "docker-compose.yml", docker_copy / "dagster.yaml", env)
    assert any("mount volume 'recon_pipelines_storage'" in p for p in problems)
    assert any("network 'recon_pipelines_network'" in p for p in problems)


def test_invalid_container_context_is_caught(docker_copy, env):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"][CODE_LOCATION_SERVICE]["environment"].update(
                   {"DAGSTER_CONTAINER_CONTEXT": '{"docker": {"env_vars": "A", "container_kwargs": {"volumes": ["./x:/x"]}}}'}))
    problems = dc.check_container_context(docker_copy / "docker-compose.yml", docker_copy / "dagster.yaml", env)
    assert any("env_vars" in p for p in problems)
    assert any("absolute host path" in p for p in problems)


# ----------------------------------------------------------------------------- closed by default: the real files


def test_only_the_proxies_publish_a_port_and_on_loopback(env):
    assert dc.check_published_ports(dc.COMPOSE_FILE, env, MAY_PUBLISH) == []
    services = yaml.safe_load(dc.COMPOSE_FILE.read_text())["services"]
    for proxy in MAY_PUBLISH:
        assert {dc.parse_port(p, env)[0] for p in services[proxy]["ports"]} == {"127.0.0.1"}


def test_only_the_daemon_holds_the_docker_socket():
    assert dc.check_docker_socket(dc.COMPOSE_FILE, MAY_MOUNT_DOCKER_SOCKET) == []


def test_each_service_gets_only_the_secrets_it_needs():
    assert dc.check_service_secrets(dc.COMPOSE_FILE, dc.ENV_EXAMPLE, MAY_RECEIVE) == []
    assert set(dc.secret_variables(dc.ENV_EXAMPLE)) == set().union(*MAY_RECEIVE.values())


def test_every_service_with_a_secret_starts_through_the_guard():
    assert dc.check_secrets_guarded(dc.COMPOSE_FILE, dc.ENV_EXAMPLE) == []


def test_images_are_pinned_and_run_as_non_root():
    assert dc.check_images_pinned(dc.COMPOSE_FILE) == []
    assert dc.check_non_root(dc.COMPOSE_FILE) == []


def test_the_proxy_authenticates_and_owns_the_identity_header():
    assert dc.check_caddyfile(dc.CADDYFILE, dc.COMPOSE_FILE, PROXY_SERVICE, WEBSERVER_SERVICE) == []


def test_the_triage_page_sits_behind_its_proxy_and_trusts_only_its_header():
    # The same Caddyfile (basic_auth, identity header set by the proxy, client copies stripped),
    # forwarding to `recon web`, which takes the user from that header and from nowhere else.
    assert dc.check_caddyfile(dc.CADDYFILE, dc.COMPOSE_FILE, TRIAGE_PROXY_SERVICE, TRIAGE_SERVICE) == []
    command = dc.service_command(dc.COMPOSE_FILE, TRIAGE_SERVICE)
    assert command[:2] == ["recon", "web"]
    assert dc.option_value(command, "--trust-proxy-header") == dc.IDENTITY_HEADER
    assert dc.option_value(command, "--host") == "0.0.0.0"  # on the triage network only: it publishes no port


# ----------------------------------------------------------------------------- the secrets guard, run


def _template_secrets() -> dict[str, str]:
    return {name: value for name, value in dc.secret_variables(dc.ENV_EXAMPLE).items() if value}


def test_guard_refuses_every_placeholder_of_the_template():
    placeholders = _template_secrets()
    assert {"DAGSTER_POSTGRES_PASSWORD", "RECON_TRACKER_URL", "RECON_UI_PASSWORD_HASH"} <= set(placeholders)
    code, out, err = dc.run_secrets_guard(dc.SECRETS_GUARD, placeholders, sorted(placeholders))
    assert code != 0 and out == "", (code, out, err)  # the command never ran
    for name, value in placeholders.items():
        assert f"refusing to start: {name} still holds the example value" in err
        assert value not in err.replace(name, "")  # names only, never values


@pytest.mark.parametrize("value, reason", [("", "is empty"), ("short-secret", "shorter than 16 characters"),
                                           ("prefix-CHANGE-ME-suffix-long", "example value")])
def test_guard_refuses_empty_short_and_example_secrets(value, reason):
    code, out, err = dc.run_secrets_guard(dc.SECRETS_GUARD, {"DAGSTER_POSTGRES_PASSWORD": value},
                                          ["DAGSTER_POSTGRES_PASSWORD"])
    assert code != 0 and out == "" and reason in err and "DAGSTER_POSTGRES_PASSWORD" in err


def test_guard_starts_the_command_with_real_secrets():
    strong = {"DAGSTER_POSTGRES_PASSWORD": "9f2c1e7d4b8a6c3e5f1a0b2d",
              "RECON_TRACKER_URL": "postgresql+psycopg2://dagster:9f2c1e7d4b8a6c3e5f1a0b2d@postgres:5432/dagster"}
    code, out, err = dc.run_secrets_guard(dc.SECRETS_GUARD, strong, sorted(strong), ("echo", "started", "$HOME"))
    assert (code, out, err) == (0, "started $HOME\n", "")  # exec'd with its arguments untouched


def test_guard_refuses_a_name_that_is_not_a_variable():
    code, _out, err = dc.run_secrets_guard(dc.SECRETS_GUARD, {}, ["A;touch /tmp/x"])
    assert code != 0 and "is not a variable name" in err


# ----------------------------------------------------------------------------- closed by default: broken copies


def test_webserver_publishing_its_port_is_caught(docker_copy, env):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"][WEBSERVER_SERVICE].update({"ports": ["3000:3000"]}))
    problems = dc.check_published_ports(docker_copy / "docker-compose.yml", env, MAY_PUBLISH)
    assert any(f"service {WEBSERVER_SERVICE}: publishes port 3000" in p for p in problems)


@pytest.mark.parametrize("port, expected", [
    ("${RECON_UI_HTTP_PORT}:8080", "published on every host interface"),
    ("0.0.0.0:8080:8080", "published on 0.0.0.0 by default"),
    ({"target": 8080, "published": 8080}, "published on every host interface"),
])
def test_proxy_published_beyond_loopback_is_caught(docker_copy, env, port, expected):
    _edit_yaml(docker_copy / "docker-compose.yml", lambda c: c["services"][PROXY_SERVICE]["ports"].append(port))
    assert any(expected in p for p in dc.check_published_ports(docker_copy / "docker-compose.yml", env, MAY_PUBLISH))


def test_template_opening_the_bind_address_is_caught(docker_copy):
    template = docker_copy / ".env.example"
    template.write_text(template.read_text().replace("RECON_UI_BIND_ADDRESS=127.0.0.1", "RECON_UI_BIND_ADDRESS=0.0.0.0"))
    problems = dc.check_published_ports(docker_copy / "docker-compose.yml", dc.env_for_validation(template), MAY_PUBLISH)
    assert any("published on 0.0.0.0 by default" in p for p in problems)


def test_host_network_is_caught(docker_copy, env):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"][WEBSERVER_SERVICE].update({"network_mode": "host"}))
    assert any("network_mode host" in p
               for p in dc.check_published_ports(docker_copy / "docker-compose.yml", env, MAY_PUBLISH))


@pytest.mark.parametrize("mount", ["/var/run/docker.sock:/var/run/docker.sock",
                                   {"type": "bind", "source": "/run/docker.sock", "target": "/d.sock"}])
def test_docker_socket_in_the_webserver_is_caught(docker_copy, mount):
    _edit_yaml(docker_copy / "docker-compose.yml", lambda c: c["services"][WEBSERVER_SERVICE]["volumes"].append(mount))
    problems = dc.check_docker_socket(docker_copy / "docker-compose.yml", MAY_MOUNT_DOCKER_SOCKET)
    assert any(f"service {WEBSERVER_SERVICE} mounts the Docker socket" in p for p in problems)


def test_env_file_and_extra_secret_are_caught(docker_copy):
    def edit(c):
        c["services"][PROXY_SERVICE]["env_file"] = [".env"]
        c["services"][WEBSERVER_SERVICE]["environment"]["SLACK_BOT_TOKEN"] = "${SLACK_BOT_TOKEN}"

    _edit_yaml(docker_copy / "docker-compose.yml", edit)
    problems = dc.check_service_secrets(docker_copy / "docker-compose.yml", docker_copy / ".env.example", MAY_RECEIVE)
    assert any(f"service {PROXY_SERVICE}: env_file passes every variable" in p for p in problems)
    assert any(f"service {WEBSERVER_SERVICE}: receives SLACK_BOT_TOKEN" in p for p in problems)


def test_secret_missing_from_the_guard_list_is_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"][WEBSERVER_SERVICE]["environment"].update({"RECON_REQUIRED_SECRETS": ""}))
    problems = dc.check_secrets_guarded(docker_copy / "docker-compose.yml", docker_copy / ".env.example")
    assert any(f"service {WEBSERVER_SERVICE}: DAGSTER_POSTGRES_PASSWORD is not in RECON_REQUIRED_SECRETS" in p
               for p in problems)


def test_service_bypassing_the_guard_is_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml", lambda c: c["services"]["postgres"].pop("entrypoint"))
    dockerfile = docker_copy.parent / "docker" / "Dockerfile.dagster"
    dockerfile.write_text(dockerfile.read_text().replace('ENTRYPOINT ["/usr/local/bin/recon-require-secrets"]\n', ""))
    problems = dc.check_secrets_guarded(docker_copy / "docker-compose.yml", docker_copy / ".env.example")
    assert any("service postgres: receives ['POSTGRES_PASSWORD'] but does not start through" in p for p in problems)


@pytest.mark.parametrize("image", ["postgres:15", "postgres:latest", "postgres"])
def test_unpinned_image_is_caught(docker_copy, image):
    _edit_yaml(docker_copy / "docker-compose.yml", lambda c: c["services"]["postgres"].update({"image": image}))
    assert any("service postgres: image" in p and "not pinned" in p
               for p in dc.check_images_pinned(docker_copy / "docker-compose.yml"))


def test_unpinned_base_image_is_caught(tmp_path):
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile").write_text(
        "FROM python:3.11.13-slim AS build\nFROM build\nFROM python:3.11-slim\nFROM caddy@sha256:" + "a" * 64 + "\n")
    (tmp_path / "docker" / "docker-compose.yml").write_text(
        "services:\n  app:\n    build: {context: .., dockerfile: docker/Dockerfile}\n")
    problems = dc.check_images_pinned(tmp_path / "docker" / "docker-compose.yml")
    assert len(problems) == 1 and "FROM python:3.11-slim is not pinned" in problems[0]


def test_root_images_and_services_are_caught(docker_copy):
    _edit_yaml(docker_copy / "docker-compose.yml", lambda c: c["services"]["postgres"].pop("user"))
    proxy = docker_copy / "Dockerfile.proxy"
    proxy.write_text(proxy.read_text() + "USER root\n")
    problems = dc.check_non_root(docker_copy / "docker-compose.yml")
    assert any("service postgres runs its image's default user" in p for p in problems)
    assert any("Dockerfile.proxy: the image runs as root" in p for p in problems)


@pytest.mark.parametrize("line, expected", [
    ("header_up X-Forwarded-User {http.auth.user.id}", "X-Forwarded-User is not set to the authenticated user"),
    ("header_up -Remote-User", "client-sent Remote-User header reaches the upstream"),
    ("header_up -Authorization", "client-sent Authorization header reaches the upstream"),
    ("admin off", "admin API is not turned off"),
    ("{$RECON_UI_USER} {$RECON_UI_PASSWORD_HASH}", "basic_auth account is not"),
], ids=["identity-not-set", "remote-user-not-stripped", "password-forwarded", "admin-api", "no-account"])
def test_weakened_caddyfile_is_caught(docker_copy, line, expected):
    caddyfile = docker_copy / "Caddyfile"
    text = caddyfile.read_text()
    assert line in text
    caddyfile.write_text(text.replace(line, "", 1))
    problems = dc.check_caddyfile(caddyfile, docker_copy / "docker-compose.yml", PROXY_SERVICE, WEBSERVER_SERVICE)
    assert any(expected in p for p in problems), problems


def test_caddyfile_without_auth_or_with_wrong_upstream_is_caught(docker_copy):
    caddyfile = docker_copy / "Caddyfile"
    caddyfile.write_text(caddyfile.read_text().replace("basic_auth {", "handle {").replace(
        "reverse_proxy {$RECON_UI_UPSTREAM}", "reverse_proxy {$RECON_UI_OTHER}"))
    _edit_yaml(docker_copy / "docker-compose.yml",
               lambda c: c["services"][PROXY_SERVICE]["environment"].update({"RECON_UI_UPSTREAM": "recon_code_location:4000"}))
    problems = dc.check_caddyfile(caddyfile, docker_copy / "docker-compose.yml", PROXY_SERVICE, WEBSERVER_SERVICE)
    assert any("no basic_auth block" in p for p in problems)
    assert any("reads {$RECON_UI_OTHER}, which service proxy does not set" in p for p in problems)


# ----------------------------------------------------------------------------- against PostgreSQL


@pytest.mark.postgres
def test_instance_opens_on_postgres_next_to_the_tracker(pg_url, tmp_path, monkeypatch):
    """docker/dagster.yaml (with the default run launcher: dagster-docker is not installed here)
    opens a working instance; the tracker migrates into the same database without touching
    Dagster's tables; the doc's SQL and pg_dump pattern work on the result."""
    import sqlalchemy as sa
    from dagster import DagsterRunStatus
    from dagster._core.instance import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.storage.dagster_run import DagsterRun

    from recon_pipelines.tracker import Tracker

    url = sa.make_url(pg_url)
    for name, value in {"DAGSTER_POSTGRES_USER": url.username, "DAGSTER_POSTGRES_PASSWORD": url.password or "",
                        "DAGSTER_POSTGRES_HOST": url.host, "DAGSTER_POSTGRES_DB": url.database,
                        "DAGSTER_POSTGRES_PORT": str(url.port or 5432), "RECON_MAX_CONCURRENT_RUNS": "7"}.items():
        monkeypatch.setenv(name, value)
    config = _instance()
    config["run_launcher"] = {"module": "dagster", "class": "DefaultRunLauncher"}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))

    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path)))
    engine = sa.create_engine(pg_url)
    try:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 7
        assert queue.tag_concurrency_limits == config["run_coordinator"]["config"]["tag_concurrency_limits"]
        origin = RemoteJobOrigin(
            repository_origin=RemoteRepositoryOrigin(
                code_location_origin=GrpcServerCodeLocationOrigin(
                    host=CODE_LOCATION_SERVICE, port=4000, location_name="recon_pipelines"),
                repository_name="__repository__"),
            job_name="reconcile_payments")
        instance.add_run(DagsterRun(job_name="reconcile_payments", run_id=str(uuid.uuid4()), remote_job_origin=origin,
                                    status=DagsterRunStatus.QUEUED, tags={"recon/reconciliation": "payments"}))

        dagster_tables = set(sa.inspect(engine).get_table_names())
        assert "alembic_version" in dagster_tables
        Tracker(pg_url)
        tracker_tables = set(sa.inspect(engine).get_table_names()) - dagster_tables
        assert "recon_discrepancies" in tracker_tables and "recon_alembic_version" in tracker_tables
        assert all(t.startswith("recon_") for t in tracker_tables), tracker_tables
        assert len(instance.get_runs()) == 1  # Dagster's storage is untouched by the tracker's migration

        queue_sql, open_sql = _doc_blocks("sql")
        with engine.connect() as conn:
            assert conn.execute(sa.text(queue_sql.strip().rstrip(";"))).all() == [("payments", 1)]
            assert conn.execute(sa.text(open_sql.strip().rstrip(";"))).all() == []
    finally:
        instance.dispose()
        engine.dispose()

    if shutil.which("pg_dump"):
        dump = subprocess.run(
            ["pg_dump", "--schema-only", "--table=recon_*", "--dbname",
             url.set(drivername="postgresql").render_as_string(hide_password=False)],
            capture_output=True, text=True, check=True,
        ).stdout
        for table in tracker_tables:
            assert f"CREATE TABLE public.{table} " in dump, table
        assert "CREATE TABLE public.runs " not in dump
