"""``recon notifications``: see what the outbox holds and requeue what a destination refused.

A refusal (``invalid_auth``, ``channel_not_found``, another 4xx) marks a notification
``failed`` for good, because retrying cannot help until someone fixes the token, the channel
or the receiver. Once fixed, ``recon notifications retry`` puts them back in the queue; the
next delivery pass (the sensor, within a minute) sends them, in their original order.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import click

from recon_pipelines.cli_shared import group_tracker, group_tracker_url_option, text_table, write_rows
from recon_pipelines.spec.base import parse_moment
from recon_pipelines.tracker.schema import OUTBOX_STATUSES

COLUMNS = ("id", "reconciliation", "destination", "event", "idempotency_key", "status", "attempts", "last_error",
           "created_at")


@click.group()
@group_tracker_url_option()
def notifications() -> None:
    """The notification outbox: list it, retry what failed."""


@notifications.command("list")
@click.option("--status", type=click.Choice(OUTBOX_STATUSES), default=None, help="Only this status (e.g. failed).")
@click.option("--destination", "-d", default=None)
@click.option("--reconciliation", "-r", default=None)
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def list_notifications(ctx, status, destination, reconciliation, limit, fmt) -> None:
    """Notifications oldest first, with the destination's last error."""
    from recon_pipelines.remediation import outbox

    rows = outbox.listing(_engine(ctx), status, destination, reconciliation, limit)
    if fmt == "table":
        click.echo(text_table(rows, COLUMNS) if rows else "no notifications")
    else:
        write_rows(rows, fmt, sys.stdout, COLUMNS)


@notifications.command("retry")
@click.option("--destination", "-d", default=None, help="Only this destination (e.g. after fixing its channel).")
@click.option("--reconciliation", "-r", default=None)
@click.option("--since", default=None, help="Only notifications written since: a duration (2h, 3d) or an ISO date/time.")
@click.pass_context
def retry(ctx, destination, reconciliation, since) -> None:
    """Requeue failed notifications; the next delivery pass sends them."""
    from recon_pipelines.remediation import outbox

    now = datetime.now(timezone.utc)
    count = outbox.requeue(_engine(ctx), now, destination, _since(since, now), reconciliation)
    click.echo(f"{count} failed notification(s) requeued")


def _since(text: str | None, now: datetime) -> datetime | None:
    return None if text is None else parse_moment(text, now=now, ahead=False, what="--since")


def _engine(ctx):
    return group_tracker(ctx).engine
