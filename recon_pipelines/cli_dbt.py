"""``recon dbt-sources``: the tracker's tables as a dbt ``sources.yml``, on stdout.

Registered into the ``recon`` group by cli.py.
"""

from __future__ import annotations

import click

from recon_pipelines.cli_shared import open_tracker, tracker_url_option


@click.command("dbt-sources")
@tracker_url_option()
@click.option("--schema", default=None, help="The schema dbt reads the tables in; default: the tracker's (public, main).")
@click.option("--database", default=None,
              help="The database dbt reads them in; default: the tracker's (PostgreSQL), none otherwise (e.g. the "
                   "alias a dbt-duckdb project attaches a SQLite tracker as).")
def dbt_sources(tracker_url, schema, database) -> None:
    """Describe the tracker's tables as a dbt source named `recon`, with column descriptions:

        recon dbt-sources > models/recon_sources.yml

    then `select * from {{ source('recon', 'open_discrepancies') }}` in a dbt model."""
    from recon_pipelines.tracker.dbt_sources import sources_yaml

    tracker = open_tracker(tracker_url)  # migrated on opening: every table exists
    click.echo(sources_yaml(tracker.engine, schema=schema, database=database), nl=False)
