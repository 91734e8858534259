"""Secrets stay out of labels, errors, metadata and the UI: one redaction rule (redact.py) for every
URL form, ${VAR} only in configuration values, custom headers only to the source's origin, and the
tracker URL never resource config."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from recon_pipelines.cli import main as recon
from recon_pipelines.dagster_defs.definitions import build_definitions
from recon_pipelines.redact import redact
from recon_pipelines.sources.base import SourceError
from recon_pipelines.sources.http import HttpConnector
from recon_pipelines.sources.sql import SqlConnector
from recon_pipelines.spec import SpecError, parse_spec
from recon_pipelines.spec.models import HttpSource, SqlSource
from recon_pipelines.tracker import Tracker

try:
    from recon_pipelines_tests.http_fakes import FakeServer
except ImportError:  # the tests folder is not a package: pytest puts it on sys.path
    from http_fakes import FakeServer

SECRET = "Hunter2-secret"


# --------------------------------------------------------------------------- one redaction rule


@pytest.mark.parametrize(
    "text, kept",
    [
        (f"postgresql+psycopg2://reader:{SECRET}@db:5432/crm", "postgresql+psycopg2://reader:***@db:5432/crm"),
        (f"postgresql://reader@db/crm?password={SECRET}", "postgresql://reader@db/crm?password=***"),
        (f"postgresql://reader@db/crm?sslmode=require&SSLPassword={SECRET}", "sslmode=require&SSLPassword=***"),
        (f"https://api.example.com/v1?page=2&access_token={SECRET}", "page=2&access_token=***"),
        (f"https://api.example.com/v1?Key={SECRET}&secret={SECRET}", "?Key=***&secret=***"),
        (f"https://{SECRET}@api.example.com/v1", "https://***@api.example.com/v1"),
        (f"mysql+pymysql://root:{SECRET}@127.0.0.1:3306/x", "mysql+pymysql://root:***@127.0.0.1:3306/x"),
        (f"connection failed: host=db password={SECRET} dbname=crm", "host=db password=*** dbname=crm"),
        (f"could not connect (token={SECRET})", "token=***"),
    ],
)
def test_every_url_form_loses_its_secret(text, kept):
    assert SECRET not in redact(text)
    assert kept in redact(text)


def test_redaction_keeps_what_is_not_a_secret():
    for text in ("sqlite:///data/crm.sqlite", "postgresql://reader@db/crm", 'Key (id)=(1) already exists'):
        assert redact(text) == text


def test_a_password_query_parameter_is_hidden_from_the_sql_label_and_errors():
    """Port 1 refuses the connection, so the driver's error is what gets rendered."""
    url = f"postgresql://reader@127.0.0.1:1/crm?password={SECRET}&sslpassword={SECRET}"
    connector = SqlConnector(SqlSource(type="sql", name="crm", url=url, table="accounts"))
    assert SECRET not in connector.label
    with pytest.raises(SourceError) as failure:
        connector.schema()
    assert "crm" in str(failure.value) and SECRET not in str(failure.value)


def test_recon_validate_never_prints_the_password(tmp_path):
    spec = {"name": "leaky", "source_a": {"type": "sql", "url": f"postgresql://reader@127.0.0.1:1/crm?password={SECRET}",
                                          "table": "accounts"},
            "source_b": {"type": "sql", "url": f"postgresql://reader:{SECRET}@127.0.0.1:1/erp", "table": "accounts"},
            "key": "id", "fields": {"amount": "exact"}}
    (tmp_path / "leaky.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(recon, ["validate", str(tmp_path / "leaky.yaml")])
    assert result.exit_code == 2
    assert "leaky" in result.output + result.stderr and SECRET not in result.output + result.stderr


@pytest.mark.postgres
def test_the_tracker_url_shown_in_metadata_hides_a_password_parameter(pg_url):
    tracker = Tracker(f"{pg_url}?password={SECRET}")  # trust authentication ignores it
    try:
        assert SECRET not in tracker.url and "password=***" in tracker.url
    finally:
        tracker.engine.dispose()


def test_resolved_definitions_do_not_hold_the_tracker_password(monkeypatch, tmp_path):
    """What the UI shows of resources comes from the repository snapshot: the URL is not in it."""
    monkeypatch.setenv("RECON_TRACKER_URL", f"postgresql://recon:{SECRET}@db/recon?password={SECRET}")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "a.csv").write_text("id,amount\n1,2\n")
    spec = parse_spec({"name": "orders", "source_a": {"type": "file", "path": str(tmp_path / "a.csv")},
                       "source_b": {"type": "file", "path": str(tmp_path / "a.csv")}, "key": "id",
                       "fields": {"amount": "exact"}})
    defs = build_definitions(specs=[spec])
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "reconcile_orders" in snapshot
    assert SECRET not in snapshot


