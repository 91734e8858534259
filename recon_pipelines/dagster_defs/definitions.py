"""Definitions for a folder of specs: each spec becomes an asset group and a job."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from recon_pipelines.dagster_defs.assets import build_reconciliation_assets, reconciliation_job
from recon_pipelines.dagster_defs.operator_jobs import discrepancy_action
from recon_pipelines.dagster_defs.resources import ReconResource
from recon_pipelines.spec import load_spec_dir
from recon_pipelines.spec.models import ReconciliationSpec

SPEC_DIR_ENV = "RECON_SPEC_DIR"


def build_definitions(
    spec_dir: str | Path | None = None,
    specs: list[ReconciliationSpec] | None = None,
    recon: ReconResource | None = None,
) -> dg.Definitions:
    if specs is None:
        specs = load_spec_dir(spec_dir or os.environ[SPEC_DIR_ENV])
    assets, jobs = [], [discrepancy_action]
    for spec in specs:
        assets += build_reconciliation_assets(spec)
        jobs.append(reconciliation_job(spec))
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        resources={"recon": recon or ReconResource(tracker_url=os.environ.get("RECON_TRACKER_URL"))},
    )
