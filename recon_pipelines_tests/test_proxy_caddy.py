"""The stack's proxy for real: Caddy with docker/Caddyfile, started through the secrets guard
as its image's entrypoint does, on 127.0.0.1 in front of a tiny upstream that reports what
it received. No Docker needed; needs the `caddy` binary (Debian's package; .ci/run installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from recon_pipelines_tests import docker_checks as dc

CADDY = shutil.which("caddy")
if CADDY is None and os.environ.get("CI") == "true":
    pytest.fail("caddy is not installed; .ci/run installs Debian's caddy package", pytrace=False)
pytestmark = pytest.mark.skipif(CADDY is None, reason="caddy is not installed (apt-get install caddy)")

USER, PASSWORD = "ana", "a long passphrase for the UI"


class _Upstream(BaseHTTPRequestHandler):
    """Stands in for dagster-webserver: answers 200 and records the headers it was sent."""

    seen: list[dict[str, str]] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = b"dagster"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _caddy_version() -> tuple[int, ...]:
    out = subprocess.run([CADDY, "version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(n) for n in re.match(r"v?(\d+)\.(\d+)\.(\d+)", out.strip()).groups())


def _caddyfile_for_this_caddy(target: Path) -> Path:
    """docker/Caddyfile as shipped, except on Caddy before 2.8 (Debian bookworm has 2.6), where
    the directive `basic_auth` (the image's Caddy 2.10 name) was still spelled `basicauth`."""
    text = dc.CADDYFILE.read_text(encoding="utf-8")
    if _caddy_version() < (2, 8, 0):
        assert text.count("\tbasic_auth {") == 1
        text = text.replace("\tbasic_auth {", "\tbasicauth {")
    target.write_text(text, encoding="utf-8")
    return target


def _environment(tmp_path: Path, port: int, upstream_port: int, password_hash: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "RECON_UI_SITE_ADDRESS": f":{port}", "RECON_UI_LISTEN_ADDRESS": "127.0.0.1",
        "RECON_UI_USER": USER, "RECON_UI_PASSWORD_HASH": password_hash,
        "RECON_UI_UPSTREAM": f"127.0.0.1:{upstream_port}",
        dc.REQUIRED_SECRETS_ENV: "RECON_UI_PASSWORD_HASH",
    }


def _start(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    caddyfile = _caddyfile_for_this_caddy(tmp_path / "Caddyfile")
    return subprocess.Popen(
        ["sh", str(dc.SECRETS_GUARD), CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=env, stdout=open(tmp_path / "caddy.out", "w"), stderr=open(tmp_path / "caddy.err", "w"),
    )


@pytest.fixture
def upstream():
    _Upstream.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(tmp_path, upstream):
    import bcrypt

    port = _free_port()
    password_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()  # cheap for the test
    process = _start(tmp_path, _environment(tmp_path, port, upstream.server_address[1], password_hash))
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"caddy exited {process.returncode}: {(tmp_path / 'caddy.err').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"caddy did not listen on {port}: {(tmp_path / 'caddy.err').read_text()[-2000:]}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/", tmp_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never an environment proxy
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=20) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


def test_without_credentials_nothing_reaches_the_ui(proxy):
    url, _ = proxy
    status, headers, _ = _get(url, {"X-Forwarded-User": "mallory"})
    assert status == 401 and headers.get("Www-Authenticate", "").startswith("Basic")
    status, _, _ = _get(url, {"Authorization": _basic(USER, "wrong password")})
    assert status == 401
    assert _Upstream.seen == []


def test_authenticated_user_replaces_any_identity_the_client_sends(proxy):
    url, folder = proxy
    forged = {"X-Forwarded-User": "mallory", "Remote-User": "mallory", "X-Auth-Request-User": "mallory",
              "X-Forwarded-Email": "mallory@example.com"}
    status, _, body = _get(url, {"Authorization": _basic(USER, PASSWORD), **forged})
    assert (status, body) == (200, b"dagster")
    (received,) = _Upstream.seen
    assert received["x-forwarded-user"] == USER
    for header in ("remote-user", "x-auth-request-user", "x-forwarded-email", "authorization"):
        assert header not in received, header  # stripped, and the password stops at the proxy

    # the access log names the authenticated user: the record of who did what in the UI
    entries = [json.loads(line) for line in (folder / "caddy.err").read_text().splitlines()
               + (folder / "caddy.out").read_text().splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("logger", "").startswith("http.log.access")]
    assert any(e.get("user_id") == USER and e.get("status") == 200 for e in access), access


def test_the_example_hash_never_starts_the_proxy(tmp_path, upstream):
    placeholder = dc.secret_variables(dc.ENV_EXAMPLE)["RECON_UI_PASSWORD_HASH"]
    process = _start(tmp_path, _environment(tmp_path, _free_port(), upstream.server_address[1], placeholder))
    assert process.wait(timeout=30) != 0
    assert "RECON_UI_PASSWORD_HASH still holds the example value" in (tmp_path / "caddy.err").read_text()
