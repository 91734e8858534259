"""The asset checks on a reconciliation's results and inputs, and its freshness policy: what turns
the Dagster catalog red or yellow while something is wrong, not only when a run fails."""

# No `from __future__ import annotations` here: Dagster inspects the context annotation at runtime.
from datetime import timedelta

import dagster as dg

from recon_pipelines.spec.models import ReconciliationSpec

# A daily reconciliation whose results are older than a day plus this has missed a run.
FRESHNESS_GRACE = timedelta(hours=6)


def mismatch_rate_check(spec: ReconciliationSpec, metadata: dict) -> dg.AssetCheckResult:
    limit = spec.expect.max_mismatch_rate
    rate = metadata["records_with_discrepancies"] / max(metadata["records_compared"], 1)
    return dg.AssetCheckResult(
        check_name="mismatch_rate", passed=limit is None or rate <= limit, severity=dg.AssetCheckSeverity.WARN,
        metadata={"mismatch_rate": rate, "max_mismatch_rate": "no limit" if limit is None else f"{limit:g}",
                  "records_with_discrepancies": metadata["records_with_discrepancies"],
                  "records_compared": metadata["records_compared"]},
    )


def open_discrepancies_check(spec: ReconciliationSpec, open_by_severity: dict[str, int]) -> dg.AssetCheckResult:
    """Red while critical discrepancies are open past the spec's limit, yellow past the warning limit."""
    expect = spec.expect
    critical, warning = open_by_severity.get("critical", 0), open_by_severity.get("warning", 0)
    too_many_critical = critical > expect.max_open_critical
    too_many_warnings = expect.max_open_warning is not None and warning > expect.max_open_warning
    if too_many_critical:
        summary = f"{critical} critical discrepancies open (at most {expect.max_open_critical} allowed)"
    elif too_many_warnings:
        summary = f"{warning} warnings open (at most {expect.max_open_warning} allowed)"
    else:
        summary = "within expectations"
    return dg.AssetCheckResult(
        check_name="open_discrepancies", passed=not (too_many_critical or too_many_warnings),
        severity=dg.AssetCheckSeverity.ERROR if too_many_critical else dg.AssetCheckSeverity.WARN,
        description=summary,
        # The limits as text: numbers would be plotted as flat lines beside the counts.
        metadata={"open_critical": critical, "open_warning": warning, "open_info": open_by_severity.get("info", 0),
                  "max_open_critical": str(expect.max_open_critical),
                  "max_open_warning": "no limit" if expect.max_open_warning is None else str(expect.max_open_warning)},
    )


def freshness_policy(spec: ReconciliationSpec):
    """Results of a daily reconciliation go stale when no run produced them for a day and a grace:
    the daily schedule missed a run or is not running. Other reconciliations run on demand."""
    if spec.incremental is None:
        return None
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(days=1) + FRESHNESS_GRACE,
                                          warn_window=timedelta(days=1) + FRESHNESS_GRACE / 3)
