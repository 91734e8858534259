"""A dbt model as a side: a SQL table source whose table comes from the project's manifest.

``target/manifest.json`` (written by ``dbt parse``, ``dbt build``...) names the model's relation
(database, schema, alias); the warehouse is the spec's ``url``/``url_env``, else the target of the
project's dbt profile (postgres and duckdb profiles). The rows are then read by the SQL connector,
read-only like every source. No dbt import here: reading two YAML files and one JSON file is all
it takes, so a dbt source works without dbt-core installed.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import yaml

from recon_pipelines.redact import redact
from recon_pipelines.sources.base import SourceError
from recon_pipelines.sources.sql import SqlConnector
from recon_pipelines.spec.models import DbtSource, SqlSource

READABLE = ("model", "seed", "snapshot")


@dataclass(frozen=True)
class Relation:
    unique_id: str
    database: str | None
    schema: str
    alias: str
    node: dict  # the manifest's node, as dagster-dbt's translator reads it

    @property
    def shown(self) -> str:
        return ".".join(p for p in (self.database, self.schema, self.alias) if p)


def manifest_path(spec: DbtSource) -> Path:
    return Path(spec.manifest) if spec.manifest else Path(spec.project_dir) / "target" / "manifest.json"


def find_model(spec: DbtSource) -> Relation:
    """The model's relation from the manifest; a clear error when the manifest or the model is missing."""
    path = manifest_path(spec)
    where = f"{spec.name or 'dbt'} (dbt model {spec.model!r})"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SourceError(f"{where}: manifest {path} not found: run `dbt parse` (or `dbt build`) in "
                          f"{spec.project_dir} first, or set manifest:") from None
    except (OSError, ValueError) as exc:
        raise SourceError(f"{where}: cannot read manifest {path}: {exc}") from None
    nodes = [n for n in manifest.get("nodes", {}).values() if n.get("resource_type") in READABLE]
    matches = [n for n in nodes if n.get("name") == spec.model]
    if not matches:
        close = difflib.get_close_matches(spec.model, sorted({n["name"] for n in nodes}), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(nodes)} models, seeds and snapshots in it)"
        raise SourceError(f"{where}: no such model in {path}{hint}")
    if len(matches) > 1:  # the same name in two packages
        raise SourceError(f"{where}: several nodes are named {spec.model!r}: "
                          f"{', '.join(sorted(n['unique_id'] for n in matches))}")
    node = matches[0]
    if node.get("config", {}).get("materialized") == "ephemeral":
        raise SourceError(f"{where}: the model is ephemeral: dbt builds no relation for it to read")
    return Relation(node["unique_id"], node.get("database"), node["schema"], node.get("alias") or node["name"], node)


# --------------------------------------------------------------------------- the warehouse


def profile_url(spec: DbtSource) -> str:
    """A SQLAlchemy URL for the project's profile target (postgres or duckdb)."""
    project = _read_yaml(Path(spec.project_dir) / "dbt_project.yml", spec)
    profile_name = project.get("profile")
    folder = _profiles_dir(spec)
    profiles = _read_yaml(folder / "profiles.yml", spec)
    profile = profiles.get(profile_name) if isinstance(profiles, dict) else None
    where = f"{spec.name or 'dbt'} (dbt model {spec.model!r})"
    if not isinstance(profile, dict):
        raise SourceError(f"{where}: profile {profile_name!r} not found in {folder / 'profiles.yml'}")
    target_name = spec.target or os.environ.get("DBT_TARGET") or profile.get("target")
    output = (profile.get("outputs") or {}).get(target_name)
    if not isinstance(output, dict):
        raise SourceError(f"{where}: target {target_name!r} not found in profile {profile_name!r}")
    output = _render(output)
    kind = output.get("type")
    if kind == "postgres":
        return sa.URL.create(
            "postgresql+psycopg2", username=output.get("user"), password=output.get("password") or output.get("pass"),
            host=output.get("host"), port=int(output.get("port") or 5432), database=output.get("dbname") or output.get("database"),
        ).render_as_string(hide_password=False)
    if kind == "duckdb":
        path = Path(output.get("path") or ":memory:")
        return f"duckdb:///{path if path.is_absolute() else (Path(spec.project_dir) / path).resolve()}"
    raise SourceError(f"{where}: profile target type {kind!r} is not supported (postgres, duckdb): give url_env")


def _profiles_dir(spec: DbtSource) -> Path:
    if spec.profiles_dir:
        return Path(spec.profiles_dir)
    if os.environ.get("DBT_PROFILES_DIR"):
        return Path(os.environ["DBT_PROFILES_DIR"])
    if (Path(spec.project_dir) / "profiles.yml").is_file():
        return Path(spec.project_dir)
    return Path.home() / ".dbt"


def _read_yaml(path: Path, spec: DbtSource):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SourceError(f"{spec.name or 'dbt'} (dbt model {spec.model!r}): {path} not found") from None
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError(f"{spec.name or 'dbt'} (dbt model {spec.model!r}): cannot read {path}: "
                          f"{str(exc).splitlines()[0]}") from None


def _render(output: dict) -> dict:
    """Profile values as dbt renders them: Jinja with ``env_var('NAME'[, 'default'])``."""
    import jinja2

    def env_var(name: str, default: str | None = None) -> str:
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise SourceError(f"dbt profile: environment variable {name} is not set")

    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return {k: environment.from_string(v).render(env_var=env_var) if isinstance(v, str) and "{{" in v else v
            for k, v in output.items()}


# --------------------------------------------------------------------------- the connector


class DbtConnector(SqlConnector):
    """The SQL connector on the model's relation (a table for PostgreSQL; a query for DuckDB, whose
    SQLAlchemy driver cannot reflect tables on SQLAlchemy 2.1)."""

    def __init__(self, spec: DbtSource):
        self.dbt = spec
        self.relation = find_model(spec)
        url = spec.url if spec.url or spec.url_env else profile_url(spec)
        location: dict = {"table": self.relation.alias, "schema": self.relation.schema}
        if (url or "").startswith("duckdb"):
            quoted = ".".join(f'"{p}"' for p in (self.relation.database, self.relation.schema, self.relation.alias) if p)
            location = {"query": f"SELECT * FROM {quoted}"}
        sql = SqlSource(type="sql", name=spec.name, url=url, url_env=spec.url_env, columns=spec.columns,
                        filter=spec.filter, chunk_size=spec.chunk_size, statement_timeout=spec.statement_timeout,
                        **location)
        super().__init__(sql)
        self.label = f"{spec.name or 'dbt'} (dbt model {spec.model}: {redact(self._url)} {self.relation.shown})"

    def schema(self):
        try:
            return super().schema()
        except SourceError as exc:
            if self._relation_missing(exc):
                raise SourceError(f"{self.label}: the model is not built: {self.relation.shown} does not exist in the "
                                  f"warehouse; run `dbt build --select {self.dbt.model}`") from None
            raise

    @staticmethod
    def _relation_missing(exc: SourceError) -> bool:
        text = str(exc).lower()
        return "not found" in text or "does not exist" in text or "no such table" in text
