"""Where the tracker lives and how its schema gets there.

PostgreSQL when ``RECON_TRACKER_URL`` (or an explicit URL) names one; otherwise an
embedded SQLite file under the Dagster home. The same code serves both.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from recon_pipelines.sources.sql import normalize_url
from recon_pipelines.tracker.values import json_dumps

TRACKER_URL_ENV = "RECON_TRACKER_URL"
_MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 0x7265636F6E  # "recon"


def default_tracker_url() -> str:
    if os.environ.get(TRACKER_URL_ENV):
        return os.environ[TRACKER_URL_ENV]
    home = Path(os.environ.get("DAGSTER_HOME") or ".recon")
    home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(home / 'recon_tracker.sqlite').resolve()}"


def create_tracker_engine(url: str | None = None) -> sa.Engine:
    url = normalize_url(url or default_tracker_url())
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60}, json_serializer=json_dumps)
        _serialize_sqlite_writers(engine)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, json_serializer=json_dumps)


def _serialize_sqlite_writers(engine: sa.Engine) -> None:
    """pysqlite starts transactions lazily, so two writers can both read before either writes.
    BEGIN IMMEDIATE takes the write lock up front (SQLAlchemy's documented pysqlite recipe)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        _use_wal(dbapi_connection)

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _use_wal(dbapi_connection) -> None:
    """WAL lets readers work while a run writes. The mode is stored in the file, so only the
    first connection switches it; the busy timeout does not cover that switch, so two first
    connections at once retry briefly (without WAL, SQLite is slower, never wrong)."""
    for _ in range(100):
        try:
            if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            time.sleep(0.05)


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the latest revision. Safe when several processes start at once:
    PostgreSQL serialises them on an advisory lock, SQLite on its write lock."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
