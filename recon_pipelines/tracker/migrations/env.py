"""Alembic environment for the tracker. Run through ``recon_pipelines.tracker.migrate``,
which passes the live connection in ``config.attributes['connection']``."""

from alembic import context

from recon_pipelines.tracker.schema import metadata

VERSION_TABLE = "recon_alembic_version"  # not alembic_version: the database may host other apps

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
