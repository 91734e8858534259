"""What every ``recon`` command module shares: the ``--tracker-url`` option, the one way to open
the tracker, and the writers for tables, JSON lines and CSV.

Below cli.py and its command modules (cli_runs, cli_notifications, cli_web), which import it;
it imports none of them.
"""

from __future__ import annotations

import csv
import io
import json

import click

from recon_pipelines.cli_errors import UserError
from recon_pipelines.numbers import display_number
from recon_pipelines.redact import redact
from recon_pipelines.terminal import for_terminal, json_for_terminal, stream_is_terminal
from recon_pipelines.tracker.db import TRACKER_URL_ENV

EXIT_AGREE, EXIT_FOUND, EXIT_ERROR = 0, 1, 2  # 1 means only "discrepancies found"

_TRACKER_URL_DEFAULT = f"Default: ${TRACKER_URL_ENV}, else SQLite under DAGSTER_HOME."


def tracker_url_option(purpose: str = ""):
    """``--tracker-url`` (or ``$RECON_TRACKER_URL``); ``purpose`` says what the command reads it for."""
    return click.option("--tracker-url", envvar=TRACKER_URL_ENV, default=None,
                        help=f"{purpose} {_TRACKER_URL_DEFAULT}".strip())


def group_tracker_url_option():
    """``--tracker-url`` on a command group, kept in ``ctx.obj`` for its subcommands (``group_tracker``)."""

    def remember(ctx: click.Context, _param, url: str | None) -> None:
        ctx.ensure_object(dict)["tracker_url"] = url

    return click.option("--tracker-url", envvar=TRACKER_URL_ENV, default=None, expose_value=False, callback=remember,
                        help=_TRACKER_URL_DEFAULT)


def open_tracker(url: str | None):
    """The tracker, opened here so that a failure to reach it is named as the tracker's."""
    import sqlalchemy as sa

    from recon_pipelines.tracker import Tracker
    from recon_pipelines.tracker.db import default_tracker_url

    url = url or default_tracker_url()
    try:
        return Tracker(url)
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        reason = getattr(exc, "orig", None) or exc
        first = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        raise UserError(f"tracker {redact(url)}: {first}") from None


def group_tracker(ctx: click.Context):
    """The tracker named by a command group's ``--tracker-url`` (``group_tracker_url_option``)."""
    return open_tracker(ctx.obj.get("tracker_url") if ctx.obj else None)


def write_rows(rows: list[dict], fmt: str, handle, columns) -> None:
    """JSON lines or CSV, lossless: JSON writes control, bidi and format characters as \\u
    escapes (the same strings to any reader); CSV keeps every value byte for byte for files and
    pipes, and is escaped like the table only when it is written straight to a terminal."""
    if fmt == "json":
        for row in rows:
            handle.write(json_for_terminal(json.dumps({c: row.get(c) for c in columns}, default=str,
                                                      ensure_ascii=False)) + "\n")
    else:
        if stream_is_terminal(handle):
            rows = [{c: for_terminal(row.get(c)) for c in columns} for row in rows]
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def text_table(rows: list[dict], columns=("severity", "kind", "key", "field", "value_a", "value_b", "reason")) -> str:
    cells = [[cell_text(r.get(c), 40) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    buffer = io.StringIO()
    buffer.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    for row in cells:
        buffer.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    return buffer.getvalue().rstrip("\n")


def cell_text(value, width: int | None = None) -> str:
    """A value for a table cell or a line: terminal-safe (escaped), then cut to ``width``."""
    text = for_terminal(value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "isoformat") else value)
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def displayed(row: dict) -> dict:
    """A discrepancy as the CLI shows it: numbers without float noise (numbers.display_number)."""
    return {name: display_number(value) for name, value in row.items()}


def write_discrepancies(rows: list[dict], fmt: str, output, limit: int, columns, table_columns) -> None:
    """``recon run``'s output: a file (``--output``, JSON lines unless csv), else the table's first
    ``limit`` rows or every row as JSON lines / CSV on stdout. (``--format html`` is written by the caller.)"""
    import sys

    if output is not None:
        with output.open("w", encoding="utf-8", newline="") as handle:
            write_rows(rows, "json" if fmt == "table" else fmt, handle, columns)
        click.echo(f"{len(rows)} discrepancies written to {output}")
    elif rows:
        if fmt == "table":
            click.echo(text_table(rows[:limit], table_columns))
            if len(rows) > limit:
                click.echo(f"... {len(rows) - limit} more (use --output FILE or --format json for all)")
        else:
            write_rows(rows, fmt, sys.stdout, columns)
