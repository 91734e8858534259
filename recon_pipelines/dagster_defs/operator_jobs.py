"""Operator actions from the Dagster UI: launch ``discrepancy_action`` from the launchpad
with the ids and the action. Same service layer as the CLI and Python API.

The audit trail's actor comes from the run, never from its config: Dagster OSS authenticates
no one, so it is ``dagster-ui (unauthenticated)`` (the proxy's access log says which user
launched the run; the event carries the run id to match it), or the run's creator on
Dagster+. A name typed in the config is recorded in the note as "on behalf of"."""

from datetime import datetime, timedelta, timezone

import dagster as dg
from pydantic import Field

from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.identity import dagster_launcher
from recon_pipelines.spec.models import parse_duration
from recon_pipelines.tracker.lifecycle import ACTIONS


class DiscrepancyActionConfig(dg.Config):
    ids: list[str] = Field(description="Discrepancy ids (from the discrepancies asset or `recon discrepancies`).")
    action: str = Field(description=f"One of: {', '.join(ACTIONS)}.")
    on_behalf_of: str | None = Field(
        default=None, description="Acting for someone else: recorded in the note (the actor is the run's launcher).")
    note: str | None = Field(default=None, description="Why (required to resolve or comment).")
    mute_for: str | None = Field(default=None, description="For mute: how long, e.g. '7d'.")
    assignee: str | None = Field(default=None, description="For assign: who takes it.")


@dg.op(description="Apply an operator action to discrepancies in the tracker (all of them, or none).")
def apply_discrepancy_action(context: dg.OpExecutionContext, config: DiscrepancyActionConfig, recon: ReconResource) -> None:
    until = None
    if config.mute_for:
        until = datetime.now(timezone.utc) + timedelta(seconds=parse_duration(config.mute_for))
    rows = recon.tracker().act(config.ids, config.action, dagster_launcher(context.run.tags), note=config.note,
                               until=until, assignee=config.assignee, on_behalf_of=config.on_behalf_of,
                               run_id=context.run_id)
    for row in rows:
        context.log.info(f"{row['id']} ({row['reconciliation']} {row['kind']} {row['key']}) is now {row['status']}")


@dg.job(description="Acknowledge, escalate, resolve, mute, unmute, reopen, assign or comment on discrepancies.")
def discrepancy_action():
    apply_discrepancy_action()
