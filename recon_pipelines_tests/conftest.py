"""Shared fixtures. PostgreSQL tests run against a real server in a throwaway database;
without a server they skip, except under CI=true, where an unreachable server is a failure."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("RECON_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "no server here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    problem = _pg_reachable()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL at {PG_ADMIN_URL} is unreachable: {problem}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL} ({problem}); set RECON_TEST_PG_URL to run these tests")
    return PG_ADMIN_URL


@contextlib.contextmanager
def throwaway_database(admin_url: str):
    """A fresh, empty PostgreSQL database, dropped on exit; yields its URL."""
    name = f"recon_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_admin_url: str):
    """A fresh, empty database for one test, dropped afterwards."""
    with throwaway_database(pg_admin_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tracker_url(request, tmp_path) -> str:
    """Each tracker test runs on the embedded default and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tracker.sqlite'}"
    return request.getfixturevalue("pg_url")


MARIADB_ADMIN_URL = os.environ.get("RECON_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306")


@contextlib.contextmanager
def throwaway_mariadb(collation: str = "utf8mb4_general_ci"):
    """A fresh MariaDB database (case-insensitive, trailing-space-insensitive collation by
    default, as most MariaDB schemas are), dropped on exit; yields its URL. Skips without a
    server, fails under CI=true."""
    pytest.importorskip("pymysql")
    name = f"recon_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(MARIADB_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE {collation}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but MariaDB at {MARIADB_ADMIN_URL} is unreachable: {str(exc).splitlines()[0]}")
        pytest.skip(f"no MariaDB at {MARIADB_ADMIN_URL}; set RECON_TEST_MARIADB_URL to run these tests")
    try:
        yield f"{MARIADB_ADMIN_URL}/{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
        admin.dispose()


@pytest.fixture
def mariadb_db():
    with throwaway_mariadb() as url:
        yield url
