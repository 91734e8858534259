"""Operator actions from the Dagster UI: launch ``discrepancy_action`` from the launchpad
with the ids, the action and who you are. Same service layer as the CLI and Python API."""

from datetime import datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.spec.models import parse_duration
from recon_pipelines.tracker.lifecycle import ACTIONS


class DiscrepancyActionConfig(dg.Config):
    ids: list[str] = Field(description="Discrepancy ids (from the discrepancies asset or `recon discrepancies`).")
    action: str = Field(description=f"One of: {', '.join(ACTIONS)}.")
    actor: str = Field(description="Who is acting; recorded in the audit trail.")
    note: str | None = Field(default=None, description="Why (required to resolve or comment).")
    mute_for: str | None = Field(default=None, description="For mute: how long, e.g. '7d'.")
    assignee: str | None = Field(default=None, description="For assign: who takes it.")


@dg.op(description="Apply an operator action to discrepancies in the tracker (all of them, or none).")
def apply_discrepancy_action(context: dg.OpExecutionContext, config: DiscrepancyActionConfig, recon: ReconResource) -> None:
    until = None
    if config.mute_for:
        until = datetime.now(timezone.utc) + timedelta(seconds=parse_duration(config.mute_for))
    rows = recon.tracker().act(config.ids, config.action, config.actor, note=config.note, until=until,
                               assignee=config.assignee)
    for row in rows:
        context.log.info(f"{row['id']} ({row['reconciliation']} {row['kind']} {row['key']}) is now {row['status']}")


@dg.job(description="Acknowledge, escalate, resolve, mute, unmute, reopen, assign or comment on discrepancies.")
def discrepancy_action():
    apply_discrepancy_action()
