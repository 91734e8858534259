"""``recon streams forward``: the process that moves a spec's captured changes onto its shared log.

A deployment runs it beside Dagster, one per spec (or per side): it reads each side's logical
replication slot and publishes the changes to the spec's JetStream stream, where the
``change_stream_<name>`` sensor consumes them. A transaction's slot position is confirmed only
after the stream stored its events, so a restart resumes where it stopped without losing a
change, and what was published twice is dropped by the stream (deduplicated by position).

Registered into the ``recon`` group by cli.py.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def streams() -> None:
    """Change streams: forward captured changes (PostgreSQL logical decoding) to the shared log."""


@streams.command("forward")
@click.argument("spec_file", type=click.Path(path_type=Path))
@click.option("--side", "sides", type=click.Choice(["a", "b"]), multiple=True,
              help="Only this side (repeatable); default: every side the spec captures (change_stream.cdc).")
@click.option("--once", is_flag=True, help="Forward what has been committed so far, then stop (default: run until stopped).")
@click.option("--idle", type=float, default=1.0, show_default=True,
              help="Seconds without a new transaction after which a side's read ends and the next side is read.")
def forward(spec_file: Path, sides: tuple[str, ...], once: bool, idle: float) -> None:
    """Publish each captured side's committed changes to the spec's stream (created if missing)."""
    from recon_pipelines.cli_errors import UserError
    from recon_pipelines.spec import load_spec
    from recon_pipelines.streams import wiring

    spec = load_spec(spec_file)
    stream = spec.change_stream
    captured = sorted(stream.cdc) if stream else []
    if not captured:
        raise UserError(f"{spec_file}: change_stream.cdc: the spec captures no side (nothing to forward)")
    chosen = list(sides) or captured
    unknown = [s for s in chosen if s not in captured]
    if unknown:
        raise UserError(f"{spec_file}: change_stream.cdc.{unknown[0]}: side {unknown[0].upper()} is not captured")
    with wiring.shared_log(spec) as log:
        log.create_stream()  # idempotent for the same configuration
        while True:
            for side in chosen:
                published = wiring.forward_cdc(spec, log, side, idle_timeout=idle, max_seconds=60.0)
                if published:
                    click.echo(f"{spec.name}: side {side}: {published} change(s) published to {stream.stream}")
            if once:
                return
