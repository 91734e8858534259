"""``recon run`` on an N-way spec (``sources:``): the per-system counts first, then the
discrepancies, each naming the systems it concerns. Exit codes as for two sources."""

from __future__ import annotations

import sys
import tempfile
import uuid
from pathlib import Path

import click

from recon_pipelines.cli_shared import EXIT_AGREE, EXIT_FOUND, displayed, open_tracker, write_discrepancies
from recon_pipelines.nway_pipeline import breakdown_lines, counts_line
from recon_pipelines.spec.nway import NWaySpec
from recon_pipelines.terminal import for_terminal

NWAY_COLUMNS = ("id", "kind", "key", "field", "systems", "odd_ones_out", "reference_system", "system_values",
                "value_a", "value_b", "severity", "reason", "difference", "detail")
NWAY_TABLE_COLUMNS = ("id", "severity", "kind", "key", "field", "systems", "odd_ones_out", "reference_system", "detail")


def run_nway_command(spec: NWaySpec, fmt: str, output: Path | None, limit: int, track: bool,
                     tracker_url: str | None) -> None:
    if track:
        outcome, table, stats, fields = _run_tracked(spec, open_tracker(tracker_url))
    else:
        from recon_pipelines.nway_pipeline import run_nway

        result = run_nway(spec)
        table, stats, fields, outcome = result.discrepancies, result.stats, result.fields, None
    rows = [displayed(row) for row in table.to_pylist()]
    to_stderr = output is None and fmt != "table"  # json/csv on stdout stay machine-readable
    click.echo(summary_text(spec, stats, rows, fields), err=to_stderr)
    if outcome is not None:
        click.echo(f"  tracker: {len(outcome.new_ids) + len(outcome.reopened_ids):,} opened, {len(outcome.resolved_ids):,} "
                   f"resolved, {outcome.open_count:,} open (run {outcome.run_id})", err=to_stderr)
    if fmt == "html":
        from recon_pipelines.cli_web import write_one_off_report
        from recon_pipelines.engine.nway import summary_of

        write_one_off_report(spec.name, summary_of(stats, table, fields), rows, output)
    else:
        write_discrepancies(rows, fmt, output, limit, NWAY_COLUMNS, NWAY_TABLE_COLUMNS)
    sys.exit(EXIT_FOUND if rows else EXIT_AGREE)


def _run_tracked(spec: NWaySpec, tracker):
    """The Dagster run's steps in this process, then the tracker and the notification outbox."""
    from recon_pipelines import nway_pipeline
    from recon_pipelines.remediation.notifications import notification_writer

    run_id = f"cli-{uuid.uuid4().hex[:12]}:full"
    with tempfile.TemporaryDirectory(prefix="recon-") as tmp:
        folder = Path(tmp)
        for system in spec.systems:
            nway_pipeline.take_system_snapshot(spec, system, folder)
        stats = nway_pipeline.match_records(spec, folder)
        found = nway_pipeline.find_discrepancies(spec, folder)
        outcome = nway_pipeline.update_tracker(spec, folder, tracker, run_id, on_outcome=notification_writer(spec))
    return outcome, found.table, stats, found.fields


def summary_text(spec: NWaySpec, stats, rows: list[dict], fields: dict[str, int]) -> str:
    """The counts side by side first (the line users compare), then why they differ."""
    lines = [for_terminal(counts_line(stats))]
    lines += [f"  {for_terminal(line)}" for line in breakdown_lines(stats)]
    lines.append(f"reconciliation {for_terminal(spec.name)}: {', '.join(map(for_terminal, spec.systems))}")
    systems = stats.systems
    lines.append("  rows          " + "  ".join(f"{for_terminal(n)}={s.rows:,}" for n, s in systems.items()))
    lines.append(f"  records       {stats.keys:,} keys, {stats.in_all:,} held by every system")
    for label, attr in (("invalid keys", "invalid_key_rows"), ("duplicates", "duplicate_keys"), ("unmapped", "unmapped_rows")):
        if any(getattr(s, attr) for s in systems.values()):
            lines.append(f"  {label.ljust(12)}  " + "  ".join(f"{for_terminal(n)}={getattr(s, attr):,}" for n, s in systems.items()))
    odd: dict[str, int] = {name: 0 for name in systems}
    for row in rows:
        for name in (row.get("odd_ones_out") or "").split(","):
            if name in odd:
                odd[name] += 1
    lines.append("  odd one out   " + "  ".join(f"{for_terminal(n)}={c:,}" for n, c in odd.items()))
    mismatched = {f: c for f, c in fields.items() if c}
    if mismatched:
        lines.append("  disagreements " + ", ".join(f"{for_terminal(f)}={c:,}" for f, c in mismatched.items()))
    lines.append(f"  discrepancies {len(rows):,}")
    return "\n".join(lines)
