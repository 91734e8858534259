"""Where the tracker lives and how its schema gets there.

PostgreSQL when ``RECON_TRACKER_URL`` (or an explicit URL) names one; otherwise an
embedded SQLite file under the Dagster home. The same code serves both.

A PostgreSQL session is bounded (``POSTGRES_CONNECT_ARGS``, ``POSTGRES_SESSION_SETTINGS``), so
that a network stall never leaves a run holding its reconciliation's advisory lock: the server
ends a session idle in a transaction, TCP keepalives and ``tcp_user_timeout`` notice a dead
peer, and statement and lock timeouts bound every wait. The same names given as URL query
parameters win (``?connect_timeout=5``, ``?options=-c%20lock_timeout%3D60000``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from recon_pipelines.tracker.values import json_dumps
from recon_pipelines.urls import normalize_url

TRACKER_URL_ENV = "RECON_TRACKER_URL"
_MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 0x7265636F6E  # "recon"

# libpq connection parameters (seconds unless noted).
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 60,  # an idle connection is probed after a minute ...
    "keepalives_interval": 10,  # ... every 10 s, and given up after 6 unanswered probes
    "keepalives_count": 6,
    "tcp_user_timeout": 120_000,  # ms: data sent but unacknowledged this long ends the connection
}
# Server settings of every tracker session (milliseconds). The statement timeout covers the
# wait for the reconciliation's advisory lock too, so it is the longest.
POSTGRES_SESSION_SETTINGS = {
    "idle_in_transaction_session_timeout": 300_000,  # 5 min: a stalled run's transaction is ended
    "lock_timeout": 900_000,  # 15 min waiting for a lock (another run of the same reconciliation)
    "statement_timeout": 1_800_000,  # 30 min for one statement
}


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
    return sa.create_engine(url, pool_pre_ping=True, json_serializer=json_dumps, connect_args=postgres_connect_args(url))


def postgres_connect_args(url: str | sa.URL) -> dict:
    """The bounds above, except those the URL sets itself; its ``options`` come last, so they win."""
    query = sa.make_url(url).query
    args: dict = {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in query}
    options = " ".join(f"-c {name}={value}" for name, value in POSTGRES_SESSION_SETTINGS.items())
    given = query.get("options")
    args["options"] = f"{options} {given if isinstance(given, str) else ' '.join(given or ())}".strip()
    return args


def _serialize_sqlite_writers(engine: sa.Engine) -> None:
    """pysqlite starts transactions lazily, so two writers can both read before either writes.
    BEGIN IMMEDIATE takes the write lock up front (SQLAlchemy's documented pysqlite recipe)."""

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        _use_wal(dbapi_connection)
        # In WAL mode NORMAL syncs at checkpoints, not at every commit: a commit can be lost to
        # a power cut or an OS crash (never to a crash of the process) and the file is never
        # corrupted. A lost run is not recorded, so the next run applies it again.
        dbapi_connection.execute("PRAGMA synchronous = NORMAL")
        # A run folds 10^5-10^6 rows through the tracker's indexes: a 64 MB page cache (the
        # default is 2 MB) keeps them in memory; sorts and temporary indexes stay in memory too.
        dbapi_connection.execute("PRAGMA cache_size = -65536")
        dbapi_connection.execute("PRAGMA temp_store = MEMORY")

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
