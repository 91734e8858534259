"""A PostgreSQL cluster of the tests' own with ``wal_level = logical`` (the shared server is not
reconfigured), and a NATS JetStream stream per test. Both skip with a reason when unavailable,
and fail under CI=true."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("RECON_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
NATS_URL = os.environ.get("RECON_TEST_NATS_URL", "nats://127.0.0.1:4222")


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*args: str) -> list[str]:
    """Tests run as root here; PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return list(args)
    return ["runuser", "-u", "postgres", "--", *args]


@contextlib.contextmanager
def logical_cluster():
    """Yields an admin URL of a fresh cluster (wal_level=logical) on a free port; removed on exit."""
    if not (PG_BIN / "initdb").exists():
        unavailable(f"no PostgreSQL binaries in {PG_BIN} (set RECON_TEST_PG_BIN)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        unavailable("running as root without runuser: cannot start PostgreSQL")
    root = Path(tempfile.mkdtemp(prefix="recon-logical-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    try:
        subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                    "--no-sync"), check=True, capture_output=True)
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c wal_level=logical "
                   "-c max_replication_slots=32 -c max_wal_senders=10 -c fsync=off -c synchronous_commit=off")
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                                    "-w", "-t", "60", "start"), check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"cannot start a PostgreSQL cluster: {exc.stderr.decode(errors='replace').strip()[-300:]}")
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def nats_reachable() -> None:
    host, port = NATS_URL.rsplit("//", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        unavailable(f"no NATS server at {NATS_URL} ({exc})")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
