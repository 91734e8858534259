"""``recon suggestions``: the suggested matches (engine/suggest.py) and an operator's decisions.

Registered into the ``recon`` group by cli.py.
"""

from __future__ import annotations

import sys

import click

from recon_pipelines.cli_shared import group_tracker, group_tracker_url_option, text_table, write_rows
from recon_pipelines.identity import os_user
from recon_pipelines.terminal import for_terminal

COLUMNS = ("id", "reconciliation", "status", "value_a", "value_b", "detail")
DECISION_COLUMNS = ("reconciliation", "key_a", "key_b", "decision", "score", "actor", "decided_at", "note")


@click.group()
@group_tracker_url_option()
def suggestions() -> None:
    """Likely pairs of records no key paired: list them, confirm or reject them."""


@suggestions.command("list")
@click.option("--reconciliation", "-r", default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def list_suggestions(ctx, reconciliation, fmt) -> None:
    """Open suggestions, best first: key A, key B and the match probability with what agreed."""
    rows = [r for r in group_tracker(ctx).discrepancies(reconciliation, status="open") if r["kind"] == "suggested_match"]
    rows.sort(key=lambda r: (r["reconciliation"], r["detail"] or ""), reverse=True)
    if fmt == "table":
        click.echo(text_table(rows, COLUMNS) if rows else "no open suggestions")
    else:
        write_rows(rows, fmt, sys.stdout, COLUMNS)


def _decision_command(command: str, decision: str, help_text: str) -> None:
    @suggestions.command(command, help=help_text)
    @click.argument("ids", nargs=-1, required=True)
    @click.option("--note", default=None, help="Why; recorded in the audit trail.")
    @click.option("--actor", "on_behalf_of", default=None, metavar="NAME",
                  help="Acting on behalf of NAME: recorded in the note; the actor is the OS account running recon.")
    @click.pass_context
    def run_decision(ctx, ids, note, on_behalf_of):
        from recon_pipelines.tracker.matches import decide

        tracker = group_tracker(ctx)
        for discrepancy_id in dict.fromkeys(ids):
            row = decide(tracker, discrepancy_id, decision, os_user(), note=note, on_behalf_of=on_behalf_of)
            click.echo(for_terminal(f"{row['id']}  {decision}  {row['value_a']} ↔ {row['value_b']}"))


_decision_command("confirm", "confirmed",
                  "Confirm suggested pairs: later runs pair the two records (their only_in_* then resolve).")
_decision_command("reject", "rejected", "Reject suggested pairs: they are not suggested again.")


@suggestions.command("decisions")
@click.option("--reconciliation", "-r", default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.pass_context
def list_decisions(ctx, reconciliation, fmt) -> None:
    """Every confirmed or rejected pair, oldest first, with who decided and when."""
    from recon_pipelines.tracker.matches import decisions

    rows = decisions(group_tracker(ctx), reconciliation)
    if fmt == "table":
        click.echo(text_table(rows, DECISION_COLUMNS) if rows else "no decisions")
    else:
        write_rows(rows, fmt, sys.stdout, DECISION_COLUMNS)
