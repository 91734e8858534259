"""``recon runs``: the tracker's run log, and accepting a run the export guard held.

Registered into the ``recon`` group by cli.py; shared helpers come from cli_shared.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from recon_pipelines.cli_shared import cell_text, group_tracker, group_tracker_url_option, write_rows
from recon_pipelines.identity import os_user

RUN_COLUMNS = ("run_id", "reconciliation", "scope", "outcome", "finished_at", "rows_a", "rows_b", "discrepancies",
               "new", "resolved", "accepted_by", "guard_note")


@click.group()
@group_tracker_url_option()
def runs() -> None:
    """The runs that wrote to the tracker; accept a run held as suspicious."""


@runs.command("list")
@click.option("--reconciliation", "-r", default=None)
@click.option("--status", type=click.Choice(["ok", "suspicious", "accepted"]), default=None,
              help="Only runs with this outcome (suspicious: held by the export guard, waiting for an operator).")
@click.option("--limit", type=int, default=20, show_default=True, help="The most recent runs shown.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def list_runs(ctx, reconciliation, status, limit, fmt) -> None:
    """Runs, newest last, with their outcome and, when held, why."""
    rows = [r for r in group_tracker(ctx).runs(reconciliation) if status in (None, r["outcome"])][-limit:]
    rows = [{c: r[c] for c in RUN_COLUMNS} for r in rows]
    if fmt == "table":
        click.echo(_runs_table(rows) if rows else "no runs")
    else:
        write_rows(rows, fmt, sys.stdout, RUN_COLUMNS)


def _runs_table(rows: list[dict]) -> str:
    """Run ids in full (they are what ``accept`` takes), and why a run was held on its own line."""
    columns = RUN_COLUMNS[:-2]
    cells = [[cell_text(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for row, cell in zip(rows, cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(cell, widths)).rstrip())
        if row["guard_note"]:
            lines.append(f"    held: {row['guard_note']}")
        if row["accepted_by"]:
            lines.append(f"    accepted by {row['accepted_by']}")
    return "\n".join(lines)


@runs.command("accept")
@click.argument("run_id")
@click.option("--actor", default=None,
              help="On whose behalf you accept; recorded beside your account (the OS user), which is the identity.")
@click.option("--spec", "spec_file", type=click.Path(path_type=Path), default=None,
              help="The reconciliation's spec (its escalation and routing apply); default: found by name in $RECON_SPEC_DIR.")
@click.pass_context
def accept(ctx, run_id, actor, spec_file) -> None:
    """Apply a run held as suspicious, as it would have been applied, and route what it opens."""
    from recon_pipelines.remediation.notifications import notification_writer

    tracker = group_tracker(ctx)
    held = tracker.run(run_id)
    if held is None:
        raise LookupError(f"no run with id {run_id!r} in the tracker (see `recon runs list`)")
    spec = _spec_named(held["reconciliation"], spec_file)
    # As for every operator action: the authenticated account acts, a claimed name is only a note.
    actor = os_user() if actor is None else f"{os_user()} (on behalf of {actor})"
    outcome = tracker.accept_run(run_id, actor, escalation=spec.escalation, on_outcome=notification_writer(spec))
    click.echo(f"run {run_id} accepted by {actor}: {len(outcome.new_ids) + len(outcome.reopened_ids)} opened, "
               f"{len(outcome.resolved_ids)} resolved, {len(outcome.escalated_ids)} escalated; {outcome.open_count} open")


def _spec_named(name: str, spec_file: Path | None):
    from recon_pipelines.spec import load_spec, load_spec_dir
    from recon_pipelines.spec.loader import SPEC_DIR_ENV

    if spec_file is not None:
        spec = load_spec(spec_file)
        if spec.name != name:
            raise ValueError(f"{spec_file}: spec {spec.name!r}, but the run belongs to {name!r}")
        return spec
    folder = Path(os.environ.get(SPEC_DIR_ENV, "specs"))
    for spec in load_spec_dir(folder) if folder.is_dir() else []:
        if spec.name == name:
            return spec
    raise LookupError(f"no spec named {name!r} in {folder}: give --spec FILE (its escalation and routing apply the run)")
