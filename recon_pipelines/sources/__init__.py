"""Source connectors: files, SQL and HTTP APIs behind one interface (``base.Connector``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recon_pipelines.sources.base import Connector


def connector_for(source) -> Connector:
    """The connector for a spec's source; each is imported on first use (SQL and HTTP pull in
    their drivers)."""
    from recon_pipelines.spec.models import DbtSource, FileSource, HttpSource, SqlSource

    if isinstance(source, FileSource):
        from recon_pipelines.sources.files import FileConnector

        return FileConnector(source)
    if isinstance(source, SqlSource):
        from recon_pipelines.sources.sql import SqlConnector

        return SqlConnector(source)
    if isinstance(source, HttpSource):
        from recon_pipelines.sources.http import HttpConnector

        return HttpConnector(source)
    if isinstance(source, DbtSource):
        from recon_pipelines.sources.dbt import DbtConnector

        return DbtConnector(source)
    raise TypeError(f"no connector for {type(source).__name__}")
