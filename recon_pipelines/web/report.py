"""A run's report as one self-contained HTML file (inline CSS and SVG, no external request),
for sharing with people who will not open the queue: ``recon report RUN_ID --output report.html``."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import sqlalchemy as sa

from recon_pipelines.tracker import Tracker
from recon_pipelines.tracker.schema import discrepancies, events, runs
from recon_pipelines.web.render import environment

# Events a run writes, as the report names them.
CHANGES = {"detected": "new", "reopened": "reopened", "resolved": "resolved", "escalated": "escalated", "unmuted": "unmuted"}


def run_report(tracker: Tracker, run_id: str) -> dict | None:
    """What the report shows for ``run_id``, or None when the tracker has no such run."""
    d, e = discrepancies, events
    with tracker.engine.connect() as conn:
        run = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        if run is None:
            return None
        run = dict(run._mapping)
        previous = conn.execute(
            sa.select(runs.c.run_id, runs.c.finished_at)
            .where(runs.c.reconciliation == run["reconciliation"], runs.c.finished_at < run["finished_at"])
            .order_by(runs.c.finished_at.desc()).limit(1)).first()
        later = conn.scalar(sa.select(sa.func.count()).select_from(runs).where(
            runs.c.reconciliation == run["reconciliation"], runs.c.finished_at > run["finished_at"]))
        changed = conn.execute(
            sa.select(e.c.action, d.c.id, d.c.kind, d.c.key, d.c.field, d.c.severity, d.c.value_a, d.c.value_b)
            .join(d, d.c.id == e.c.discrepancy_id)
            .where(e.c.run_id == run_id, e.c.action.in_(list(CHANGES)))
            .order_by(e.c.action, d.c.severity, d.c.key)).all()
        # A run stamps every discrepancy it sees with its id, so for the latest run these are
        # exactly what it saw; for an older run, those no later run has seen.
        seen = conn.execute(sa.select(d.c.kind, d.c.severity, d.c.field).where(d.c.last_run_id == run_id)).all()
    return {
        "run": run,
        "systems": system_counts(run.get("summary")),
        "previous": dict(previous._mapping) if previous else None,
        "is_latest": later == 0, "one_off": False,
        "by_kind": _counts(r.kind for r in seen),
        "by_severity": _counts(r.severity for r in seen),
        "by_field": _counts(r.field or "(whole record)" for r in seen),
        "seen": len(seen),
        "changes": {label: [dict(r._mapping) for r in changed if CHANGES[r.action] == label] for label in CHANGES.values()},
        "generated_at": datetime.now(timezone.utc),
    }


def one_off_report(reconciliation: str, summary: dict, found: list[dict]) -> dict:
    """The same report for a run outside the tracker (``recon run --format html``): everything
    it found, with nothing to compare it with."""
    now = datetime.now(timezone.utc)
    return {
        "run": {"run_id": "one-off (recon run)", "reconciliation": reconciliation, "scope": "full", "finished_at": now,
                "rows_a": summary.get("rows_a"), "rows_b": summary.get("rows_b"), "matched": summary.get("matched"),
                "discrepancies": len(found)},
        "systems": system_counts(summary),
        "previous": None, "is_latest": True, "one_off": True,
        "by_kind": _counts(r["kind"] for r in found),
        "by_severity": _counts(r["severity"] for r in found),
        "by_field": _counts(r.get("field") or "(whole record)" for r in found),
        "seen": len(found),
        "changes": {"found": sorted(found, key=lambda r: (r["severity"], r["kind"], str(r["key"])))},
        "generated_at": now,
    }


def system_counts(summary) -> dict | None:
    """An N-way run's per-system counts (the first line users compare, and why they differ)."""
    if not isinstance(summary, dict) or not summary.get("nway"):
        return None
    from recon_pipelines.engine.nway import NWayStats
    from recon_pipelines.nway_pipeline import breakdown_lines, counts_line

    stats = NWayStats.from_json(summary)
    return {"line": counts_line(stats), "why": breakdown_lines(stats), "systems": stats.systems}


def render(data: dict) -> str:
    return environment().get_template("report.html").render(**data, bars=_bars)


def _counts(values) -> list[tuple[str, int]]:
    return Counter(values).most_common()


def _bars(counts: list[tuple[str, int]], width: int = 320) -> list[tuple[str, int, int]]:
    """(label, count, bar width in px) for an inline SVG bar chart."""
    top = max((n for _, n in counts), default=0) or 1
    return [(label, n, max(1, round(width * n / top))) for label, n in counts]
