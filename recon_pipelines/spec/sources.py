"""Sources: files, SQL tables or queries, and paginated HTTP APIs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import ConfigDict, Field, field_validator, model_validator

from recon_pipelines.readonly_sql import check_filter, check_query
from recon_pipelines.spec.base import Duration, StrictModel, check_zone
from recon_pipelines.spec.expectations import Expectation
from recon_pipelines.spec.types import arrow_type

DEFAULT_STATEMENT_TIMEOUT = 600.0  # seconds; SqlSource.statement_timeout and read_only_engine's default


# --------------------------------------------------------------------------- sources


class _SourceBase(StrictModel):
    name: str | None = Field(None, description="Display name of the system, e.g. 'crm'.")
    updated_at: str | None = Field(
        None, description="Column holding each record's last-modified time (for incremental runs)."
    )
    timezone: str = Field("UTC", description="Zone of naive values in the updated_at column (for time windows).")
    columns: dict[str, str] | None = Field(
        None,
        description="Declared column types. CSV and SQL: these override the inferred types (CSV columns "
        "not declared stay text). HTTP: these are the columns (no request is made to infer them). "
        "Parquet files carry their own types and ignore this.",
    )
    filter: str | None = Field(
        None,
        description="A row filter: one SQL boolean expression over the source's own columns (SQL: in the "
        "database's dialect, added as a WHERE; files and HTTP: DuckDB SQL over the records read).",
    )
    active: str | None = Field(
        None,
        description="N-way specs: the condition that makes a record active (one SQL boolean expression, "
        "pushed like filter:); the run summary counts active records per system.",
    )
    expect: list[Expectation] = Field(
        [], description="Expectations each record (or the side as a whole) must meet before the comparison.")

    def filter_backend(self) -> str | None:
        """The SQL dialect the filter is written in (SQL sources: their database's)."""
        return "duckdb"

    @model_validator(mode="after")
    def _filter_is_one_condition(self):
        if self.filter is not None:
            check_filter(self.filter, self.filter_backend())  # raises UnsafeFilter (a ValueError)
        if self.active is not None:
            check_filter(self.active, self.filter_backend(), "active")
        return self

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, kind in (value or {}).items():
            arrow_type(kind, name)  # raises ValueError naming the column and the known types
        return value


class FileSource(_SourceBase):
    type: Literal["file"]
    path: str
    format: Literal["csv", "parquet"] | None = None
    delimiter: str = ","

    @property
    def resolved_format(self) -> str:
        """``format`` when given; else from the name (a glob's too), and a folder is Parquet."""
        if self.format:
            return self.format
        lower = self.path.lower().rstrip("/")
        if lower.endswith((".parquet", ".pq")) or Path(self.path).is_dir():
            return "parquet"
        return "csv"

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path is empty")
        return value


class SqlSource(_SourceBase):
    type: Literal["sql"]
    url: str | None = Field(None, description="SQLAlchemy URL; use url_env when it holds a password.")
    url_env: str | None = Field(None, description="Environment variable holding the SQLAlchemy URL.")
    table: str | None = None
    db_schema: str | None = Field(None, alias="schema")
    query: str | None = Field(
        None,
        description="One read-only SELECT (WITH and UNION allowed); anything else is refused before it runs.",
    )
    chunk_size: int = Field(50_000, gt=0)
    statement_timeout: Duration = Field(
        DEFAULT_STATEMENT_TIMEOUT,
        gt=0,
        description="Longest one statement may run on the source (PostgreSQL, MySQL, MariaDB); default 10m.",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def filter_backend(self) -> str | None:
        # With url_env the dialect is known only once connected; the connector checks it again.
        return self.url.split(":", 1)[0].split("+")[0] if self.url else None


    @model_validator(mode="after")
    def _one_location(self) -> "SqlSource":
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url or url_env")
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if self.query is not None and self.url is not None:
            # Checked here when the URL names the dialect; with url_env the connector checks it.
            check_query(self.query, self.filter_backend())
        return self


class Pagination(StrictModel):
    style: Literal["none", "page", "offset", "cursor", "next_link"] = "none"
    page_param: str = "page"
    size_param: str = "per_page"
    page_size: int = Field(100, gt=0)
    first_page: int = 1
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str = Field("next_cursor", description="Dotted path of the next cursor in the response body.")
    next_link_path: str | None = Field(
        None, description="Dotted path of the next page URL in the body; default: the Link header."
    )
    max_pages: int = Field(100_000, gt=0)


class HttpAuth(StrictModel):
    type: Literal["bearer", "header", "basic"] = "bearer"
    env: str = Field(description="Environment variable holding the token (basic: 'user:password').")
    header: str = "Authorization"


class HttpSource(_SourceBase):
    type: Literal["http"]
    url: str
    records_path: str = Field("data", description="Dotted path of the list of records in each page; '' for a bare list.")
    params: dict[str, str | int | float | bool] = {}
    headers: dict[str, str] = {}
    auth: HttpAuth | None = None
    pagination: Pagination = Pagination()
    timeout: Duration = 30.0
    request_deadline: Duration = Field(
        300.0, gt=0, description="Longest one request may take, headers and body (timeout bounds each read only)."
    )
    page_deadline: Duration = Field(
        900.0, gt=0, description="Longest one page may take: its requests, redirects, retries and waits together."
    )
    max_retries: int = Field(5, ge=0)
    max_backoff: Duration = 60.0
    requests_per_second: float | None = Field(None, gt=0)


class DbtSource(_SourceBase):
    """A dbt model read where dbt built it: its relation (database, schema, alias) comes from the
    project's ``target/manifest.json``, the rows through the SQL connector (sources/dbt.py)."""

    type: Literal["dbt"]
    project_dir: str = Field(description="The dbt project's folder (holding dbt_project.yml).")
    model: str = Field(description="The model's name (a seed or snapshot works too).")
    manifest: str | None = Field(None, description="Default: <project_dir>/target/manifest.json.")
    url: str | None = Field(None, description="SQLAlchemy URL of the warehouse; default: from the dbt profile's target.")
    url_env: str | None = Field(None, description="Environment variable holding the warehouse's SQLAlchemy URL.")
    profiles_dir: str | None = Field(
        None, description="Folder of profiles.yml; default: $DBT_PROFILES_DIR, else the project folder, else ~/.dbt.")
    target: str | None = Field(None, description="The profile's target; default: $DBT_TARGET, else the profile's own.")
    asset_key: list[str] | None = Field(
        None, description="The model's Dagster asset key, when your @dbt_assets use a custom DagsterDbtTranslator.")
    chunk_size: int = Field(50_000, gt=0)
    statement_timeout: Duration = Field(DEFAULT_STATEMENT_TIMEOUT, gt=0)

    def filter_backend(self) -> str | None:
        return self.url.split(":", 1)[0].split("+")[0] if self.url else None

    @field_validator("statement_timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return parse_duration(value)

    @model_validator(mode="after")
    def _one_url(self) -> "DbtSource":
        if self.url is not None and self.url_env is not None:
            raise ValueError("give at most one of url or url_env (neither: the dbt profile's target)")
        return self


SourceSpec = Annotated[Union[FileSource, SqlSource, HttpSource, DbtSource], Field(discriminator="type")]