# --------------------------------------------------------------------------- ${VAR} only in configuration


def _spec(**top) -> dict:
    return {"name": "orders", "source_a": {"type": "file", "path": "${RECON_TEST_DIR}/a.csv"},
            "source_b": {"type": "file", "path": "b.csv"}, "key": "id", "fields": {"amount": "exact"}, **top}


@pytest.mark.parametrize(
    "top, where",
    [
        ({"description": "orders for ${RECON_TEST_TOKEN}"}, "description"),
        ({"owner": "${RECON_TEST_TOKEN}"}, "owner"),
        ({"tags": {"team": "${RECON_TEST_TOKEN:-x}"}}, "tags.team"),
    ],
)
def test_a_variable_in_free_text_is_refused(monkeypatch, top, where):
    monkeypatch.setenv("RECON_TEST_TOKEN", SECRET)
    monkeypatch.setenv("RECON_TEST_DIR", "/data")
    with pytest.raises(SpecError, match=rf"{where}: \$\{{RECON_TEST_TOKEN\}} is not expanded in free text") as refused:
        parse_spec(_spec(**top))
    assert SECRET not in str(refused.value)


def test_a_source_display_name_is_free_text_too(monkeypatch):
    monkeypatch.setenv("RECON_TEST_TOKEN", SECRET)
    monkeypatch.setenv("RECON_TEST_DIR", "/data")
    spec = _spec()
    spec["source_b"] = {**spec["source_b"], "name": "crm ${RECON_TEST_TOKEN}"}
    with pytest.raises(SpecError, match=r"source_b.name: "):
        parse_spec(spec, source_file="x.yaml")


def test_an_allow_listed_variable_expands_in_free_text_and_configuration_always_does(monkeypatch):
    monkeypatch.setenv("RECON_TEST_TEAM", "payments")
    monkeypatch.setenv("RECON_TEST_DIR", "/data")
    spec = parse_spec(_spec(env_allowlist=["RECON_TEST_TEAM"], owner="team:${RECON_TEST_TEAM}",
                            tags={"team": "${RECON_TEST_TEAM}"}))
    assert spec.owner == "team:payments" and spec.tags == {"team": "payments"}
    assert spec.source_a.path == "/data/a.csv"
    assert spec.env_allowlist == ["RECON_TEST_TEAM"]


# --------------------------------------------------------------------------- custom headers and redirects


def test_custom_headers_are_dropped_on_a_redirect_to_another_origin():
    with FakeServer(lambda *_: (200, {}, {"data": [{"id": 2}]})) as other:

        def first(method, path, query, headers, body):
            if path == "/records":
                return 302, {"location": "/moved"}, b""  # same origin: the key goes along
            return 302, {"location": f"{other.url}/elsewhere"}, b""

        with FakeServer(first) as server:
            spec = HttpSource.model_validate({"type": "http", "url": server.url + "/records",
                                              "headers": {"X-Api-Key": SECRET, "X-Client": "recon"}})
            with HttpConnector(spec) as connector:
                rows = [r for batch in connector.batches() for r in batch.to_pylist()]
    assert rows == [{"id": 2}]
    assert [r.headers.get("x-api-key") for r in server.requests] == [SECRET, SECRET]
    (moved,) = other.requests
    assert moved.path == "/elsewhere"
    assert "x-api-key" not in moved.headers and "x-client" not in moved.headers


def test_a_custom_credential_header_is_scrubbed_from_errors():
    with FakeServer(lambda *_: (400, {}, f"bad key {SECRET}")) as server:
        spec = HttpSource.model_validate({"type": "http", "url": server.url + "/records", "headers": {"X-Api-Key": SECRET}})
        with HttpConnector(spec) as connector, pytest.raises(SourceError) as failure:
            list(connector.batches())
    assert "HTTP 400" in str(failure.value) and SECRET not in str(failure.value)
