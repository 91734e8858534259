"""Definitions for reconciliation specs, in two parts:

- ``spec_definitions(spec)``: what belongs to one spec (its asset group, jobs, schedules and
  sensors, its notifications and fixes assets);
- ``shared_definitions(specs)``: what spans every spec of a code location and must exist once
  (the ``recon`` and ``notifier`` resources, the ``discrepancy_action`` job, the run-failure
  sensor, notification delivery, the daily digest).

``build_definitions`` merges both for a folder of specs; the Component builds the shared part
once per code location, however many instances it has (see ``recon_pipelines.component``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from recon_pipelines.dagster_defs.assets import build_reconciliation_assets
from recon_pipelines.dagster_defs.operator_jobs import discrepancy_action
from recon_pipelines.dagster_defs.remediation import NotifierResource, remediation_assets, shared_remediation_definitions
from recon_pipelines.dagster_defs.resources import ReconResource, SparkEngine
from recon_pipelines.dagster_defs.runs import build_run_definitions, failure_sensor
from recon_pipelines.spec import load_spec_dir
from recon_pipelines.spec.loader import SPEC_DIR_ENV
from recon_pipelines.spec.models import ReconciliationSpec
from recon_pipelines.spec.nway import NWaySpec


def build_definitions(
    spec_dir: str | Path | None = None,
    specs: list[ReconciliationSpec] | None = None,
    recon: ReconResource | None = None,
    notifier: NotifierResource | None = None,
    spark: SparkEngine | None = None,
) -> dg.Definitions:
    if specs is None:
        specs = load_spec_dir(spec_dir or os.environ[SPEC_DIR_ENV])
    return dg.Definitions.merge(*(spec_definitions(spec) for spec in specs),
                                shared_definitions(specs, recon, notifier, spark))


def spec_definitions(spec: ReconciliationSpec | NWaySpec) -> dg.Definitions:
    if isinstance(spec, NWaySpec):  # three or more systems: one snapshot per system (dagster_defs/nway.py)
        from recon_pipelines.dagster_defs.nway import build_nway_assets, nway_job

        return dg.Definitions(assets=build_nway_assets(spec) + remediation_assets(spec), jobs=[nway_job(spec)])
    runs = build_run_definitions(spec)
    return dg.Definitions(assets=build_reconciliation_assets(spec) + remediation_assets(spec), jobs=runs["jobs"],
                          schedules=runs["schedules"], sensors=runs["sensors"])


def shared_definitions(specs: Sequence[ReconciliationSpec], recon: ReconResource | None = None,
                       notifier: NotifierResource | None = None, spark: SparkEngine | None = None) -> dg.Definitions:
    """Everything that spans ``specs``; raises on two specs of one name (they would share assets)."""
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"two reconciliations are named {spec.name!r}: spec names must be unique in a code location")
        seen.add(spec.name)
    remediation = shared_remediation_definitions(specs)
    return dg.Definitions(
        jobs=[discrepancy_action, *remediation["jobs"]],
        schedules=remediation["schedules"],
        sensors=[failure_sensor(specs), *remediation["sensors"]],
        resources={"recon": recon or ReconResource(),
                   "notifier": notifier or NotifierResource(),
                   # Its master is read from $RECON_SPARK_MASTER at run time (never shown as config).
                   "spark": spark or SparkEngine()},
    )
