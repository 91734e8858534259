"""Definitions for a folder of specs: each spec becomes an asset group, its jobs, schedules
and sensors; the operator-action job and the run-failure sensor are shared."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from recon_pipelines.dagster_defs.assets import build_reconciliation_assets
from recon_pipelines.dagster_defs.operator_jobs import discrepancy_action
from recon_pipelines.dagster_defs.remediation import NotifierResource, build_remediation_definitions
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.dagster_defs.runs import build_run_definitions, failure_sensor
from recon_pipelines.spec import load_spec_dir
from recon_pipelines.spec.models import ReconciliationSpec

SPEC_DIR_ENV = "RECON_SPEC_DIR"


def build_definitions(
    spec_dir: str | Path | None = None,
    specs: list[ReconciliationSpec] | None = None,
    recon: ReconResource | None = None,
    notifier: NotifierResource | None = None,
) -> dg.Definitions:
    if specs is None:
        specs = load_spec_dir(spec_dir or os.environ[SPEC_DIR_ENV])
    assets, jobs, schedules, sensors = [], [discrepancy_action], [], [failure_sensor(specs)]
    for spec in specs:
        assets += build_reconciliation_assets(spec)
        runs = build_run_definitions(spec)
        jobs += runs["jobs"]
        schedules += runs["schedules"]
        sensors += runs["sensors"]
    remediation = build_remediation_definitions(specs, notifier)  # notifications, fixes, digests
    return dg.Definitions(
        assets=assets + remediation["assets"],
        jobs=jobs + remediation["jobs"],
        schedules=schedules + remediation["schedules"],
        sensors=sensors + remediation["sensors"],
        # No tracker_url: the tracker reads RECON_TRACKER_URL when a run opens it, so the URL (and
        # its password) never becomes resource config, which the UI shows.
        resources={"recon": recon or ReconResource(),
                   **remediation["resources"]},
    )
