"""``recon web``, ``recon users`` and ``recon report``: the triage page, who may use it, and a
run's shareable HTML report. The tracker is the CLI's (``--tracker-url``, else
``$RECON_TRACKER_URL``, else SQLite under DAGSTER_HOME)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from recon_pipelines.cli_shared import open_tracker, tracker_url_option


@click.command()
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Listen address; keep 127.0.0.1 unless a proxy or container network is in front.")
@tracker_url_option()
@click.option("--trust-proxy-header", default=None, metavar="HEADER",
              help="Take the signed-in user from this header (e.g. X-Forwarded-User) set by an authenticating "
                   "reverse proxy. Only when the proxy is the sole way in.")
@click.option("--proxy-role", type=click.Choice(["viewer", "operator", "admin"]), default="viewer", show_default=True,
              help="Role of a proxy-authenticated user who has no entry in `recon users`.")
@click.option("--dagster-url", envvar="RECON_DAGSTER_URL", default="http://127.0.0.1:3000", show_default=True,
              help="Dagster webserver, for links to runs ($RECON_DAGSTER_URL).")
@click.option("--secure-cookies", is_flag=True, help="Send the session cookie over HTTPS only (behind TLS).")
def web(port, host, tracker_url, trust_proxy_header, proxy_role, dagster_url, secure_cookies) -> None:
    """Serve the triage page: the queue of discrepancies, their history, and actions on them."""
    import uvicorn

    from recon_pipelines.web.app import Settings, create_app

    tracker = open_tracker(tracker_url)
    app = create_app(tracker, Settings(trust_proxy_header=trust_proxy_header, proxy_role=proxy_role,
                                       dagster_url=dagster_url, secure_cookies=secure_cookies))
    click.echo(f"recon web on http://{host}:{port}  (tracker {tracker.url})")
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False, server_header=False)


@click.group()
def users() -> None:
    """Who may sign in to `recon web`, and with which role (viewer reads, operator acts, admin manages)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@tracker_url_option()
def users_add(name, role, password_stdin, tracker_url) -> None:
    """Add a user (the password is asked for, or read with --password-stdin)."""
    from recon_pipelines.web.auth import Users

    password = _password(password_stdin)
    Users(open_tracker(tracker_url).engine).add(name, role, password)
    click.echo(f"user {name} added ({role})")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@tracker_url_option()
def users_passwd(name, password_stdin, tracker_url) -> None:
    """Set a user's password."""
    from recon_pipelines.web.auth import Users

    Users(open_tracker(tracker_url).engine).set_password(name, _password(password_stdin))
    click.echo(f"password of {name} changed")


@users.command("remove")
@click.argument("name")
@tracker_url_option()
def users_remove(name, tracker_url) -> None:
    """Remove a user (their open sessions stop working at once)."""
    from recon_pipelines.web.auth import Users

    Users(open_tracker(tracker_url).engine).remove(name)
    click.echo(f"user {name} removed")


@users.command("list")
@tracker_url_option()
def users_list(tracker_url) -> None:
    """List users and their roles."""
    from recon_pipelines.web.auth import Users

    for user in Users(open_tracker(tracker_url).engine).all():
        click.echo(f"{user.name}  {user.role}")


@click.command()
@click.argument("run_id")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True, help="The HTML file to write.")
@tracker_url_option()
def report(run_id, output, tracker_url) -> None:
    """Write a run's summary as one self-contained HTML file (no external requests), to share."""
    from recon_pipelines.web import report as run_report

    data = run_report.run_report(open_tracker(tracker_url), run_id)
    if data is None:
        raise LookupError(f"no run {run_id!r} in the tracker")
    output.write_text(run_report.render(data), encoding="utf-8")
    click.echo(f"report of run {run_id} written to {output}")


def write_one_off_report(name: str, summary: dict, rows: list[dict], output: Path | None) -> None:
    """``recon run --format html``: the report of a run outside the tracker."""
    from recon_pipelines.web import report as run_report

    if output is None:
        raise ValueError("--format html writes a file: give --output report.html")
    output.write_text(run_report.render(run_report.one_off_report(name, summary, rows)), encoding="utf-8")
    click.echo(f"report ({len(rows)} discrepancies) written to {output}")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def register(main: click.Group) -> None:
    for command in (web, users, report):
        main.add_command(command)
