"""A real ``recon web`` server for tests: uvicorn on 127.0.0.1 and a free port, in a thread,
over a real tracker with a few users and discrepancies (hostile values included)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx
import pyarrow as pa
import uvicorn

from recon_pipelines.engine import DISCREPANCY_SCHEMA
from recon_pipelines.tracker import Tracker
from recon_pipelines.web.app import Settings, create_app
from recon_pipelines.web.auth import Users

PASSWORD = "correct horse battery"
USERS = {"alice": "operator", "victor": "viewer", "ada": "admin"}
HOSTILE_A = '<script>alert("a")</script> "quoted" \'single\''
HOSTILE_B = "line one\nline two \u202eevil\u202c end"
RECON = "crm_vs_billing"


def row(key: str, field: str = "amount", severity: str = "warning", **extra) -> dict:
    return {"id": f"{key}-{field}", "reconciliation": RECON, "kind": "field_mismatch", "key": key, "field": field,
            "reason": "value_differs", "value_a": "1", "value_b": "2", "severity": severity, **extra}


def seed(tracker: Tracker) -> None:
    rows = [row("hostile", value_a=HOSTILE_A, value_b=HOSTILE_B, severity="critical"),
            row("1001", severity="critical"), row("1002"), row("1003", severity="info")]
    tracker.apply_run(RECON, "run-1", pa.Table.from_pylist(rows, schema=DISCREPANCY_SCHEMA),
                      summary={"rows_a": 100, "rows_b": 101, "matched": 99})
    users = Users(tracker.engine)
    for name, role in USERS.items():
        users.add(name, role, PASSWORD)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(tracker: Tracker, settings: Settings | None = None):
    """The app served on 127.0.0.1:<free port>; yields its base URL and stops it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(tracker, settings or Settings()), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web server did not start")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def signed_in(base: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=30)
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"csrf": token, "name": name, "password": PASSWORD, "next": "/"})
    assert response.status_code == 303, response.text
    return client
